//! A project's own retry policy and default signature for new endpoints
//! (NULL: the server's).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum Projects {
    Table,
    RetryMaxAttempts,
    RetryInitialDelayMs,
    RetryMaxDelayMs,
    SignatureScheme,
    SignatureHash,
    SignatureEncoding,
}

const COLUMNS: [Projects; 6] = [
    Projects::RetryMaxAttempts,
    Projects::RetryInitialDelayMs,
    Projects::RetryMaxDelayMs,
    Projects::SignatureScheme,
    Projects::SignatureHash,
    Projects::SignatureEncoding,
];

// The trait's signature elides SchemaManager's lifetime; matching it exactly
// is what async_trait needs.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in COLUMNS {
            let mut def = ColumnDef::new(column);
            match def.get_column_name().as_str() {
                "retry_max_attempts" => def.integer(),
                "retry_initial_delay_ms" | "retry_max_delay_ms" => def.big_integer(),
                _ => def.string_len(32),
            };
            manager
                .alter_table(
                    Table::alter()
                        .table(Projects::Table)
                        .add_column(def.null().to_owned())
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in COLUMNS {
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
