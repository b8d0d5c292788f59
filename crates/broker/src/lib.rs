//! Hookline's RabbitMQ side: the topology (declared in one place,
//! idempotently), publishing with confirms, and the broker messages.

pub mod messages;
pub mod publisher;
pub mod topology;

pub use lapin;
