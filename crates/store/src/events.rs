//! Queries for events.
