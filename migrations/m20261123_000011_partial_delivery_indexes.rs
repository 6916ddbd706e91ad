//! Replaces `deliveries_due` (status, next_attempt_at), which held every
//! delivery ever made, with two partial indexes that hold only live work:
//!
//! - `deliveries_waiting` (next_attempt_at): deliveries no node holds that
//!   will be sent again (a final status clears `next_attempt_at`). A claim
//!   walks it in time order and stops at its limit; the old index made it
//!   read and sort every due delivery of three statuses for each claim, under
//!   SQLite's write lock.
//! - `deliveries_leased` (lease_owner): deliveries a node holds, for handing
//!   them back at shutdown and taking over those of a dead node.
//!
//! A delivery dispatched straight from memory is leased when it is stored
//! and settled with no lease, so it never enters the first and leaves the
//! second right away: both stay the size of the work in flight.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    Status,
    NextAttemptAt,
    LeaseOwner,
}

// The trait's signature elides SchemaManager's lifetime; matching it exactly
// is what async_trait needs.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("deliveries_due")
                    .table(Deliveries::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("deliveries_waiting")
                    .table(Deliveries::Table)
                    .col(Deliveries::NextAttemptAt)
                    .and_where(Expr::col(Deliveries::LeaseOwner).is_null())
                    .and_where(Expr::col(Deliveries::NextAttemptAt).is_not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("deliveries_leased")
                    .table(Deliveries::Table)
                    .col(Deliveries::LeaseOwner)
                    .and_where(Expr::col(Deliveries::LeaseOwner).is_not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for name in ["deliveries_leased", "deliveries_waiting"] {
            manager
                .drop_index(Index::drop().name(name).table(Deliveries::Table).to_owned())
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("deliveries_due")
                    .table(Deliveries::Table)
                    .col(Deliveries::Status)
                    .col(Deliveries::NextAttemptAt)
                    .to_owned(),
            )
            .await
    }
}
