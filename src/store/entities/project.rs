use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "projects")]
pub(crate) struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// This project's circuit-breaker threshold; `None`: the server's.
    pub breaker_failures: Option<i32>,
    pub meta_enabled: bool,
    pub meta_url: Option<String>,
    pub meta_secret: Option<String>,
    /// JSON list of meta event types; empty: all.
    pub meta_types: String,
    pub retry_max_attempts: Option<i32>,
    pub retry_initial_delay_ms: Option<i64>,
    pub retry_max_delay_ms: Option<i64>,
    pub signature_scheme: Option<String>,
    pub signature_hash: Option<String>,
    pub signature_encoding: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub(crate) enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
