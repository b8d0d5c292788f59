//! Queries for endpoints.
