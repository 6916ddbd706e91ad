use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "endpoints")]
pub(crate) struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub url: String,
    /// JSON object of header name to value.
    pub headers: String,
    pub timeout_seconds: i32,
    pub status: String,
    pub paused_at: Option<i64>,
    pub status_changed_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub owner_id: Option<String>,
    pub description: String,
    pub content_type: String,
    pub rate_limit_count: i32,
    pub rate_limit_period_seconds: i32,
    /// JSON array of event types.
    pub event_types: String,
    pub revision: i64,
    pub signature_scheme: String,
    pub signature_hash: String,
    pub signature_encoding: String,
    /// Failed attempts since the last success (the circuit breaker).
    pub consecutive_failures: i32,
    /// Receives a signed notice on each automatic status change.
    pub alert_url: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub(crate) enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
