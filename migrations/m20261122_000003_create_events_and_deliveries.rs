//! Events, their deliveries and attempts, idempotency keys, the processes
//! (nodes) that hold deliveries, and the endpoint's signature settings.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Projects {
    Table,
    Id,
}

#[derive(DeriveIden, Clone, Copy)]
enum Endpoints {
    Table,
    SignatureScheme,
    SignatureHash,
    SignatureEncoding,
}

#[derive(DeriveIden, Clone, Copy)]
enum Events {
    Table,
    Id,
    ProjectId,
    EventType,
    Payload,
    CustomHeaders,
    IdempotencyKey,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Deliveries {
    Table,
    Id,
    ProjectId,
    EventId,
    EndpointId,
    EventType,
    Status,
    Attempts,
    NextAttemptAt,
    LeaseOwner,
    AcknowledgedAt,
    CreatedAt,
    UpdatedAt,
    Description,
    LastHttpStatus,
}

#[derive(DeriveIden, Clone, Copy)]
enum DeliveryAttempts {
    Table,
    Id,
    DeliveryId,
    ProjectId,
    Number,
    Url,
    RequestedAt,
    RespondedAt,
    HttpStatus,
    Error,
    IpAddress,
    RequestHeaders,
    ResponseHeaders,
    ResponseBody,
    DurationMs,
}

#[derive(DeriveIden, Clone, Copy)]
enum IdempotencyKeys {
    Table,
    ProjectId,
    Key,
    EventId,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Nodes {
    Table,
    Id,
    StartedAt,
    HeartbeatAt,
}

// The trait's signature elides SchemaManager's lifetime; matching it exactly
// is what async_trait needs.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (column, default) in [
            (Endpoints::SignatureScheme, "convoy_advanced"),
            (Endpoints::SignatureHash, "sha256"),
            (Endpoints::SignatureEncoding, "hex"),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Endpoints::Table)
                        .add_column(
                            ColumnDef::new(column)
                                .string_len(32)
                                .not_null()
                                .default(default),
                        )
                        .to_owned(),
                )
                .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    .col(
                        ColumnDef::new(Events::Id)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Events::ProjectId).string_len(64).not_null())
                    .col(ColumnDef::new(Events::EventType).string_len(128).not_null())
                    .col(ColumnDef::new(Events::Payload).text().not_null())
                    .col(ColumnDef::new(Events::CustomHeaders).text().not_null())
                    .col(
                        ColumnDef::new(Events::IdempotencyKey)
                            .string_len(256)
                            .null(),
                    )
                    .col(ColumnDef::new(Events::CreatedAt).big_integer().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .from(Events::Table, Events::ProjectId)
                            .to(Projects::Table, Projects::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "events_project_id",
            Events::Table,
            &[Events::ProjectId, Events::Id],
        )
        .await?;
        index(
            manager,
            "events_project_type_id",
            Events::Table,
            &[Events::ProjectId, Events::EventType, Events::Id],
        )
        .await?;

        // No foreign key to endpoints: a deleted endpoint's deliveries stay as
        // history (and are discarded if still pending).
        manager
            .create_table(
                Table::create()
                    .table(Deliveries::Table)
                    .col(
                        ColumnDef::new(Deliveries::Id)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Deliveries::ProjectId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Deliveries::EventId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Deliveries::EndpointId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Deliveries::EventType)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Deliveries::Status).string_len(16).not_null())
                    .col(ColumnDef::new(Deliveries::Attempts).integer().not_null())
                    .col(
                        ColumnDef::new(Deliveries::NextAttemptAt)
                            .big_integer()
                            .null(),
                    )
                    .col(ColumnDef::new(Deliveries::LeaseOwner).string_len(64).null())
                    .col(
                        ColumnDef::new(Deliveries::AcknowledgedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Deliveries::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Deliveries::UpdatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Deliveries::Description).text().not_null())
                    .col(
                        ColumnDef::new(Deliveries::LastHttpStatus)
                            .integer()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Deliveries::Table, Deliveries::EventId)
                            .to(Events::Table, Events::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "deliveries_project_id",
            Deliveries::Table,
            &[Deliveries::ProjectId, Deliveries::Id],
        )
        .await?;
        index(
            manager,
            "deliveries_event_id",
            Deliveries::Table,
            &[Deliveries::EventId],
        )
        .await?;
        index(
            manager,
            "deliveries_endpoint_id",
            Deliveries::Table,
            &[Deliveries::EndpointId, Deliveries::Id],
        )
        .await?;
        // What the poller scans: due, unfinished deliveries.
        index(
            manager,
            "deliveries_due",
            Deliveries::Table,
            &[Deliveries::Status, Deliveries::NextAttemptAt],
        )
        .await?;
        index(
            manager,
            "deliveries_lease_owner",
            Deliveries::Table,
            &[Deliveries::LeaseOwner],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(DeliveryAttempts::Table)
                    .col(
                        ColumnDef::new(DeliveryAttempts::Id)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(DeliveryAttempts::DeliveryId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DeliveryAttempts::ProjectId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DeliveryAttempts::Number)
                            .integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(DeliveryAttempts::Url).text().not_null())
                    .col(
                        ColumnDef::new(DeliveryAttempts::RequestedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DeliveryAttempts::RespondedAt)
                            .big_integer()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(DeliveryAttempts::HttpStatus)
                            .integer()
                            .null(),
                    )
                    .col(ColumnDef::new(DeliveryAttempts::Error).text().null())
                    .col(
                        ColumnDef::new(DeliveryAttempts::IpAddress)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DeliveryAttempts::RequestHeaders)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DeliveryAttempts::ResponseHeaders)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DeliveryAttempts::ResponseBody)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DeliveryAttempts::DurationMs)
                            .integer()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(DeliveryAttempts::Table, DeliveryAttempts::DeliveryId)
                            .to(Deliveries::Table, Deliveries::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "delivery_attempts_delivery_id",
            DeliveryAttempts::Table,
            &[DeliveryAttempts::DeliveryId, DeliveryAttempts::Number],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(IdempotencyKeys::Table)
                    .col(
                        ColumnDef::new(IdempotencyKeys::ProjectId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IdempotencyKeys::Key)
                            .string_len(256)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IdempotencyKeys::EventId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IdempotencyKeys::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(IdempotencyKeys::ProjectId)
                            .col(IdempotencyKeys::Key),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Nodes::Table)
                    .col(
                        ColumnDef::new(Nodes::Id)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Nodes::StartedAt).big_integer().not_null())
                    .col(ColumnDef::new(Nodes::HeartbeatAt).big_integer().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Nodes::Table.into_iden(),
            IdempotencyKeys::Table.into_iden(),
            DeliveryAttempts::Table.into_iden(),
            Deliveries::Table.into_iden(),
            Events::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        for column in [
            Endpoints::SignatureScheme,
            Endpoints::SignatureHash,
            Endpoints::SignatureEncoding,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Endpoints::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[allow(elided_lifetimes_in_paths)]
async fn index<T: Iden + Clone + 'static>(
    manager: &SchemaManager<'_>,
    name: &str,
    table: T,
    columns: &[T],
) -> Result<(), DbErr> {
    let mut index = Index::create();
    index.name(name).table(table);
    for column in columns {
        index.col(column.clone());
    }
    manager.create_index(index.to_owned()).await
}
