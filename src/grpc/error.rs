//! The one place where failures become gRPC statuses.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::Invalid;
use crate::store::StoreError;

/// Failures of an API call, named for what the caller can do about them.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Fix the named request field and call again.
    #[error("{field}: {description}")]
    InvalidArgument { field: String, description: String },
    /// The thing does not exist for this caller (or belongs to another
    /// project, which looks exactly the same).
    #[error("{0} not found")]
    NotFound(std::borrow::Cow<'static, str>),
    /// The request is fine but the resource's state does not allow it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Present a valid API key.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// Lost a race with concurrent writers; calling again will likely work.
    #[error("{0}")]
    Aborted(&'static str),
    /// A limit was reached; wait or use less.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The request points before what is still kept (an expired cursor).
    #[error("{0}")]
    OutOfRange(String),
    /// The database cannot be reached right now; retry with backoff.
    #[error("storage unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// This server is stopping; another (or this one, restarted) will answer.
    #[error("shutting down")]
    ShuttingDown,
    /// Our fault. Logged with its cause; the client learns nothing more.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, problem: impl std::fmt::Display) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            description: problem.to_string(),
        }
    }

    /// Attaches the request field a domain value came from.
    pub fn field(field: &str) -> impl FnOnce(Invalid) -> Self + '_ {
        move |invalid| Self::invalid(field, invalid.0)
    }

    /// Maps a store failure, saying which resource a `NotFound` is about.
    pub fn from_store(resource: &'static str) -> impl FnOnce(StoreError) -> Self {
        move |err| match err {
            StoreError::NotFound => Self::NotFound(resource.into()),
            StoreError::Conflict => {
                Self::Aborted("the resource was changed concurrently; try again")
            }
            StoreError::Unavailable(_) => Self::Unavailable(Box::new(err)),
            StoreError::Corrupt { .. } | StoreError::Database(_) => Self::Internal(Box::new(err)),
        }
    }

    /// The same, for a failure shared by several callers (a group commit).
    pub fn from_shared_store(resource: &'static str, err: std::sync::Arc<StoreError>) -> Self {
        match *err {
            StoreError::NotFound => Self::NotFound(resource.into()),
            StoreError::Conflict => {
                Self::Aborted("the resource was changed concurrently; try again")
            }
            StoreError::Unavailable(_) => Self::Unavailable(Box::new(err)),
            StoreError::Corrupt { .. } | StoreError::Database(_) => Self::Internal(Box::new(err)),
        }
    }
}

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Self {
        match err {
            ApiError::InvalidArgument { field, description } => {
                let message = format!("{field}: {description}");
                Status::with_error_details(
                    Code::InvalidArgument,
                    message,
                    ErrorDetails::with_bad_request_violation(field, description),
                )
            }
            ApiError::NotFound(what) => Status::not_found(format!("{what} not found")),
            ApiError::ShuttingDown => Status::unavailable("the server is shutting down; retry"),
            ApiError::FailedPrecondition(why) => Status::failed_precondition(why),
            ApiError::Unauthenticated(why) => Status::unauthenticated(why),
            ApiError::Aborted(why) => Status::aborted(why),
            ApiError::ResourceExhausted(why) => Status::resource_exhausted(why),
            ApiError::OutOfRange(why) => Status::out_of_range(why),
            ApiError::Unavailable(cause) => {
                tracing::warn!(error = %error_chain(cause.as_ref()), "storage unavailable");
                Status::unavailable("storage unavailable; retry later")
            }
            ApiError::Internal(cause) => {
                tracing::error!(error = %error_chain(cause.as_ref()), "internal error");
                Status::internal("internal error")
            }
        }
    }
}

/// "outer: inner: innermost", for logs.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
