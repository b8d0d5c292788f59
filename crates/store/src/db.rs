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

/// The names (`<version>_<name>`) of the migrations built into this binary.
pub fn embedded_migration_names() -> Vec<String> {
    use diesel::migration::MigrationSource;
    MigrationSource::<diesel::pg::Pg>::migrations(&MIGRATIONS)
        .map(|ms| ms.iter().map(|m| m.name().to_string()).collect())
        .unwrap_or_default()
}

pub type PgPool = Pool<AsyncPgConnection>;
pub type PooledConn = Object<AsyncPgConnection>;

/// Opens a connection to `url`, with TLS when its `sslmode` asks:
/// `require` (or `prefer`) encrypts without checking the server's
/// certificate, as libpq does; `verify-ca` and `verify-full` check it against
/// the system roots and `HOOKLINE_TLS_CA_FILE`, and its name against the host.
/// Without `sslmode` (or with `disable`) the connection is plain.
pub async fn connect(url: &str) -> diesel::ConnectionResult<AsyncPgConnection> {
    let bad = |e: String| diesel::ConnectionError::BadConnection(e);
    let (url, mode) = tls::split_sslmode(url).map_err(bad)?;
    let Some(verify) = mode else {
        return AsyncPgConnection::establish(&url).await;
    };
    let mut config: tokio_postgres::Config = url.parse().map_err(|e| bad(format!("{e}")))?;
    config.ssl_mode(tokio_postgres::config::SslMode::Require);
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls::client_config(verify).map_err(bad)?);
    let (client, connection) = config.connect(tls).await.map_err(|e| bad(format!("{e}")))?;
    AsyncPgConnection::try_from_client_and_connection(client, connection).await
}

mod tls {
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

    /// The URL without `sslmode`, and whether TLS is wanted: None for plain,
    /// Some(true) when the certificate must be verified.
    pub fn split_sslmode(url: &str) -> Result<(String, Option<bool>), String> {
        // Read by hand: a multi-host URL (`h1:5432,h2:5432`) is no URL to the url crate.
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err("a Postgres URL starts with postgres:// or postgresql://".into());
        }
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut mode = None;
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("sslmode", v)) => mode = Some(v.to_owned()),
                _ => kept.push(pair),
            }
        }
        let want = match mode.as_deref() {
            None | Some("disable") | Some("allow") => None,
            Some("prefer") | Some("require") => Some(false),
            Some("verify-ca") | Some("verify-full") => Some(true),
            Some(other) => {
                return Err(format!("sslmode `{other}` is not one of disable, prefer, require, verify-ca, verify-full"))
            }
        };
        let url = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
        Ok((url, want))
    }

    pub fn client_config(verify: bool) -> Result<ClientConfig, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        if !verify {
            return Ok(builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
                .with_no_client_auth());
        }
        let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        if let Some(path) = std::env::var_os("HOOKLINE_TLS_CA_FILE").filter(|p| !p.is_empty()) {
            let certs = CertificateDer::pem_file_iter(&path)
                .map_err(|e| format!("HOOKLINE_TLS_CA_FILE {}: {e}", path.to_string_lossy()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("HOOKLINE_TLS_CA_FILE {}: {e}", path.to_string_lossy()))?;
                roots.add(cert).map_err(|e| format!("HOOKLINE_TLS_CA_FILE {}: {e}", path.to_string_lossy()))?;
            }
        }
        Ok(builder.with_root_certificates(roots).with_no_client_auth())
    }

    /// `sslmode=require`: the channel is encrypted, the certificate is not
    /// checked (libpq's meaning); signatures are still verified.
    #[derive(Debug)]
    struct EncryptOnly(Arc<rustls::crypto::CryptoProvider>);

    impl ServerCertVerifier for EncryptOnly {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn sslmode_is_taken_out_of_the_url_and_read() {
            let (url, mode) =
                super::split_sslmode("postgres://u@h:5432/db?sslmode=require&application_name=x").unwrap();
            assert_eq!((url.as_str(), mode), ("postgres://u@h:5432/db?application_name=x", Some(false)));
            let (url, mode) = super::split_sslmode("postgres://u@h/db?sslmode=verify-full").unwrap();
            assert_eq!((url.as_str(), mode), ("postgres://u@h/db", Some(true)));
            assert_eq!(super::split_sslmode("postgres://u@h/db").unwrap().1, None);
            assert!(super::split_sslmode("postgres://u@h/db?sslmode=sometimes").is_err());
            let (url, mode) =
                super::split_sslmode("postgres://u@h1:5432,h2:5433/db?target_session_attrs=read-write&sslmode=require")
                    .unwrap();
            assert_eq!(
                (url.as_str(), mode),
                ("postgres://u@h1:5432,h2:5433/db?target_session_attrs=read-write", Some(false))
            );
        }
    }
}

/// Builds a pool. Connections are opened lazily; call [`ping`] to check reachability.
pub fn pool(url: &str, max_size: usize) -> anyhow::Result<PgPool> {
    build_pool(url, max_size, None, None)
}

pub(crate) fn build_pool(
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
                let mut conn = connect(&url).await?;
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
    // By hand, like sslmode: several hosts (`h1:5432,h2:5432`) are allowed.
    let (scheme, rest) = url.split_once("://").context("HOOKLINE_DATABASE_URL is not a postgres:// URL")?;
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, format!("?{q}")),
        None => (rest, String::new()),
    };
    let (authority, name) = rest.split_once('/').unwrap_or((rest, ""));
    anyhow::ensure!(!name.is_empty(), "HOOKLINE_DATABASE_URL names no database");
    Ok((format!("{scheme}://{authority}/postgres{query}"), name.to_owned()))
}

/// Creates the database named in `url` when it does not exist yet.
pub async fn create_database_if_missing(url: &str) -> anyhow::Result<bool> {
    let (admin_url, name) = split_database_url(url)?;
    let mut conn =
        connect(&admin_url).await.with_context(|| format!("connecting to Postgres at {}", redact(&admin_url)))?;
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
    let mut conn = connect(admin_url).await?;
    diesel::sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name))).execute(&mut conn).await?;
    Ok(())
}

/// Creates `name` as a copy of `template` (tests clone a migrated template).
pub async fn create_database_from_template(admin_url: &str, name: &str, template: &str) -> anyhow::Result<()> {
    let mut conn = connect(admin_url).await?;
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
    // The password sits between the first `:` and the last `@` of the part before the path.
    if let Some((scheme, rest)) = url.split_once("://") {
        let end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..end].rfind('@') {
            if let Some(colon) = rest[..at].find(':') {
                return format!("{scheme}://{}:***{}", &rest[..colon], &rest[at..]);
            }
        }
        return url.to_owned();
    }
    match url::Url::parse(url) {
        Ok(u) => u.to_string(),
        Err(_) => "<invalid url>".into(),
    }
}

/// Applies pending migrations. Runs on a blocking thread: diesel's migration
/// harness is synchronous.
pub async fn run_migrations(url: &str) -> anyhow::Result<Vec<String>> {
    let conn = connect(url).await.with_context(|| format!("connecting to Postgres at {}", redact(url)))?;
    tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::from(conn);
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

/// The migrations this build has that the database has not applied yet.
pub async fn pending_migrations(url: &str) -> anyhow::Result<Vec<String>> {
    let conn = connect(url).await.with_context(|| format!("connecting to Postgres at {}", redact(url)))?;
    tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::from(conn);
        Ok(conn
            .pending_migrations(MIGRATIONS)
            .map_err(|e| anyhow::anyhow!("reading the applied migrations: {e}"))?
            .iter()
            .map(|m| m.name().to_string())
            .collect())
    })
    .await
    .context("migration check panicked")?
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

#[cfg(test)]
mod embedded_tests {
    #[test]
    fn every_migration_directory_is_built_in() {
        let names = super::embedded_migration_names();
        let dirs = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations"))
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .count();
        assert_eq!(names.len(), dirs, "{names:?}");
        assert!(names.iter().any(|n| n.replace('-', "") == "20261123000001_initial"), "{names:?}");
    }
}

#[cfg(test)]
mod url_tests {
    #[test]
    fn database_urls_with_several_hosts_are_read_by_hand() {
        let (admin, name) =
            super::split_database_url("postgres://u:pw@h1:5432,h2:5433/hookline?target_session_attrs=read-write")
                .unwrap();
        assert_eq!(name, "hookline");
        assert_eq!(admin, "postgres://u:pw@h1:5432,h2:5433/postgres?target_session_attrs=read-write");
        assert!(super::split_database_url("postgres://u@h/").is_err());
        assert_eq!(super::redact("postgres://u:secret@h1,h2/db"), "postgres://u:***@h1,h2/db");
        assert_eq!(super::redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(super::redact("amqp://guest:guest@127.0.0.1:5672/%2f"), "amqp://guest:***@127.0.0.1:5672/%2f");
    }
}
