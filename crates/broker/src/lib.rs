//! Hookline's RabbitMQ side: the topology (declared in one place,
//! idempotently), publishing with confirms, the one consume loop, and the
//! broker messages.

pub mod consumer;
pub mod messages;
pub mod publisher;
pub mod topology;

pub use lapin;
