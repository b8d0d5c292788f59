//! The alerting service against real RabbitMQ, Postgres and Redis, with real
//! deliveries, a local SMTP sink and a recording webhook receiver.

mod helpers;
mod notifications;
mod retention;
mod rules;
