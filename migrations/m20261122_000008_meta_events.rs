//! Meta events (seed 003): a project's settings for them, the events
//! themselves (also the log that `WatchMetaEvents` tails, ordered like
//! `delivery_changes`), and the attempts to POST them.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum Projects {
    Table,
    MetaEnabled,
    MetaUrl,
    MetaSecret,
    MetaTypes,
}

#[derive(DeriveIden)]
enum MetaEvents {
    Table,
    Seq,
    Txid,
    Id,
    ProjectId,
    EventType,
    Payload,
    Status,
    Attempts,
    NextAttemptAt,
    LeaseOwner,
    Description,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum MetaEventAttempts {
    Table,
    Id,
    MetaEventId,
    Number,
    Url,
    RequestedAt,
    RespondedAt,
    HttpStatus,
    Error,
    IpAddress,
    DurationMs,
}

fn text(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column).text().not_null().to_owned()
}

fn micros(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column).big_integer().not_null().to_owned()
}

// The trait's signature elides SchemaManager's lifetime; matching it exactly
// is what async_trait needs.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            ColumnDef::new(Projects::MetaEnabled)
                .boolean()
                .not_null()
                .default(false)
                .to_owned(),
            ColumnDef::new(Projects::MetaUrl).text().null().to_owned(),
            ColumnDef::new(Projects::MetaSecret)
                .text()
                .null()
                .to_owned(),
            ColumnDef::new(Projects::MetaTypes)
                .text()
                .not_null()
                .default("[]")
                .to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Projects::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(MetaEvents::Table)
                    .col(
                        ColumnDef::new(MetaEvents::Seq)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(MetaEvents::Txid)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(MetaEvents::Id)
                            .string_len(64)
                            .not_null()
                            .unique_key(),
                    )
                    .col(
                        ColumnDef::new(MetaEvents::ProjectId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(MetaEvents::EventType)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(text(MetaEvents::Payload))
                    .col(ColumnDef::new(MetaEvents::Status).string_len(16).not_null())
                    .col(ColumnDef::new(MetaEvents::Attempts).integer().not_null())
                    .col(
                        ColumnDef::new(MetaEvents::NextAttemptAt)
                            .big_integer()
                            .null(),
                    )
                    .col(ColumnDef::new(MetaEvents::LeaseOwner).string_len(64).null())
                    .col(text(MetaEvents::Description))
                    .col(micros(MetaEvents::CreatedAt))
                    .col(micros(MetaEvents::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        for (name, columns) in [
            (
                "meta_events_project",
                vec![MetaEvents::ProjectId, MetaEvents::Txid, MetaEvents::Seq],
            ),
            (
                "meta_events_due",
                vec![MetaEvents::Status, MetaEvents::NextAttemptAt],
            ),
        ] {
            let mut index = Index::create();
            index.name(name).table(MetaEvents::Table);
            for column in columns {
                index.col(column);
            }
            manager.create_index(index.to_owned()).await?;
        }
        if manager.get_database_backend() == DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared(
                    "ALTER TABLE meta_events ALTER COLUMN txid \
                     SET DEFAULT (pg_current_xact_id()::text::bigint)",
                )
                .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(MetaEventAttempts::Table)
                    .col(
                        ColumnDef::new(MetaEventAttempts::Id)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(MetaEventAttempts::MetaEventId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(MetaEventAttempts::Number)
                            .integer()
                            .not_null(),
                    )
                    .col(text(MetaEventAttempts::Url))
                    .col(micros(MetaEventAttempts::RequestedAt))
                    .col(
                        ColumnDef::new(MetaEventAttempts::RespondedAt)
                            .big_integer()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(MetaEventAttempts::HttpStatus)
                            .integer()
                            .null(),
                    )
                    .col(ColumnDef::new(MetaEventAttempts::Error).text().null())
                    .col(text(MetaEventAttempts::IpAddress))
                    .col(
                        ColumnDef::new(MetaEventAttempts::DurationMs)
                            .integer()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(MetaEventAttempts::Table, MetaEventAttempts::MetaEventId)
                            .to(MetaEvents::Table, MetaEvents::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("meta_event_attempts_event")
                    .table(MetaEventAttempts::Table)
                    .col(MetaEventAttempts::MetaEventId)
                    .col(MetaEventAttempts::Number)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(MetaEventAttempts::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(MetaEvents::Table).to_owned())
            .await?;
        for column in [
            Projects::MetaEnabled,
            Projects::MetaUrl,
            Projects::MetaSecret,
            Projects::MetaTypes,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Projects::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
