//! Queries for deliveries.
