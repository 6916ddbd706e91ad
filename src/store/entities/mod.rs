//! SeaORM entities: one per table, mirroring `migrations/`. Rows are turned
//! into domain values in the store modules, never handed out as they are.

pub(crate) mod api_key;
pub(crate) mod delivery;
pub(crate) mod delivery_attempt;
pub(crate) mod delivery_change;
pub(crate) mod endpoint;
pub(crate) mod endpoint_secret;
pub(crate) mod event;
pub(crate) mod idempotency_key;
pub(crate) mod log_position;
pub(crate) mod meta_event;
pub(crate) mod meta_event_attempt;
pub(crate) mod node;
pub(crate) mod project;
