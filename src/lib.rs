//! hookd: a gRPC-native webhook delivery service.
//!
//! Where things live (dependencies point inward: `grpc` → `domain` ← `store`;
//! `delivery` → `domain` + `store`):
//! - [`domain`]: pure rules and validated values (ids, endpoint fields,
//!   secrets and their rotation, status transitions, pagination, events and
//!   deliveries, signatures, the retry policy, rate limiting, the network
//!   policy of the SSRF guard, watch cursors, meta events and their
//!   payloads). No I/O, no clock, no RNG.
//! - [`store`]: persistence through SeaORM on SQLite or PostgreSQL, including
//!   the change logs that watch streams tail; the only module that touches
//!   SQL.
//! - [`migration`]: the schema migrations (top-level `migrations/`).
//! - [`delivery`]: the delivery engine: group commit of publishes (with
//!   results, on SQLite, on a writer thread of its own), fair in-memory
//!   dispatch, signed HTTP sends, batched result writes (bounded by bytes),
//!   the poller for retries and recovery, meta events on their way out.
//! - [`grpc`]: generated protobuf types, their conversion to the domain,
//!   API-key authentication, the error-to-status mapping, the services and
//!   their server streams.
//! - [`app`]: assembles store and services into a server that binds
//!   (`App::build`) and serves until told to stop (`App::run`).
//! - [`bench`]: `hookd bench`, the benchmark that ships with hookd.
//! - [`config`]: flags and `HOOKD_*` environment variables.
//! - [`cli`]: what each subcommand does.
//! - [`telemetry`]: logging setup.
//! - [`system`]: the wall clock and randomness the domain is kept free of.
#![forbid(unsafe_code)]

pub mod app;
pub mod bench;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod grpc;
#[path = "../migrations/mod.rs"]
pub mod migration;
pub mod store;
pub mod system;
pub mod telemetry;
