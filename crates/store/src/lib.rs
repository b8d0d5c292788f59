//! Hookline's Postgres schema and every query.
//!
//! Functions here take a `&mut AsyncPgConnection` and return diesel's
//! results; the services own transactions and pass the connection down, so a
//! unit of work is always one transaction on one connection.

/// Pushes binds onto a query, comma-separated: `push_binds!(out; Type => &value, …)`.
/// The arguments of an `unnest(…)` over one array per column, for statements
/// written as their own `QueryFragment`.
macro_rules! push_binds {
    ($out:ident; $first_ty:ty => $first:expr $(, $ty:ty => $value:expr)* $(,)?) => {{
        $out.push_bind_param::<$first_ty, _>($first)?;
        $(
            $out.push_sql(", ");
            $out.push_bind_param::<$ty, _>($value)?;
        )*
    }};
}

pub mod alerts;
pub mod audit;
pub mod backfill;
pub mod db;
pub mod dead_letters;
pub mod deliveries;
pub mod endpoints;
pub mod erasure;
pub mod event_types;
pub mod events;
pub mod hot;
pub mod keys;
pub mod lanes;
pub mod orgs;
pub mod outbox;
pub mod portal;
pub mod retention;
pub mod rollups;
pub mod schema;
pub mod sessions;

pub use diesel_async::AsyncPgConnection;

/// A page of rows plus whether more follow.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_more: bool,
}

impl<T> Page<T> {
    /// Builds a page from `limit + 1` fetched rows.
    pub fn from_rows(mut rows: Vec<T>, limit: i64) -> Self {
        let has_more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        Self { items: rows, has_more }
    }
}
