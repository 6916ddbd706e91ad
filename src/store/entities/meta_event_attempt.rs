use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "meta_event_attempts")]
pub(crate) struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub meta_event_id: String,
    pub number: i32,
    pub url: String,
    pub requested_at: i64,
    pub responded_at: Option<i64>,
    pub http_status: Option<i32>,
    pub error: Option<String>,
    pub ip_address: String,
    pub duration_ms: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub(crate) enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
