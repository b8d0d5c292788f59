//! The control API against real Postgres, RabbitMQ and Redis.

mod helpers;
mod hostile;
mod keys;
mod ops;
mod orgs;
mod portal;
mod webhooks;
