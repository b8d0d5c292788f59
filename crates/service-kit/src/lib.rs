//! What Hookline's services share: typed configuration, telemetry, the
//! problem+json error type, authentication and rate limiting, pagination,
//! and the `/health`, `/ready` and `/metrics` routes.

pub mod auth;
pub mod batch;
pub mod caches;
pub mod config;
pub mod deps;
pub mod docs;
pub mod error;
pub mod flow;
pub mod flushing;
pub mod lanes;
pub mod metrics;
pub mod ops;
pub mod outbound;
pub mod pagination;
pub mod ratelimit;
pub mod redis_conn;
pub mod rollups;
pub mod secrets;
pub mod server;
pub mod shutdown;
pub mod storable;
pub mod targets;
pub mod telemetry;
pub mod usage;
