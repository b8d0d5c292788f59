//! Queries for event_types.
