use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "delivery_attempts")]
pub(crate) struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub delivery_id: String,
    pub project_id: String,
    pub number: i32,
    pub url: String,
    pub requested_at: i64,
    pub responded_at: Option<i64>,
    pub http_status: Option<i32>,
    /// `class: message`, only when no response came.
    pub error: Option<String>,
    /// Empty when no connection was made.
    pub ip_address: String,
    /// JSON array of [name, value] pairs, secrets redacted.
    pub request_headers: String,
    /// JSON array of [name, value] pairs.
    pub response_headers: String,
    pub response_body: String,
    pub duration_ms: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub(crate) enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
