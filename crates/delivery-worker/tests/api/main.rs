//! The delivery worker over real sockets, against real Postgres, RabbitMQ and Redis.

mod analytics;
mod delivery;
mod examples;
mod helpers;
mod hostile;
mod replay;
mod retries;
mod seeds;
mod traces;
