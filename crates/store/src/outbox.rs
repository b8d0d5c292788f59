//! Queries for outbox.
