//! Connection pool, database creation and migrations.

use anyhow::Context;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::{Hook, HookError, Object, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

pub type PgPool = Pool<AsyncPgConnection>;
pub type PooledConn = Object<AsyncPgConnection>;

/// Builds a pool. Connections are opened lazily; call [`ping`] to check reachability.
pub fn pool(url: &str, max_size: usize) -> anyhow::Result<PgPool> {
    build_pool(url, max_size, None, None)
}

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

fn build_pool(
    url: &str,
    max_size: usize,
    setup: Option<&'static str>,
    lifetime: Option<std::time::Duration>,
) -> anyhow::Result<PgPool> {
    // Checking out a connection runs no test query: a closed connection is
    // recognised as broken and replaced, and a query on a connection that
    // died unnoticed fails like any other query. A `SELECT 1` per checkout
    // was the most frequent statement on the server under load.
    let mut config = ManagerConfig::default();
    config.recycling_method = RecyclingMethod::Fast;
    // A connection's I/O task runs on the runtime that opened it. Open them
    // all on the runtime that built the pool (the main one), never on an
    // HTTP worker's: those stop first at shutdown, and every connection they
    // had opened would die under whoever holds it then.
    let runtime = tokio::runtime::Handle::try_current().ok();
    config.custom_setup = Box::new(move |url| {
        let url = url.to_owned();
        let runtime = runtime.clone();
        Box::pin(async move {
            let open = async move {
                let mut conn = AsyncPgConnection::establish(&url).await?;
                if let Some(sql) = setup {
                    diesel_async::SimpleAsyncConnection::batch_execute(&mut conn, sql)
                        .await
                        .map_err(|e| diesel::ConnectionError::BadConnection(format!("setting up a connection: {e}")))?;
                }
                Ok(conn)
            };
            match runtime {
                Some(rt) => rt
                    .spawn(open)
                    .await
                    .map_err(|e| diesel::ConnectionError::BadConnection(format!("opening a connection: {e}")))?,
                None => open.await,
            }
        })
    });
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
    let mut builder = Pool::builder(manager);
    if let Some(lifetime) = lifetime {
        // A connection past its lifetime is closed when it comes back to be
        // reused, and a new one takes its place.
        builder = builder.pre_recycle(Hook::sync_fn(move |_, metrics| {
            if metrics.age() > lifetime {
                Err(HookError::message("the connection has outlived its plans"))
            } else {
                Ok(())
            }
        }));
    }
    builder
        .max_size(max_size)
        .wait_timeout(Some(std::time::Duration::from_secs(5)))
        .create_timeout(Some(std::time::Duration::from_secs(5)))
        .runtime(deadpool_runtime())
        .build()
        .context("building the Postgres connection pool")
}

fn deadpool_runtime() -> deadpool::Runtime {
    deadpool::Runtime::Tokio1
}

/// `SELECT 1` on a pooled connection.
pub async fn ping(pool: &PgPool) -> anyhow::Result<()> {
    let mut conn = pool.get().await.context("database pool")?;
    diesel::sql_query("SELECT 1").execute(&mut conn).await?;
    Ok(())
}

#[derive(QueryableByName)]
struct Exists {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    exists: bool,
}

/// Splits `postgres://…/name?…` into (server URL on database `postgres`, name).
pub fn split_database_url(url: &str) -> anyhow::Result<(String, String)> {
    let mut parsed = url::Url::parse(url).context("HOOKLINE_DATABASE_URL is not a URL")?;
    let name = parsed.path().trim_start_matches('/').to_owned();
    anyhow::ensure!(!name.is_empty(), "HOOKLINE_DATABASE_URL names no database");
    parsed.set_path("/postgres");
    Ok((parsed.to_string(), name))
}

/// Creates the database named in `url` when it does not exist yet.
pub async fn create_database_if_missing(url: &str) -> anyhow::Result<bool> {
    let (admin_url, name) = split_database_url(url)?;
    let mut conn = AsyncPgConnection::establish(&admin_url)
        .await
        .with_context(|| format!("connecting to Postgres at {}", redact(&admin_url)))?;
    let found: Exists = diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
        .bind::<diesel::sql_types::Text, _>(&name)
        .get_result(&mut conn)
        .await?;
    if found.exists {
        return Ok(false);
    }
    let sql = format!("CREATE DATABASE {}", quote_ident(&name));
    match diesel::sql_query(sql).execute(&mut conn).await {
        Ok(_) => Ok(true),
        // Another process created it in the meantime.
        Err(diesel::result::Error::DatabaseError(_, info)) if info.message().contains("already exists") => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Drops a database (tests), terminating its connections first.
pub async fn drop_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let mut conn = AsyncPgConnection::establish(admin_url).await?;
    diesel::sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name))).execute(&mut conn).await?;
    Ok(())
}

/// Creates `name` as a copy of `template` (tests clone a migrated template).
pub async fn create_database_from_template(admin_url: &str, name: &str, template: &str) -> anyhow::Result<()> {
    let mut conn = AsyncPgConnection::establish(admin_url).await?;
    diesel::sql_query(format!("CREATE DATABASE {} TEMPLATE {}", quote_ident(name), quote_ident(template)))
        .execute(&mut conn)
        .await?;
    Ok(())
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The URL with any password replaced, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "<invalid url>".into(),
    }
}

/// Applies pending migrations. Runs on a blocking thread: diesel's migration
/// harness is synchronous.
pub async fn run_migrations(url: &str) -> anyhow::Result<Vec<String>> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
        let mut conn = <AsyncConnectionWrapper<AsyncPgConnection> as diesel::Connection>::establish(&url)
            .with_context(|| format!("connecting to Postgres at {}", redact(&url)))?;
        // Serialise concurrent migrators (several services starting at once).
        conn.batch_execute("SELECT pg_advisory_lock(7243001)")?;
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map_err(|e| anyhow::anyhow!("applying migrations: {e}"))?
            .into_iter()
            .map(|v| v.to_string())
            .collect();
        conn.batch_execute("SELECT pg_advisory_unlock(7243001)")?;
        Ok(applied)
    })
    .await
    .context("migration task panicked")?
}

/// Classifies a diesel error for the API layer.
pub fn is_unique_violation(err: &diesel::result::Error, constraint: Option<&str>) -> bool {
    match err {
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, info) => {
            constraint.is_none() || info.constraint_name() == constraint
        }
        _ => false,
    }
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
