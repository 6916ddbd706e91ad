//! Schema migrations, oldest first. A migration that has shipped is never
//! edited; change the schema with a new file. Each file declares its own
//! identifiers and never imports the application's entities, so it keeps
//! meaning what it meant when it shipped.

use sea_orm_migration::prelude::*;

mod m20261122_000001_create_projects;
mod m20261122_000002_create_endpoints;
mod m20261122_000003_create_events_and_deliveries;
mod m20261122_000004_endpoint_failure_count;
mod m20261122_000005_endpoint_alert_url;
mod m20261122_000006_project_breaker_failures;
mod m20261122_000007_delivery_changes;
mod m20261122_000008_meta_events;
mod m20261122_000009_project_defaults;
mod m20261123_000010_drop_lease_owner_index;
mod m20261123_000011_partial_delivery_indexes;
mod m20261123_000012_change_log_hash_join;
mod m20261123_000013_postgres_delivery_path_foreign_keys;
mod m20261207_000014_sqlite_change_log_without_project_index;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_create_projects::Migration),
            Box::new(m20261122_000002_create_endpoints::Migration),
            Box::new(m20261122_000003_create_events_and_deliveries::Migration),
            Box::new(m20261122_000004_endpoint_failure_count::Migration),
            Box::new(m20261122_000005_endpoint_alert_url::Migration),
            Box::new(m20261122_000006_project_breaker_failures::Migration),
            Box::new(m20261122_000007_delivery_changes::Migration),
            Box::new(m20261122_000008_meta_events::Migration),
            Box::new(m20261122_000009_project_defaults::Migration),
            Box::new(m20261123_000010_drop_lease_owner_index::Migration),
            Box::new(m20261123_000011_partial_delivery_indexes::Migration),
            Box::new(m20261123_000012_change_log_hash_join::Migration),
            Box::new(m20261123_000013_postgres_delivery_path_foreign_keys::Migration),
            Box::new(m20261207_000014_sqlite_change_log_without_project_index::Migration),
        ]
    }
}

/// Runs `sql` on PostgreSQL; nothing on SQLite. For migrations that change
/// only what PostgreSQL has (its trigger functions, its foreign-key triggers).
async fn on_postgres(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    use sea_orm_migration::sea_orm::DbBackend;
    if manager.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    manager
        .get_connection()
        .execute_unprepared(sql)
        .await
        .map(drop)
}
