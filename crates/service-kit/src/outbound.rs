//! Every request Hookline makes to an address a tenant chose (deliveries,
//! alert notifications) goes through this one client: pooled rustls, never
//! follows redirects, never uses a proxy, and connects only to public
//! addresses unless the operator allows private ones.
//!
//! The guard sits in the resolver: hyper connects to exactly the addresses
//! it returns, so a name that resolves to a private address at delivery
//! time (DNS rebinding) is refused even if it was public when saved.
//! IP-literal URLs never reach a resolver and are checked before sending.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookline_domain::net::{is_internal_hostname, is_public_ip};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::storable::sanitise;

/// How much of a response body is kept.
pub const BODY_EXCERPT: usize = 4096;

/// Why the resolver refused a name.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            if !allow && is_internal_hostname(&host) {
                return Err(Box::new(Refused(format!("`{host}` is an internal name"))) as _);
            }
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| {
                    Box::new(Refused(format!("dns: cannot resolve `{host}`: {e}")))
                        as Box<dyn std::error::Error + Send + Sync>
                })?
                .collect();
            let allowed: Vec<SocketAddr> = addrs.into_iter().filter(|a| allow || is_public_ip(a.ip())).collect();
            if allowed.is_empty() {
                return Err(Box::new(Refused(format!("`{host}` resolves only to private addresses"))) as _);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The delivery client. `max_in_flight` is how many requests the worker can
/// have open at once; as many idle connections are kept per host, so that
/// endpoints sharing a host (one receiver behind several paths is common)
/// reuse their connections instead of opening a new one for every request
/// beyond a smaller pool.
pub fn build_client(allow_private: bool, max_in_flight: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver { allow_private }))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(max_in_flight)
        .tcp_nodelay(true)
        .build()?)
}

/// What one POST did.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: Option<u16>,
    pub headers: serde_json::Map<String, serde_json::Value>,
    pub body: Option<String>,
    pub retry_after: Option<Duration>,
    /// `dns`, `connect`, `tls`, `timeout`, `http_status`, `body`; None on a 2xx.
    pub error_class: Option<&'static str>,
    pub error: Option<String>,
    pub latency: Duration,
}

impl Response {
    pub fn succeeded(&self) -> bool {
        self.error_class.is_none()
    }
}

fn classify(err: &reqwest::Error) -> (&'static str, String) {
    let mut chain = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(err);
    while let Some(e) = source {
        if !chain.is_empty() {
            chain.push_str(": ");
        }
        chain.push_str(&e.to_string());
        source = e.source();
    }
    let lower = chain.to_ascii_lowercase();
    let class = if err.is_timeout() {
        "timeout"
    } else if lower.contains("dns:")
        || lower.contains("failed to lookup")
        || lower.contains("resolve") && !lower.contains("private")
    {
        "dns"
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
        "tls"
    } else if err.is_body() || err.is_decode() {
        "body"
    } else {
        "connect"
    };
    (class, chain)
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(Duration::from_millis(delta.num_milliseconds().max(0) as u64))
}

/// IP-literal URLs never reach the resolver: they are checked here.
pub fn check_literal(url: &url::Url, allow_private: bool) -> Result<(), String> {
    let ip: Option<IpAddr> = match url.host() {
        Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
        _ => None,
    };
    if !allow_private && ip.is_some_and(|ip| !is_public_ip(ip)) {
        return Err("refused: the URL points at a private address".into());
    }
    Ok(())
}

/// At most this many response headers are kept, each value at most [`HEADER_VALUE_MAX`] bytes.
pub const HEADERS_MAX: usize = 64;
pub const HEADER_VALUE_MAX: usize = 1024;
/// Error texts are kept to this many bytes.
pub const ERROR_MAX: usize = 2048;

/// POSTs `body` with `headers`, within `timeout`, keeping a body excerpt.
pub async fn post(
    client: &reqwest::Client,
    url: &url::Url,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
    timeout: Duration,
    allow_private: bool,
) -> Response {
    let start = Instant::now();
    let fail = |class: &'static str, error: String, latency: Duration| Response {
        status: None,
        headers: Default::default(),
        body: None,
        retry_after: None,
        error_class: Some(class),
        error: Some(error),
        latency,
    };
    if let Err(refused) = check_literal(url, allow_private) {
        return fail("connect", refused, start.elapsed());
    }
    let work = async {
        let mut resp = client.post(url.clone()).headers(headers).body(body).send().await?;
        let status = resp.status().as_u16();
        let mut hmap = serde_json::Map::new();
        // What a receiver answers is stored: no NUL, and bounded.
        for (k, v) in resp.headers().iter().take(HEADERS_MAX) {
            hmap.insert(
                k.as_str().to_owned(),
                serde_json::Value::String(sanitise(&String::from_utf8_lossy(v.as_bytes()), HEADER_VALUE_MAX)),
            );
        }
        let ra = retry_after(resp.headers());
        let mut excerpt = Vec::new();
        while excerpt.len() < BODY_EXCERPT {
            match resp.chunk().await {
                Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk[..chunk.len().min(BODY_EXCERPT - excerpt.len())]),
                Ok(None) => break,
                // The status already arrived; a broken body does not change the outcome.
                Err(_) => break,
            }
        }
        Ok::<_, reqwest::Error>((status, hmap, ra, excerpt))
    };
    match tokio::time::timeout(timeout, work).await {
        Err(_) => fail("timeout", format!("no complete answer within {} s", timeout.as_secs()), start.elapsed()),
        Ok(Err(e)) => {
            let (class, msg) = classify(&e);
            fail(class, sanitise(&msg, ERROR_MAX), start.elapsed())
        }
        Ok(Ok((status, headers, ra, excerpt))) => {
            let ok = (200..300).contains(&status);
            Response {
                status: Some(status),
                headers,
                body: Some(sanitise(&String::from_utf8_lossy(&excerpt), BODY_EXCERPT)),
                retry_after: ra,
                error_class: if ok { None } else { Some("http_status") },
                error: if ok { None } else { Some(format!("the endpoint answered {status}")) },
                latency: start.elapsed(),
            }
        }
    }
}
