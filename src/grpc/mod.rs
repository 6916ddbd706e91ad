//! The gRPC surface: generated types (they stop here), the conversion to and
//! from the domain, authentication, the error mapping, and one module per
//! service.

mod auth;
mod convert;
mod endpoints;
mod error;
mod events;
mod paging;
mod projects;
mod watch;

pub use auth::Authenticator;
pub use endpoints::EndpointApi;
pub use error::ApiError;
pub use events::EventApi;
pub use projects::ProjectApi;
pub use watch::{WatchConfig, Watches};

/// Code generated from `proto/hookd/v1/*.proto`.
pub mod pb {
    #![allow(unreachable_pub, clippy::all)]
    tonic::include_proto!("hookd.v1");

    /// Encoded descriptors of every hookd proto, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/hookd_descriptor.bin"));
}
