//! The ingest API and its outbox relay against real Postgres, RabbitMQ and Redis.

mod events;
mod helpers;
mod relay;
