//! API key authentication for both APIs.
//!
//! A key is checked for syntax and checksum first (no I/O), then looked up
//! by its keyed hash in an in-process cache in front of Postgres. Any change
//! to a key (revoke, rotate, update) is broadcast on a Redis channel and
//! every instance of every service drops its cache at once; while an
//! instance is not subscribed (Redis down) it bypasses its cache, so a
//! revoked key never outlives the revocation by more than a round trip.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use chrono::{DateTime, Utc};
use hookline_domain::api_key::{ApiKey, KeyHash, KeyPepper};
use hookline_domain::id::{KeyId, OrgId};
use hookline_domain::scope::{Role, Scope};
use hookline_store::db::PgPool;
use ipnet::IpNet;

use crate::caches::{Caches, Topic};
use crate::deps::Connections;
use crate::error::ApiError;
use crate::metrics::AUTH_CACHE;
use crate::ratelimit::{Decision, Policy, RateLimiter};
use crate::usage::UsageRecorder;

/// Who is calling: a verified, unexpired, unrevoked key.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key_id: KeyId,
    pub org_id: OrgId,
    pub role: Role,
    pub scopes: BTreeSet<Scope>,
    pub rate_limit_per_hour: u32,
    /// The organisation's event quota (per minute), when the operator set one.
    pub org_events_per_minute: Option<u32>,
    /// Whether the organisation accepts only registered event types.
    pub org_strict_event_types: bool,
    /// The key's own expiry and address allowlist: what it may give on.
    pub expires_at: Option<DateTime<Utc>>,
    pub allowed_ips: Vec<IpNet>,
    pub client_ip: Option<IpAddr>,
}

impl Principal {
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiError::insufficient_scope(scope.as_str()))
        }
    }
}

#[derive(Debug, Clone)]
pub struct CachedKey {
    key_id: KeyId,
    org_id: OrgId,
    role: Role,
    scopes: BTreeSet<Scope>,
    rate_limit_per_hour: u32,
    org_events_per_minute: Option<u32>,
    org_strict_event_types: bool,
    allowed_ips: Vec<IpNet>,
    expires_at: Option<DateTime<Utc>>,
    revoked: bool,
    /// Set when the presented secret is the one a rotation replaced.
    previous_valid_until: Option<DateTime<Utc>>,
}

impl CachedKey {
    pub(crate) fn org_uuid(&self) -> uuid::Uuid {
        self.org_id.as_uuid()
    }
}

/// How long an address past `HOOKLINE_AUTH_FAILURES_PER_MINUTE` is refused
/// without a look-up.
pub const BLOCK_SECS: u64 = 60;
/// How long a well-formed key that matched nothing is answered from memory.
const UNKNOWN_TTL: Duration = Duration::from_secs(10);

pub struct Authenticator {
    pool: PgPool,
    pepper: KeyPepper,
    caches: Arc<Caches>,
    limiter: Arc<RateLimiter>,
    failures_per_minute: u64,
    /// Hashes that matched no key: forged keys cost one database look-up each per TTL.
    unknown: moka::sync::Cache<KeyHash, ()>,
    /// Addresses past their failure budget.
    blocked: moka::sync::Cache<IpAddr, ()>,
}

impl Authenticator {
    pub fn new(
        pool: PgPool,
        pepper: KeyPepper,
        caches: Arc<Caches>,
        limiter: Arc<RateLimiter>,
        failures_per_minute: u64,
    ) -> Self {
        Self {
            pool,
            pepper,
            caches,
            limiter,
            failures_per_minute,
            unknown: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(UNKNOWN_TTL).build(),
            blocked: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(BLOCK_SECS))
                .build(),
        }
    }

    /// Checks a presented key; every failure counts against the client
    /// address, and an address past its budget of failures is refused
    /// (429) before any look-up.
    pub async fn authenticate(&self, raw: &str, client_ip: Option<IpAddr>) -> Result<Principal, ApiError> {
        if client_ip.is_some_and(|ip| self.blocked.contains_key(&ip)) {
            return Err(too_many_failures());
        }
        let result = self.check(raw, client_ip).await;
        if let (Err(e), Some(ip)) = (&result, client_ip) {
            if e.status == actix_web::http::StatusCode::UNAUTHORIZED {
                let policy = Policy {
                    name: "auth_failures",
                    bucket: format!("rl:authfail:{ip}"),
                    limit: self.failures_per_minute,
                    period: Duration::from_secs(60),
                };
                if self.limiter.check(std::slice::from_ref(&policy)).await.is_ok_and(|d| !d.allowed) {
                    self.blocked.insert(ip, ());
                    return Err(too_many_failures());
                }
            }
        }
        result
    }

    pub fn pepper(&self) -> &KeyPepper {
        &self.pepper
    }

    /// Drops the organisation's cached keys here and on every other instance.
    pub async fn invalidate(&self, org: uuid::Uuid) {
        self.caches.invalidate(Topic::Keys(org)).await;
    }

    /// Whether the key cache may be trusted (we would hear about changes).
    pub fn cache_active(&self) -> bool {
        self.caches.active()
    }

    async fn check(&self, raw: &str, client_ip: Option<IpAddr>) -> Result<Principal, ApiError> {
        let key = ApiKey::parse(raw).map_err(|e| ApiError::unauthorized(format!("malformed API key: {e}")))?;
        let hash = key.hash(&self.pepper);
        if self.unknown.contains_key(&hash) {
            return Err(ApiError::unauthorized("unknown API key"));
        }
        let cached = if self.cache_active() { self.caches.keys.get(&hash) } else { None };
        let entry = match cached {
            Some(e) => {
                AUTH_CACHE.with_label_values(&["hit"]).inc();
                e
            }
            None => {
                AUTH_CACHE.with_label_values(&["miss"]).inc();
                let Some(e) = self.load(&hash).await? else {
                    self.unknown.insert(hash, ());
                    return Err(ApiError::unauthorized("unknown API key"));
                };
                let e = Arc::new(e);
                if self.cache_active() {
                    self.caches.keys.insert(hash, Arc::clone(&e));
                }
                e
            }
        };
        let now = Utc::now();
        if entry.revoked {
            return Err(ApiError::unauthorized("this API key has been revoked"));
        }
        if entry.expires_at.is_some_and(|t| t <= now) {
            return Err(ApiError::unauthorized("this API key has expired"));
        }
        if entry.previous_valid_until.is_some_and(|t| t <= now) {
            return Err(ApiError::unauthorized("this API key's secret was rotated and its grace period is over"));
        }
        if !ip_allowed(&entry.allowed_ips, client_ip) {
            return Err(ApiError::forbidden("this API key may not be used from this IP address"));
        }
        Ok(Principal {
            key_id: entry.key_id,
            org_id: entry.org_id,
            role: entry.role,
            scopes: entry.scopes.clone(),
            rate_limit_per_hour: entry.rate_limit_per_hour,
            org_events_per_minute: entry.org_events_per_minute,
            org_strict_event_types: entry.org_strict_event_types,
            expires_at: entry.expires_at,
            allowed_ips: entry.allowed_ips.clone(),
            client_ip,
        })
    }

    async fn load(&self, hash: &KeyHash) -> Result<Option<CachedKey>, ApiError> {
        let mut conn = self.pool.get().await.map_err(ApiError::from_pool)?;
        let Some((row, previous)) = hookline_store::keys::find_by_hash(&mut conn, hash.as_bytes()).await? else {
            return Ok(None);
        };
        let role: Role = row.role.parse().map_err(ApiError::internal)?;
        let org = hookline_store::orgs::get(&mut conn, row.org_id).await?;
        let scopes = row.scopes.iter().filter_map(|s| s.parse().ok()).collect();
        let allowed_ips = row.allowed_ips.iter().filter_map(|s| s.parse().ok()).collect();
        Ok(Some(CachedKey {
            key_id: KeyId::from_uuid(row.id),
            org_id: OrgId::from_uuid(row.org_id),
            role,
            scopes,
            rate_limit_per_hour: row.rate_limit_per_hour.max(1) as u32,
            org_events_per_minute: org.as_ref().and_then(|o| o.events_per_minute).map(|n| n.max(1) as u32),
            org_strict_event_types: org.as_ref().is_none_or(|o| o.strict_event_types),
            allowed_ips,
            expires_at: row.expires_at,
            revoked: row.revoked_at.is_some(),
            previous_valid_until: if previous { row.previous_expires_at } else { None },
        }))
    }
}

fn too_many_failures() -> ApiError {
    ApiError::new(actix_web::http::StatusCode::TOO_MANY_REQUESTS, "too_many_failures", "Too many failed attempts")
        .detail(format!("too many failed authentications from this address; retry in {BLOCK_SECS} s"))
        .header(actix_web::http::header::RETRY_AFTER, actix_web::http::header::HeaderValue::from(BLOCK_SECS))
}

/// Whether a key with this allowlist may be used from `ip` (an empty list
/// allows any address; an unknown address passes no list).
pub fn ip_allowed(allowed: &[IpNet], ip: Option<IpAddr>) -> bool {
    allowed.is_empty() || ip.is_some_and(|ip| allowed.iter().any(|net| net.contains(&canonical(ip))))
}

/// IPv4-mapped IPv6 addresses compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The key presented by the request: `Authorization: Bearer …` or `X-API-Key: …`.
pub fn presented_key(req: &HttpRequest) -> Option<String> {
    if let Some(v) = req.headers().get(actix_web::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if let Some(rest) = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")) {
            return Some(rest.trim().to_owned());
        }
    }
    req.headers().get("x-api-key").and_then(|v| v.to_str().ok()).map(|s| s.trim().to_owned())
}

/// The client address. Forwarding headers are read only when the socket
/// peer is one of `HOOKLINE_TRUSTED_PROXIES`; the client is then the
/// right-most address of the chain that is not a trusted proxy (proxies
/// append, so anything left of that was written by the client itself).
///
/// `X-Forwarded-For` and `Forwarded` are both understood. When a request
/// carries both and they name different clients, one of them passed a proxy
/// untouched and may be forged: the trusted peer itself counts as the client,
/// which no tenant's allowlist names.
pub fn client_ip(req: &HttpRequest, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = req.peer_addr().map(|a| canonical(a.ip()))?;
    if !is_trusted(trusted, peer) {
        return Some(peer);
    }
    let xff = header_list(req, "x-forwarded-for").map(|hops| walk(trusted, peer, &hops));
    let fwd = forwarded_for(req).map(|hops| walk(trusted, peer, &hops));
    Some(match (xff, fwd) {
        (Some(a), Some(b)) if a != b => peer,
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => peer,
    })
}

/// Whether the client reached the first proxy over HTTPS: the socket's own
/// scheme, or `X-Forwarded-Proto` / `Forwarded: proto=` from a trusted peer.
pub fn client_https(req: &HttpRequest, trusted: &[IpNet]) -> bool {
    if req.app_config().secure() {
        return true;
    }
    let Some(peer) = req.peer_addr().map(|a| canonical(a.ip())) else { return false };
    if !is_trusted(trusted, peer) {
        return false;
    }
    let forwarded_proto = req.headers().get_all("forwarded").filter_map(|v| v.to_str().ok()).find_map(|v| {
        v.split([',', ';']).find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim().eq_ignore_ascii_case("proto").then(|| v.trim().trim_matches('"').to_ascii_lowercase())
        })
    });
    let proto = forwarded_proto
        .or_else(|| header_list(req, "x-forwarded-proto").and_then(|l| l.first().map(|s| s.to_ascii_lowercase())));
    proto.as_deref() == Some("https")
}

fn is_trusted(trusted: &[IpNet], ip: IpAddr) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// From the peer leftwards along the chain, past trusted proxies.
fn walk(trusted: &[IpNet], peer: IpAddr, hops: &[String]) -> IpAddr {
    let mut current = peer;
    for hop in hops.iter().rev() {
        if !is_trusted(trusted, current) {
            break;
        }
        match parse_hop(hop) {
            Some(ip) => current = ip,
            None => break,
        }
    }
    current
}

/// Every value of a comma-separated header, in order, over all its lines.
fn header_list(req: &HttpRequest, name: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for v in req.headers().get_all(name) {
        out.extend(v.to_str().ok()?.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()));
    }
    (!out.is_empty()).then_some(out)
}

/// The `for=` of each `Forwarded` element, in order.
fn forwarded_for(req: &HttpRequest) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for v in req.headers().get_all("forwarded") {
        for element in v.to_str().ok()?.split(',') {
            let hop = element.split(';').find_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then(|| v.trim().trim_matches('"').to_owned())
            });
            // An element without `for=` still stands for a hop.
            out.push(hop.unwrap_or_default());
        }
    }
    (!out.is_empty()).then_some(out)
}

/// `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1` or `[2001:db8::1]:4711`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(rest) = hop.strip_prefix('[') {
        return rest.split_once(']').and_then(|(ip, _)| ip.parse().ok()).map(canonical);
    }
    hop.rsplit_once(':').and_then(|(ip, _)| ip.parse::<std::net::Ipv4Addr>().ok()).map(IpAddr::V4)
}

/// Route data marking the routes that count against the organisation's event quota.
#[derive(Debug, Clone, Copy)]
pub struct OrgEventQuota;

/// The rate-limit decision for this request, kept for the response headers.
#[derive(Debug, Clone)]
pub struct RateLimitOutcome(pub Decision);

/// Extractor: an authenticated and rate-limited caller.
pub struct Auth(pub Principal);

impl std::ops::Deref for Auth {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.0
    }
}

/// What the [`Auth`] extractor needs, registered as app data by each API:
/// the key checker, the rate limiter, the usage counters (flushed to
/// Postgres in the background) and the proxies whose forwarding headers
/// are believed.
pub struct AuthState {
    pub authenticator: Authenticator,
    pub limiter: Arc<RateLimiter>,
    pub usage: Arc<UsageRecorder>,
    trusted_proxies: Vec<IpNet>,
    pool: PgPool,
}

impl AuthState {
    /// Built once per process; starts the usage flusher.
    pub fn build(c: &Connections) -> Arc<Self> {
        let s = &c.settings;
        let pepper = KeyPepper::new(&c.master_key.derive("hookline api key pepper v1"));
        let limiter = Arc::new(RateLimiter::new(Some(c.redis.clone()), s.rate_limit_fail_closed));
        let authenticator =
            Authenticator::new(c.pool.clone(), pepper, c.caches.clone(), limiter.clone(), s.auth_failures_per_minute);
        let usage = Arc::new(UsageRecorder::default());
        crate::flushing::spawn_flusher(
            usage.clone(),
            c.pool.clone(),
            Duration::from_secs(s.usage_flush_secs),
            c.cancel.clone(),
        );
        Arc::new(Self {
            authenticator,
            limiter,
            usage,
            trusted_proxies: s.trusted_proxies.clone(),
            pool: c.pool.clone(),
        })
    }

    /// The rate-limit policies that apply to a caller: the key's limit, and
    /// on event ingest the organisation's event quota, checked together.
    pub fn policies_for(principal: &Principal, ingest: bool) -> Vec<Policy> {
        let mut p = vec![key_policy(principal)];
        if ingest {
            p.extend(org_event_policy(principal));
        }
        p
    }

    /// Writes the usage counted since the last flush (at shutdown).
    pub async fn flush_usage(&self) {
        if let Err(e) = self.usage.flush(&self.pool).await {
            tracing::warn!(error = format!("{e:#}"), "usage flush failed");
        }
    }
}

impl FromRequest for Auth {
    type Error = ApiError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = req
                .app_data::<web::Data<AuthState>>()
                .ok_or_else(|| ApiError::internal("AuthState missing from app data"))?
                .clone();
            let raw = presented_key(&req).ok_or_else(|| {
                ApiError::unauthorized("send an API key as `Authorization: Bearer sk_live_…` or `X-API-Key`")
            })?;
            let ip = client_ip(&req, &state.trusted_proxies);
            let principal = state.authenticator.authenticate(&raw, ip).await?;
            // Decided by the scope the route requires, never the raw path:
            // routes that publish events count against the quota.
            let ingest =
                req.app_data::<web::Data<OrgEventQuota>>().is_some() && req.method() == actix_web::http::Method::POST;
            let decision = state
                .limiter
                .check(&AuthState::policies_for(&principal, ingest))
                .await
                .map_err(|e| ApiError::unavailable(e.to_string(), 5))?;
            state.usage.record(principal.key_id, principal.org_id, !decision.allowed);
            let headers = decision.headers();
            req.extensions_mut().insert(RateLimitOutcome(decision.clone()));
            if !decision.allowed {
                return Err(ApiError::new(
                    actix_web::http::StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "Too many requests",
                )
                .detail(format!("rate limit exceeded; retry in {} s", decision.retry_after_secs.max(1)))
                .with_headers(headers));
            }
            Ok(Auth(principal))
        })
    }
}

/// Middleware: copies the rate-limit headers onto every authenticated response.
pub async fn rate_limit_headers(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let mut res = next.call(req).await?;
    let outcome = res.request().extensions().get::<RateLimitOutcome>().cloned();
    if let Some(RateLimitOutcome(decision)) = outcome {
        let headers = res.headers_mut();
        for (k, v) in decision.headers() {
            if !headers.contains_key(&k) {
                headers.insert(k, v);
            }
        }
    }
    Ok(res)
}

/// The organisation's event quota, shared by all of its keys.
pub fn org_event_policy(principal: &Principal) -> Option<Policy> {
    principal.org_events_per_minute.map(|n| Policy {
        name: "org",
        bucket: format!("rl:org:{}", principal.org_id.as_uuid().simple()),
        limit: u64::from(n),
        period: Duration::from_secs(60),
    })
}

/// The key's own limit.
pub fn key_policy(principal: &Principal) -> Policy {
    Policy {
        name: "key",
        bucket: format!("rl:key:{}", principal.key_id.as_uuid().simple()),
        limit: u64::from(principal.rate_limit_per_hour),
        period: Duration::from_secs(3600),
    }
}
