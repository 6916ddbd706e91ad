//! Endpoints and their signing secrets. Secrets live in their own table so a
//! rotation can keep several valid at once, each with its own expiry.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum Projects {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Endpoints {
    Table,
    Id,
    ProjectId,
    Name,
    Url,
    Headers,
    TimeoutSeconds,
    Status,
    PausedAt,
    StatusChangedAt,
    CreatedAt,
    UpdatedAt,
    OwnerId,
    Description,
    ContentType,
    RateLimitCount,
    RateLimitPeriodSeconds,
    EventTypes,
    Revision,
}

#[derive(DeriveIden)]
enum EndpointSecrets {
    Table,
    Id,
    EndpointId,
    Secret,
    CreatedAt,
    ExpiresAt,
}

// The trait's signature elides SchemaManager's lifetime; matching it exactly
// is what async_trait needs.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Endpoints::Table)
                    .col(
                        ColumnDef::new(Endpoints::Id)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Endpoints::ProjectId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Endpoints::Name).string_len(256).not_null())
                    .col(ColumnDef::new(Endpoints::Url).text().not_null())
                    .col(ColumnDef::new(Endpoints::Headers).text().not_null())
                    .col(
                        ColumnDef::new(Endpoints::TimeoutSeconds)
                            .integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Endpoints::Status).string_len(16).not_null())
                    .col(ColumnDef::new(Endpoints::PausedAt).big_integer().null())
                    .col(
                        ColumnDef::new(Endpoints::StatusChangedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Endpoints::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Endpoints::UpdatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Endpoints::OwnerId).string_len(128).null())
                    .col(ColumnDef::new(Endpoints::Description).text().not_null())
                    .col(
                        ColumnDef::new(Endpoints::ContentType)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Endpoints::RateLimitCount)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Endpoints::RateLimitPeriodSeconds)
                            .integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Endpoints::EventTypes).text().not_null())
                    .col(ColumnDef::new(Endpoints::Revision).big_integer().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .from(Endpoints::Table, Endpoints::ProjectId)
                            .to(Projects::Table, Projects::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Listing pages through a project's endpoints by id, optionally for
        // one owner (also the fan-out lookup).
        manager
            .create_index(
                Index::create()
                    .name("endpoints_project_id_id")
                    .table(Endpoints::Table)
                    .col(Endpoints::ProjectId)
                    .col(Endpoints::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("endpoints_project_owner_id")
                    .table(Endpoints::Table)
                    .col(Endpoints::ProjectId)
                    .col(Endpoints::OwnerId)
                    .col(Endpoints::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(EndpointSecrets::Table)
                    .col(
                        ColumnDef::new(EndpointSecrets::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(EndpointSecrets::EndpointId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(EndpointSecrets::Secret).text().not_null())
                    .col(
                        ColumnDef::new(EndpointSecrets::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(EndpointSecrets::ExpiresAt)
                            .big_integer()
                            .null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(EndpointSecrets::Table, EndpointSecrets::EndpointId)
                            .to(Endpoints::Table, Endpoints::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("endpoint_secrets_endpoint_id")
                    .table(EndpointSecrets::Table)
                    .col(EndpointSecrets::EndpointId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(EndpointSecrets::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Endpoints::Table).to_owned())
            .await
    }
}
