//! `hookline`: migrate the database, administer organisations and keys, and
//! run any of Hookline's services (or all of them in one process).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use hookline_domain::api_key::KeyPepper;
use hookline_domain::crypto::MasterKey;
use hookline_domain::id::OrgId;
use hookline_domain::scope::Role;
use hookline_service_kit::config::{Secret, Settings};
use hookline_service_kit::deps::Connections;

/// jemalloc rather than the system allocator: at ten endpoints per event
/// glibc's malloc and free took about a quarter of the process's CPU.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "hookline", version, about = "Signed, reliable webhooks and organisation-scoped API keys")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the database if it does not exist, then apply pending migrations.
    Migrate,
    /// Organisations.
    Org {
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// API keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Run a service until SIGTERM or SIGINT.
    Run {
        #[arg(value_enum)]
        service: Service,
    },
    /// Print the OpenAPI document of both APIs.
    Openapi,
    /// Measure a running Hookline: ingest throughput and latency, end-to-end delivery.
    ///
    /// An option given twice takes its last value, so `scripts/bench.sh`
    /// can pass one scenario's options and then the caller's overrides.
    #[command(args_override_self = true)]
    Bench(hookline_loadgen::BenchArgs),
}

#[derive(Subcommand)]
enum OrgCommand {
    /// Create an organisation and print its first admin API key (shown once).
    Create {
        #[arg(long)]
        name: String,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set an organisation's quotas.
    SetQuota {
        #[arg(long)]
        org: String,
        /// Events ingested per minute across all keys.
        #[arg(long, conflicts_with = "unlimited_events")]
        events_per_minute: Option<i32>,
        /// Remove the event quota.
        #[arg(long)]
        unlimited_events: bool,
        #[arg(long)]
        max_endpoints: Option<i32>,
        #[arg(long)]
        max_keys: Option<i32>,
        #[arg(long)]
        retention_days: Option<i32>,
        /// The highest rate limit (per hour) the organisation may give its keys.
        #[arg(long, conflicts_with = "no_key_rate_ceiling")]
        max_key_rate_limit_per_hour: Option<i32>,
        /// Remove the ceiling on key rate limits.
        #[arg(long)]
        no_key_rate_ceiling: bool,
        /// Whether only registered event types are accepted (true, the default) or any type (false).
        #[arg(long)]
        strict_event_types: Option<bool>,
        /// Days until keys created without an expiry expire.
        #[arg(long, conflicts_with = "no_default_key_lifetime")]
        default_key_lifetime_days: Option<i32>,
        /// Keys created without an expiry never expire.
        #[arg(long)]
        no_default_key_lifetime: bool,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create an API key for an organisation and print it (shown once).
    Create {
        #[arg(long)]
        org: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "admin")]
        role: String,
        #[arg(long)]
        rate_limit_per_hour: Option<i32>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Service {
    ControlApi,
    IngestApi,
    Worker,
    Alerting,
    All,
}

/// Where `run all` and the admin commands keep a development master key
/// when HOOKLINE_MASTER_KEY is unset: one per user, like the default
/// database, so a key printed in one directory works from any other.
fn local_master_key_path() -> PathBuf {
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from(".hookline"));
    data.join("hookline").join("master.key")
}

fn main() -> std::process::ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// For single-process use (`run all` and the admin commands): when
/// HOOKLINE_MASTER_KEY is unset, use the development key of
/// [`local_master_key_path`]. Only `run all` (`create`) makes one: an admin
/// command that made its own would print keys no server accepts.
fn with_local_master_key(mut settings: Settings, create: bool) -> anyhow::Result<Settings> {
    if settings.master_key.is_some() {
        return Ok(settings);
    }
    let path = local_master_key_path();
    let text = if path.exists() {
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?
    } else if create {
        let key = MasterKey::generate_base64();
        write_private(&path, &key)?;
        eprintln!(
            "warning: HOOKLINE_MASTER_KEY is not set; created {} for this development install. Production must set HOOKLINE_MASTER_KEY (base64 of 32 random bytes) and keep it safe.",
            path.display()
        );
        key
    } else {
        anyhow::bail!(
            "HOOKLINE_MASTER_KEY is not set and {} does not exist: set HOOKLINE_MASTER_KEY as the services have it, or run `make dev` (`hookline run all`) once to create a development key there",
            path.display()
        );
    };
    MasterKey::from_base64(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    settings.master_key = Some(Secret::new(text.trim().to_owned()));
    Ok(settings)
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let url = settings.database_url.expose();
    let created = hookline_store::db::create_database_if_missing(url)
        .await
        .map_err(|e| hookline_service_kit::deps::postgres_unreachable(url, &format!("{e:#}")))?;
    if created {
        tracing::info!("created the database");
    }
    let applied = hookline_store::db::run_migrations(url).await?;
    for m in &applied {
        tracing::info!(migration = %m, "applied");
    }
    Ok(())
}

fn pepper_for(settings: &Settings) -> anyhow::Result<KeyPepper> {
    let master = settings.require_master_key()?;
    Ok(KeyPepper::new(&master.derive("hookline api key pepper v1")))
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load()?;
    match cli.command {
        Command::Migrate => {
            let _t = hookline_service_kit::telemetry::init("hookline-migrate", &settings)?;
            migrate(&settings).await?;
            println!("database is up to date");
            Ok(())
        }
        Command::Openapi => {
            println!("{}", serde_json::to_string_pretty(&hookline_platform_spec())?);
            Ok(())
        }
        Command::Org { command: OrgCommand::Create { name, json } } => {
            let settings = with_local_master_key(settings, false)?;
            let (mut conn, caches) = operator_connection(&settings).await?;
            let created = hookline_control_api::usecases::orgs::create(
                &mut conn,
                &caches,
                &pepper_for(&settings)?,
                settings.default_rate_limit_per_hour as i32,
                &name,
                None,
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&created)?);
            } else {
                println!("organisation  {}  {}", created.id, created.name);
                println!("admin key     {}", created.api_key.key.as_deref().unwrap_or_default());
                println!("              (shown once: store it now)");
            }
            Ok(())
        }
        Command::Org {
            command:
                OrgCommand::SetQuota {
                    org,
                    events_per_minute,
                    unlimited_events,
                    max_endpoints,
                    max_keys,
                    retention_days,
                    max_key_rate_limit_per_hour,
                    no_key_rate_ceiling,
                    strict_event_types,
                    default_key_lifetime_days,
                    no_default_key_lifetime,
                },
        } => {
            let org_id = OrgId::parse(&org).map_err(|e| anyhow::anyhow!("--org: {e}"))?;
            let (mut conn, caches) = operator_connection(&settings).await?;
            let body = hookline_control_api::routes::orgs::UpdateOrg {
                name: None,
                events_per_minute: if unlimited_events { Some(None) } else { events_per_minute.map(Some) },
                max_endpoints,
                max_keys,
                retention_days,
                max_key_rate_limit_per_hour: if no_key_rate_ceiling {
                    Some(None)
                } else {
                    max_key_rate_limit_per_hour.map(Some)
                },
                strict_event_types,
                default_key_lifetime_days: if no_default_key_lifetime {
                    Some(None)
                } else {
                    default_key_lifetime_days.map(Some)
                },
                ..Default::default()
            };
            let view = hookline_control_api::usecases::orgs::update(&mut conn, &caches, org_id, body, None).await?;
            println!("{}", serde_json::to_string_pretty(&view)?);
            Ok(())
        }
        Command::Key { command: KeyCommand::Create { org, name, role, rate_limit_per_hour, json } } => {
            let settings = with_local_master_key(settings, false)?;
            let org_id = OrgId::parse(&org).map_err(|e| anyhow::anyhow!("--org: {e}"))?;
            let role: Role = role.parse().map_err(|e: String| anyhow::anyhow!("--role: {e}"))?;
            let (mut conn, caches) = operator_connection(&settings).await?;
            let view = hookline_control_api::usecases::keys::create_for_operator(
                &mut conn,
                &caches,
                &pepper_for(&settings)?,
                org_id,
                &name,
                role,
                rate_limit_per_hour.unwrap_or(settings.default_rate_limit_per_hour as i32),
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                println!("key  {}  {}", view.id, view.key.as_deref().unwrap_or_default());
                println!("     (shown once: store it now)");
            }
            Ok(())
        }
        Command::Run { service } => run(service, settings).await,
        Command::Bench(args) => hookline_loadgen::run(args).await.map(|_| ()),
    }
}

/// The whole platform's OpenAPI document (both APIs, as the gateway serves them).
fn hookline_platform_spec() -> utoipa::openapi::OpenApi {
    hookline::platform_spec()
}

/// A connection for an operator command, and caches that tell running
/// services about its change over Redis (or, with Redis unreachable, say
/// that they catch up within `HOOKLINE_KEY_CACHE_TTL_SECS`).
async fn operator_connection(
    settings: &Settings,
) -> anyhow::Result<(hookline_store::db::PooledConn, hookline_service_kit::caches::Caches)> {
    let pool = hookline_store::db::pool(settings.database_url.expose(), 1)?;
    let conn = pool
        .get()
        .await
        .map_err(|e| hookline_service_kit::deps::postgres_unreachable(settings.database_url.expose(), &e))?;
    let redis =
        match hookline_service_kit::redis_conn::RedisConn::connect(settings.redis_url.expose(), &settings.redis_prefix)
            .await
        {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!(
                "warning: Redis unreachable ({e}); running services see this change within HOOKLINE_KEY_CACHE_TTL_SECS"
            );
                None
            }
        };
    let ttl = std::time::Duration::from_secs(settings.key_cache_ttl_secs);
    Ok((conn, hookline_service_kit::caches::Caches::new(redis, ttl)))
}

async fn run(service: Service, settings: Settings) -> anyhow::Result<()> {
    let settings = match service {
        Service::All => with_local_master_key(settings, true)?,
        _ => settings,
    };
    let name = match service {
        Service::ControlApi => "hookline-control-api",
        Service::IngestApi => "hookline-ingest-api",
        Service::Worker => "hookline-worker",
        Service::Alerting => "hookline-alerting",
        Service::All => "hookline",
    };
    let _telemetry = hookline_service_kit::telemetry::init(name, &settings)?;
    if matches!(service, Service::All) {
        migrate(&settings).await?;
    } else {
        // A split service runs only against the schema it was built for:
        // `hookline migrate` (a Job or init container) goes first.
        let pending = hookline_store::db::pending_migrations(settings.database_url.expose()).await?;
        anyhow::ensure!(
            pending.is_empty(),
            "the database schema is older than this version needs ({} migration(s) pending, the first {}): run `hookline migrate` first",
            pending.len(),
            pending[0]
        );
    }
    let cancel = hookline_service_kit::shutdown::on_signal();
    let name = match service {
        Service::ControlApi => "control-api",
        Service::IngestApi => "ingest-api",
        Service::Worker => "worker",
        Service::Alerting => "alerting",
        Service::All => "all",
    };
    let c = Connections::open(settings, name, cancel.clone()).await?;
    let result = match service {
        Service::ControlApi => hookline_control_api::run(c).await,
        Service::IngestApi => hookline_ingest_api::run(c).await,
        Service::Worker => hookline_delivery_worker::run(c).await,
        Service::Alerting => hookline_alerting::run(c).await,
        Service::All => hookline::run_all(c).await,
    };
    cancel.cancel();
    tracing::info!("stopped");
    result
}
