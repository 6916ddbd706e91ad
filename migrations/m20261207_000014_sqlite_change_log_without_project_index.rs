//! Drops the `(project_id, txid, seq)` index of `delivery_changes` on
//! SQLite. There `txid` is always 0 and `seq`, the rowid, is commit order,
//! so a project's changes after a cursor are a rowid range filtered by
//! project: readers bound each scan to a window of `seq`s and move on past
//! rows that matched nothing (see `store::watch`). The index cost two
//! entries per delivery, one for each change it logs: about 8 % of the
//! write path's instructions (docs/BENCHMARKS.md). PostgreSQL keeps it:
//! there `seq` is drawn before commit, so only `(txid, seq)` is an order,
//! and no rowid range stands in for it.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum DeliveryChanges {
    Table,
    ProjectId,
    Txid,
    Seq,
}

const INDEX: &str = "delivery_changes_project";

#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Sqlite {
            return Ok(());
        }
        manager
            .drop_index(
                Index::drop()
                    .name(INDEX)
                    .table(DeliveryChanges::Table)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Sqlite {
            return Ok(());
        }
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(DeliveryChanges::Table)
                    .col(DeliveryChanges::ProjectId)
                    .col(DeliveryChanges::Txid)
                    .col(DeliveryChanges::Seq)
                    .to_owned(),
            )
            .await
    }
}
