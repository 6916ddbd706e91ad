//! The log of delivery status changes that `WatchDeliveries` tails and
//! resumes from. Triggers on `deliveries` write it, in the same transaction
//! as the change, so no code path can change a status without it showing.
//!
//! Order: on SQLite writers take turns, so `seq` is commit order. On
//! PostgreSQL `seq` is drawn before commit and may commit out of order, so
//! each row also records its transaction id (`txid`); readers only take rows
//! of transactions older than every running one (the snapshot's xmin) and
//! order by `(txid, seq)`, a prefix that never grows in the middle.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum DeliveryChanges {
    Table,
    Seq,
    Txid,
    ProjectId,
    DeliveryId,
    EventId,
    EndpointId,
    EventType,
    Status,
    Attempts,
    NextAttemptAt,
    Description,
    ChangedAt,
}

#[derive(DeriveIden)]
enum LogPositions {
    Table,
    Name,
    Txid,
    Seq,
}

/// The columns copied from `deliveries`, in `delivery_changes` order.
const COPIED: &str = "project_id, delivery_id, event_id, endpoint_id, event_type, status, \
                      attempts, next_attempt_at, description, changed_at";

fn copied_from(row: &str) -> String {
    format!(
        "{row}.project_id, {row}.id, {row}.event_id, {row}.endpoint_id, {row}.event_type, \
         {row}.status, {row}.attempts, {row}.next_attempt_at, {row}.description, {row}.updated_at"
    )
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
                    .table(DeliveryChanges::Table)
                    .col(
                        ColumnDef::new(DeliveryChanges::Seq)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(DeliveryChanges::Txid)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(DeliveryChanges::ProjectId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DeliveryChanges::DeliveryId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DeliveryChanges::EventId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DeliveryChanges::EndpointId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DeliveryChanges::EventType)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DeliveryChanges::Status)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DeliveryChanges::Attempts)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DeliveryChanges::NextAttemptAt)
                            .big_integer()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(DeliveryChanges::Description)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DeliveryChanges::ChangedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("delivery_changes_project")
                    .table(DeliveryChanges::Table)
                    .col(DeliveryChanges::ProjectId)
                    .col(DeliveryChanges::Txid)
                    .col(DeliveryChanges::Seq)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(LogPositions::Table)
                    .col(
                        ColumnDef::new(LogPositions::Name)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(LogPositions::Txid).big_integer().not_null())
                    .col(ColumnDef::new(LogPositions::Seq).big_integer().not_null())
                    .to_owned(),
            )
            .await?;

        let db = manager.get_connection();
        match manager.get_database_backend() {
            DbBackend::Postgres => {
                // Statement-level triggers with transition tables: one INSERT
                // per batched write, not one per row.
                db.execute_unprepared(&format!(
                    "ALTER TABLE delivery_changes ALTER COLUMN txid \
                     SET DEFAULT (pg_current_xact_id()::text::bigint); \
                     CREATE FUNCTION hookd_log_inserted_deliveries() RETURNS trigger \
                     LANGUAGE plpgsql AS $$ BEGIN \
                       INSERT INTO delivery_changes ({COPIED}) SELECT {new} FROM new_rows n; \
                       RETURN NULL; \
                     END $$; \
                     CREATE FUNCTION hookd_log_updated_deliveries() RETURNS trigger \
                     LANGUAGE plpgsql AS $$ BEGIN \
                       INSERT INTO delivery_changes ({COPIED}) SELECT {new} FROM new_rows n \
                       JOIN old_rows o ON o.id = n.id WHERE o.status <> n.status ORDER BY n.id; \
                       RETURN NULL; \
                     END $$; \
                     CREATE TRIGGER deliveries_log_insert AFTER INSERT ON deliveries \
                       REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT \
                       EXECUTE FUNCTION hookd_log_inserted_deliveries(); \
                     CREATE TRIGGER deliveries_log_update AFTER UPDATE ON deliveries \
                       REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT \
                       EXECUTE FUNCTION hookd_log_updated_deliveries();",
                    new = copied_from("n"),
                ))
                .await?;
            }
            _ => {
                db.execute_unprepared(&format!(
                    "CREATE TRIGGER deliveries_log_insert AFTER INSERT ON deliveries BEGIN \
                       INSERT INTO delivery_changes ({COPIED}) SELECT {new}; \
                     END; \
                     CREATE TRIGGER deliveries_log_update AFTER UPDATE OF status ON deliveries \
                     WHEN OLD.status <> NEW.status BEGIN \
                       INSERT INTO delivery_changes ({COPIED}) SELECT {new}; \
                     END;",
                    new = copied_from("NEW"),
                ))
                .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let drop = match manager.get_database_backend() {
            DbBackend::Postgres => {
                "DROP TRIGGER IF EXISTS deliveries_log_insert ON deliveries; \
                 DROP TRIGGER IF EXISTS deliveries_log_update ON deliveries; \
                 DROP FUNCTION IF EXISTS hookd_log_inserted_deliveries(); \
                 DROP FUNCTION IF EXISTS hookd_log_updated_deliveries();"
            }
            _ => {
                "DROP TRIGGER IF EXISTS deliveries_log_insert; \
                 DROP TRIGGER IF EXISTS deliveries_log_update;"
            }
        };
        manager.get_connection().execute_unprepared(drop).await?;
        manager
            .drop_table(Table::drop().table(LogPositions::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(DeliveryChanges::Table).to_owned())
            .await
    }
}
