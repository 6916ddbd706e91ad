//! API tests: the real gRPC server on port 0, real databases (SQLite always,
//! PostgreSQL too when `HOOKD_TEST_DATABASE_URL` is set), generated clients.

mod helpers;
mod receiver;
mod recovery;
mod rotation;

mod breaker;
mod cli;
mod delivery;
mod endpoints;
mod meta;
mod pagination;
mod ping;
mod publishing;
mod server;
mod ssrf;
mod tenancy;
mod tls;
mod validation;
mod watch;
