//! PostgreSQL: the trigger that logs changed deliveries joins the UPDATE's
//! old and new rows on id. Transition tables have no statistics, so the
//! planner takes each for one row and may cache a nested loop for the
//! function: quadratic in the rows one settling UPDATE changes (a 500-row
//! batch took 50–97 ms in the trigger instead of 3–7 ms). The function now
//! plans without nested loops, so the join is hashed. SQLite logs row by
//! row and has no such join.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

// The trait's signature elides SchemaManager's lifetime; matching it exactly
// is what async_trait needs.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::on_postgres(
            manager,
            "ALTER FUNCTION hookd_log_updated_deliveries() SET enable_nestloop = off",
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::on_postgres(
            manager,
            "ALTER FUNCTION hookd_log_updated_deliveries() RESET enable_nestloop",
        )
        .await
    }
}
