//! Drops the index on `deliveries.lease_owner`. Every query that asks for a
//! lease owner also asks for a status the `deliveries_due` index leads with,
//! and the few deliveries in flight are found through it; the lease index
//! only cost two writes per delivery (on the insert and on the settle).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum Deliveries {
    Table,
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
                    .name("deliveries_lease_owner")
                    .table(Deliveries::Table)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("deliveries_lease_owner")
                    .table(Deliveries::Table)
                    .col(Deliveries::LeaseOwner)
                    .to_owned(),
            )
            .await
    }
}
