use sea_orm::entity::prelude::*;

#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "endpoint_secrets")]
pub(crate) struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub endpoint_id: String,
    pub secret: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

/// Hand-written so the secret never reaches a log line.
impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointSecret")
            .field("id", &self.id)
            .field("endpoint_id", &self.endpoint_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub(crate) enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
