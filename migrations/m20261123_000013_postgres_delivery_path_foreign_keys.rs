//! PostgreSQL: drops the foreign keys of the rows the delivery path writes
//! (an event's project, a delivery's event, an attempt's delivery).
//!
//! PostgreSQL checks each with a trigger per inserted row that runs a query
//! and locks the parent row, which also writes the lock to the parent's page
//! and the WAL. Over quick end-to-end and fan-out runs that was about 14 % of
//! the server's CPU. The checks guard nothing hookd can get wrong: it never
//! deletes a project, an event or a delivery; an event is stored only for a
//! project its API key was checked against, its deliveries in the same
//! transaction, and an attempt only for a delivery it read or stored.
//!
//! SQLite keeps them: there a check is one B-tree probe in the writer's own
//! page cache, and dropping a constraint would rebuild each table.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

/// (table, constraint, column, parent table, parent column)
const KEYS: [(&str, &str, &str, &str, &str); 3] = [
    (
        "events",
        "events_project_id_fkey",
        "project_id",
        "projects",
        "id",
    ),
    (
        "deliveries",
        "deliveries_event_id_fkey",
        "event_id",
        "events",
        "id",
    ),
    (
        "delivery_attempts",
        "delivery_attempts_delivery_id_fkey",
        "delivery_id",
        "deliveries",
        "id",
    ),
];

// The trait's signature elides SchemaManager's lifetime; matching it exactly
// is what async_trait needs.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql: Vec<String> = KEYS
            .iter()
            .map(|(table, name, ..)| format!("ALTER TABLE {table} DROP CONSTRAINT {name}"))
            .collect();
        super::on_postgres(manager, &sql.join("; ")).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql: Vec<String> = KEYS
            .iter()
            .map(|(table, name, column, parent, key)| {
                format!(
                    "ALTER TABLE {table} ADD CONSTRAINT {name} FOREIGN KEY ({column}) \
                     REFERENCES {parent} ({key}) ON DELETE CASCADE"
                )
            })
            .collect();
        super::on_postgres(manager, &sql.join("; ")).await
    }
}
