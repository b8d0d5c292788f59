//! The delivery worker over real sockets, against real Postgres, RabbitMQ and Redis.

mod analytics;
mod delivery;
mod erasure;
mod examples;
mod filters;
mod flow;
mod helpers;
mod hostile;
mod ordering;
mod pull;
mod replay;
mod retries;
mod seeds;
mod traces;
