//! How the hot statements are planned: on connections of their own that
//! keep one generic plan per statement, steered to key lookups, or planned
//! for each execution elsewhere.

use diesel::QueryResult;

use crate::db::{build_pool, PgPool};

/// How a connection from [`keyed_pool`] plans: each statement once, with a
/// generic plan kept for the connection's life, and that plan made of index
/// lookups whatever the tables held when it was made.
///
/// A generic plan is costed against the tables as they are when it is
/// made, and kept until something invalidates it (growth alone does not).
/// Made while `deliveries` is young, the plan for a batch of ids (an array
/// of unknown length joined to it) is a hash join over a sequential scan:
/// cheap then, ruinous once the table is large. Without sequential scans,
/// hash joins and merge joins, the same statement is planned as nested
/// loops over primary-key (or other index) lookups, which is the right
/// plan at every size for statements that touch a bounded batch of rows by
/// key. A table with no usable index is still scanned: these settings make
/// other paths dearer, they do not forbid them.
///
/// One case they cannot steer: statistics saying a table is empty (it was
/// analyzed while empty and not since, as when autovacuum is off). Then
/// every index looks as small as any other, and the plan may walk a whole
/// index, or the wrong one, for each row. Hence [`KEYED_PLAN_LIFETIME`].
pub const KEYED_LOOKUPS: &str = "SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off; \
     SET enable_hashjoin = off; SET enable_mergejoin = off";

/// A pool for statements that read and write batches of rows by key, and
/// only those (see [`KEYED_LOOKUPS`]): planned once per connection rather
/// than for every execution. A statement that scans, sorts or aggregates
/// by design belongs on an ordinary [`pool`].
pub fn keyed_pool(url: &str, max_size: usize) -> anyhow::Result<PgPool> {
    keyed_pool_with_lifetime(url, max_size, KEYED_PLAN_LIFETIME)
}

/// [`keyed_pool`] with connections replaced after `lifetime` rather than
/// [`KEYED_PLAN_LIFETIME`].
pub fn keyed_pool_with_lifetime(url: &str, max_size: usize, lifetime: std::time::Duration) -> anyhow::Result<PgPool> {
    build_pool(url, max_size, Some(KEYED_LOOKUPS), Some(lifetime))
}

/// How long a keyed connection (and every plan it made) is used before it
/// is replaced. Whatever the statistics say, a new plan is costed against
/// the table's current size on disk, so a plan made while a table was tiny
/// serves for this long at most; the reconnection and three plans a
/// connection makes are negligible next to that.
pub const KEYED_PLAN_LIFETIME: std::time::Duration = std::time::Duration::from_secs(30);

/// Whether statements on a connection may keep a cached plan that joins a
/// batch of ids to a growing table, or must be planned for each execution
/// with the ids they run with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Planned for each execution (see [`CustomPlan`]); right on any connection.
    PerExecution,
    /// Prepared once and kept: only on a connection from [`keyed_pool`].
    Keyed,
}

/// Runs a query with a plan made for its own parameters every time.
///
/// Postgres plans a prepared statement for its parameters for five
/// executions, then may switch to one generic plan, costed against the
/// tables as they are at that moment and kept until something invalidates
/// it (growth alone does not). For a lookup of a batch of ids (`= ANY($1)`
/// joined to another table) a generic plan made while the tables were small
/// stays a scan as they grow. Wrapped queries are never cached as prepared
/// statements, so each is planned with the values it runs with (one more
/// round trip); everything else may settle on a cached generic plan and
/// skip planning altogether.
#[derive(Debug, Clone, Copy)]
pub struct CustomPlan<Q>(pub Q);

impl<Q> diesel::query_builder::QueryId for CustomPlan<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: diesel::query_builder::Query> diesel::query_builder::Query for CustomPlan<Q> {
    type SqlType = Q::SqlType;
}

impl<Q: diesel::query_builder::QueryFragment<diesel::pg::Pg>> diesel::query_builder::QueryFragment<diesel::pg::Pg>
    for CustomPlan<Q>
{
    fn walk_ast<'b>(&'b self, mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()> {
        out.unsafe_to_cache_prepared();
        self.0.walk_ast(out.reborrow())
    }
}
