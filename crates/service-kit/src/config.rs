//! Typed settings, layered: defaults, then an optional TOML file (the path in
//! `HOOKLINE_CONFIG`), then `HOOKLINE_*` environment variables. Nothing is
//! looked up relative to the working directory.
//!
//! In the TOML file each setting is the variable's name without the
//! `HOOKLINE_` prefix, in lower case: `database_url = "postgres://…"`.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;

use anyhow::{anyhow, Context};
use hookline_domain::crypto::MasterKey;

/// A value that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(v: T) -> Self {
        Self(v)
    }
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: Secret<String>,
    pub database_pool_size: usize,
    pub amqp_url: Secret<String>,
    pub redis_url: Secret<String>,
    pub redis_prefix: String,
    /// The HTTP address; each service has its own default.
    pub listen: Option<SocketAddr>,
    /// Where `/metrics` (with `/health` and `/ready`) is served, apart from
    /// the public listener (`HOOKLINE_OPS_LISTEN`). The APIs serve no
    /// metrics without it; the worker and alerting fall back to `listen`.
    pub ops_listen: Option<SocketAddr>,
    pub operator_token: Option<Secret<String>>,
    pub master_key: Option<Secret<String>>,
    pub allow_private_targets: bool,
    pub log_format: Option<LogFormat>,
    pub otlp_endpoint: Option<String>,
    /// When Redis is unreachable: refuse requests (true) or limit per process (false).
    pub rate_limit_fail_closed: bool,
    pub default_rate_limit_per_hour: u32,
    pub key_cache_ttl_secs: u64,
    pub max_payload_bytes: usize,
    /// Proxies whose `X-Forwarded-For`, `Forwarded` and `X-Forwarded-Proto`
    /// are believed (`HOOKLINE_TRUSTED_PROXIES`, CIDRs; none by default).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Failed authentications (API and admin sign-in) one address may make
    /// per minute; past it the address is refused for a minute without a look-up.
    pub auth_failures_per_minute: u64,
    pub worker_prefetch: u16,
    pub worker_concurrency: usize,
    pub endpoint_concurrency: usize,
    /// Requests one organisation may have in flight on one worker
    /// (`HOOKLINE_ORG_CONCURRENCY`; half the worker's by default), so a
    /// tenant whose endpoints hang cannot hold every slot.
    pub org_concurrency: usize,
    pub outbox_batch_size: i64,
    /// How often the relay looks for due outbox rows without being told
    /// (`HOOKLINE_OUTBOX_POLL_MS`); writes announce themselves at once.
    pub outbox_poll: std::time::Duration,
    pub usage_flush_secs: u64,
    /// SMTP server for alert emails, e.g. `smtp://user:pass@mail.example.com:587` (`smtps://` for TLS); unset disables email.
    pub smtp_url: Option<Secret<String>>,
    pub smtp_from: String,
    /// An open alert re-notifies at most this often while it keeps occurring.
    pub alert_renotify_secs: u64,
    /// How often retention and the time-based rules run.
    pub maintenance_interval_secs: u64,
    /// An admin UI session ends after this long without a request.
    pub admin_session_idle_secs: u64,
    /// A request body must arrive within this many seconds (slow clients are cut off).
    pub body_timeout_secs: u64,
    /// Where users reach the APIs (`https://hooks.example.com`), for links Hookline hands out
    /// (portal links); unset, the request's own scheme and host.
    pub public_url: Option<String>,
}

pub const ENV_PREFIX: &str = "HOOKLINE_";

/// Secrets printed in `docker-compose.yml` and the docs: anyone knows them,
/// so they are refused unless `HOOKLINE_LOCAL_DEVELOPMENT=true`.
pub const EXAMPLE_MASTER_KEYS: &[&str] = &["bG9jYWwtZGV2ZWxvcG1lbnQtb25seS0zMi1ieXRlcyE="];
pub const EXAMPLE_OPERATOR_TOKENS: &[&str] = &["change-me-operator-token"];

impl Settings {
    /// Loads from the process environment and the file named by `HOOKLINE_CONFIG`.
    pub fn load() -> anyhow::Result<Self> {
        let env: HashMap<String, String> = std::env::vars().collect();
        let file = match env.get("HOOKLINE_CONFIG") {
            Some(path) => {
                Some(std::fs::read_to_string(path).with_context(|| format!("reading HOOKLINE_CONFIG file {path}"))?)
            }
            None => None,
        };
        Self::from_sources(file.as_deref(), &env)
    }

    /// Builds settings from a TOML text and an environment map (tests use this).
    pub fn from_sources(file: Option<&str>, env: &HashMap<String, String>) -> anyhow::Result<Self> {
        let mut values: HashMap<String, String> = HashMap::new();
        if let Some(text) = file {
            let table: toml::Table = text.parse().context("HOOKLINE_CONFIG is not valid TOML")?;
            for (k, v) in table {
                let v = match v {
                    toml::Value::String(s) => s,
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    _ => anyhow::bail!("HOOKLINE_CONFIG: `{k}` must be a string, number or boolean"),
                };
                values.insert(format!("{ENV_PREFIX}{}", k.to_ascii_uppercase()), v);
            }
        }
        for (k, v) in env {
            if k.starts_with(ENV_PREFIX) {
                values.insert(k.clone(), v.clone());
            }
        }
        let get = |name: &str| values.get(name).map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        let parse_num = |name: &str, default: u64, min: u64, max: u64| -> anyhow::Result<u64> {
            match get(name) {
                None => Ok(default),
                Some(v) => {
                    let n: u64 = v.parse().map_err(|_| anyhow!("{name} must be a whole number, got `{v}`"))?;
                    anyhow::ensure!((min..=max).contains(&n), "{name} must be between {min} and {max}, got {n}");
                    Ok(n)
                }
            }
        };
        let parse_bool = |name: &str| -> anyhow::Result<bool> {
            match get(name).as_deref() {
                None => Ok(false),
                Some("1" | "true" | "yes" | "on") => Ok(true),
                Some("0" | "false" | "no" | "off") => Ok(false),
                Some(v) => Err(anyhow!("{name} must be true or false, got `{v}`")),
            }
        };

        anyhow::ensure!(
            get("HOOKLINE_TRUST_FORWARDED_FOR").is_none(),
            "HOOKLINE_TRUST_FORWARDED_FOR is gone: list the proxies in front in HOOKLINE_TRUSTED_PROXIES (CIDRs, comma-separated)"
        );
        let addr = |name: &str| -> anyhow::Result<Option<SocketAddr>> {
            match get(name) {
                None => Ok(None),
                Some(v) => Ok(Some(
                    v.parse().map_err(|_| anyhow!("{name} must be host:port, e.g. 127.0.0.1:8000, got `{v}`"))?,
                )),
            }
        };
        let listen = addr("HOOKLINE_LISTEN")?;
        let ops_listen = addr("HOOKLINE_OPS_LISTEN")?;
        let log_format = match get("HOOKLINE_LOG_FORMAT").as_deref() {
            None => None,
            Some("json") => Some(LogFormat::Json),
            Some("pretty") => Some(LogFormat::Pretty),
            Some(v) => return Err(anyhow!("HOOKLINE_LOG_FORMAT must be json or pretty, got `{v}`")),
        };
        let master_key = get("HOOKLINE_MASTER_KEY");
        if let Some(k) = &master_key {
            MasterKey::from_base64(k)?;
        }
        let database_url =
            get("HOOKLINE_DATABASE_URL").unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/hookline".into());
        anyhow::ensure!(
            database_url.starts_with("postgres://") || database_url.starts_with("postgresql://"),
            "HOOKLINE_DATABASE_URL must be a postgres:// URL"
        );
        let amqp_url = get("HOOKLINE_AMQP_URL").unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
        let nodes = hookline_broker::publisher::nodes(&amqp_url);
        anyhow::ensure!(
            !nodes.is_empty() && nodes.iter().all(|u| u.starts_with("amqp://") || u.starts_with("amqps://")),
            "HOOKLINE_AMQP_URL must be an amqp:// URL, or several nodes' URLs separated by commas"
        );
        let redis_url = get("HOOKLINE_REDIS_URL").unwrap_or_else(|| "redis://127.0.0.1:6379".into());
        anyhow::ensure!(
            redis_url.starts_with("redis://") || redis_url.starts_with("rediss://"),
            "HOOKLINE_REDIS_URL must be a redis:// URL"
        );
        let worker_concurrency = parse_num("HOOKLINE_WORKER_CONCURRENCY", 256, 1, 10_000)? as usize;
        let settings = Self {
            database_url: Secret(database_url),
            database_pool_size: parse_num("HOOKLINE_DATABASE_POOL_SIZE", 32, 1, 1000)? as usize,
            amqp_url: Secret(amqp_url),
            redis_url: Secret(redis_url),
            redis_prefix: get("HOOKLINE_REDIS_PREFIX").unwrap_or_else(|| "hookline:".into()),
            listen,
            ops_listen,
            operator_token: get("HOOKLINE_OPERATOR_TOKEN").map(Secret),
            master_key: master_key.map(Secret),
            allow_private_targets: parse_bool("HOOKLINE_ALLOW_PRIVATE_TARGETS")?,
            log_format,
            otlp_endpoint: get("HOOKLINE_OTLP_ENDPOINT"),
            rate_limit_fail_closed: parse_bool("HOOKLINE_RATE_LIMIT_FAIL_CLOSED")?,
            default_rate_limit_per_hour: parse_num("HOOKLINE_DEFAULT_RATE_LIMIT_PER_HOUR", 1000, 1, 100_000_000)?
                as u32,
            key_cache_ttl_secs: parse_num("HOOKLINE_KEY_CACHE_TTL_SECS", 30, 0, 3600)?,
            max_payload_bytes: parse_num("HOOKLINE_MAX_PAYLOAD_BYTES", 256 * 1024, 1024, 16 * 1024 * 1024)? as usize,
            auth_failures_per_minute: parse_num("HOOKLINE_AUTH_FAILURES_PER_MINUTE", 60, 1, 1_000_000)?,
            trusted_proxies: parse_nets("HOOKLINE_TRUSTED_PROXIES", get("HOOKLINE_TRUSTED_PROXIES"))?,
            worker_prefetch: parse_num("HOOKLINE_WORKER_PREFETCH", 256, 1, 10_000)? as u16,
            worker_concurrency,
            endpoint_concurrency: parse_num("HOOKLINE_ENDPOINT_CONCURRENCY", 16, 1, 10_000)? as usize,
            org_concurrency: parse_num("HOOKLINE_ORG_CONCURRENCY", (worker_concurrency as u64 / 2).max(1), 1, 10_000)?
                as usize,
            outbox_batch_size: parse_num("HOOKLINE_OUTBOX_BATCH_SIZE", 200, 1, 10_000)? as i64,
            outbox_poll: std::time::Duration::from_millis(parse_num("HOOKLINE_OUTBOX_POLL_MS", 2000, 10, 600_000)?),
            usage_flush_secs: parse_num("HOOKLINE_USAGE_FLUSH_SECS", 10, 1, 3600)?,
            smtp_url: get("HOOKLINE_SMTP_URL").map(Secret),
            smtp_from: get("HOOKLINE_SMTP_FROM").unwrap_or_else(|| "Hookline <alerts@hookline.localhost>".into()),
            alert_renotify_secs: parse_num("HOOKLINE_ALERT_RENOTIFY_SECS", 900, 1, 86_400)?,
            maintenance_interval_secs: parse_num("HOOKLINE_MAINTENANCE_INTERVAL_SECS", 3600, 1, 86_400)?,
            admin_session_idle_secs: parse_num("HOOKLINE_ADMIN_SESSION_IDLE_SECS", 1800, 30, 7 * 86_400)?,
            body_timeout_secs: parse_num("HOOKLINE_BODY_TIMEOUT_SECS", 30, 1, 3600)?,
            public_url: get("HOOKLINE_PUBLIC_URL").map(|u| u.trim_end_matches('/').to_owned()),
        };
        if let Some(u) = &settings.public_url {
            anyhow::ensure!(
                url::Url::parse(u).is_ok_and(|p| matches!(p.scheme(), "http" | "https")),
                "HOOKLINE_PUBLIC_URL must be an http(s) URL"
            );
        }
        if let Some(u) = &settings.smtp_url {
            anyhow::ensure!(
                u.expose().starts_with("smtp://") || u.expose().starts_with("smtps://"),
                "HOOKLINE_SMTP_URL must be an smtp:// or smtps:// URL"
            );
        }
        if let Some(token) = &settings.operator_token {
            anyhow::ensure!(token.expose().len() >= 16, "HOOKLINE_OPERATOR_TOKEN must be at least 16 characters");
        }
        if !parse_bool("HOOKLINE_LOCAL_DEVELOPMENT")? {
            let example = |s: &Option<Secret<String>>, known: &[&str]| {
                s.as_ref().is_some_and(|v| known.contains(&v.expose().as_str()))
            };
            anyhow::ensure!(
                !example(&settings.master_key, EXAMPLE_MASTER_KEYS),
                "HOOKLINE_MASTER_KEY is the published example key: set your own (`openssl rand -base64 32`), or HOOKLINE_LOCAL_DEVELOPMENT=true on a machine of your own"
            );
            anyhow::ensure!(
                !example(&settings.operator_token, EXAMPLE_OPERATOR_TOKENS),
                "HOOKLINE_OPERATOR_TOKEN is the published example token: set your own (`openssl rand -hex 32`), or HOOKLINE_LOCAL_DEVELOPMENT=true on a machine of your own"
            );
        }
        Ok(settings)
    }

    /// The master key, or an error naming the variable.
    pub fn require_master_key(&self) -> anyhow::Result<MasterKey> {
        let text = self.master_key.as_ref().ok_or_else(|| {
            anyhow!("HOOKLINE_MASTER_KEY is not set: it must be base64 of 32 random bytes (`openssl rand -base64 32`)")
        })?;
        Ok(MasterKey::from_base64(text.expose())?)
    }
}

/// A comma-separated list of CIDRs (a bare address is a single host).
fn parse_nets(name: &str, value: Option<String>) -> anyhow::Result<Vec<ipnet::IpNet>> {
    let Some(value) = value else { return Ok(Vec::new()) };
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map(|n| n.trunc())
                .map_err(|_| anyhow!("{name}: `{s}` is not an IP address or CIDR"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_point_at_localhost() {
        let s = Settings::from_sources(None, &HashMap::new()).unwrap();
        assert_eq!(s.database_url.expose(), "postgres://postgres@127.0.0.1:5432/hookline");
        assert_eq!(s.amqp_url.expose(), "amqp://guest:guest@127.0.0.1:5672/%2f");
        assert_eq!(s.redis_url.expose(), "redis://127.0.0.1:6379");
        assert_eq!(s.default_rate_limit_per_hour, 1000);
        assert!(!s.allow_private_targets);
    }

    #[test]
    fn env_overrides_the_file() {
        let file = "redis_prefix = \"from-file:\"\nlisten = \"127.0.0.1:9000\"\n";
        let s = Settings::from_sources(Some(file), &env(&[("HOOKLINE_REDIS_PREFIX", "from-env:")])).unwrap();
        assert_eq!(s.redis_prefix, "from-env:");
        assert_eq!(s.listen.unwrap().port(), 9000);
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = Settings::from_sources(None, &env(&[("HOOKLINE_LISTEN", "nope")])).unwrap_err();
        assert!(err.to_string().contains("HOOKLINE_LISTEN"));
        let err = Settings::from_sources(None, &env(&[("HOOKLINE_MASTER_KEY", "short")])).unwrap_err();
        assert!(err.to_string().contains("HOOKLINE_MASTER_KEY"));
        let err = Settings::from_sources(None, &env(&[("HOOKLINE_ALLOW_PRIVATE_TARGETS", "maybe")])).unwrap_err();
        assert!(err.to_string().contains("HOOKLINE_ALLOW_PRIVATE_TARGETS"));
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Settings::from_sources(None, &env(&[("HOOKLINE_OPERATOR_TOKEN", "op-token-0123456789")])).unwrap();
        assert!(!format!("{s:?}").contains("op-token-0123456789"));
    }
}
