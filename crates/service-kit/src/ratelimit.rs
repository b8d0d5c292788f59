//! Rate limiting with GCRA (the generic cell rate algorithm).
//!
//! A policy "L requests per period P" lets a client spend up to L requests at
//! once and then refills at one per P/L: unlike a fixed window it never lets
//! 2L through across a window edge. State is one timestamp per key (the
//! theoretical arrival time, TAT), kept in Redis and updated by one Lua script
//! that checks every policy of a request (the key's, and the organisation's
//! when it has one) and commits all or none, in one round trip, with Redis's
//! own clock so every instance agrees.
//!
//! When Redis is unreachable the limiter falls back to the same arithmetic in
//! process memory (or refuses, with `HOOKLINE_RATE_LIMIT_FAIL_CLOSED`), shows
//! it in `/ready` and a gauge, and returns to Redis by itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::header::{HeaderName, HeaderValue};

use crate::metrics::{RATE_LIMITER_FALLBACK, RATE_LIMIT_HITS};
use crate::redis_conn::RedisConn;

/// One limit to enforce.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Short name shown in `RateLimit-Policy` (`key`, `org`).
    pub name: &'static str,
    /// Storage key suffix, e.g. `rl:key:<uuid>`.
    pub bucket: String,
    pub limit: u64,
    pub period: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyState {
    pub name: &'static str,
    pub limit: u64,
    pub period_secs: u64,
    pub remaining: u64,
    /// Seconds until the bucket is full again.
    pub reset_after_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Seconds to wait before the next request can pass (0 when allowed).
    pub retry_after_secs: u64,
    pub policies: Vec<PolicyState>,
    /// Unix seconds now, for `X-RateLimit-Reset`.
    pub now_unix: u64,
}

impl Decision {
    /// The tightest policy: least remaining, then latest reset.
    pub fn tightest(&self) -> Option<&PolicyState> {
        self.policies.iter().min_by_key(|p| (p.remaining, std::cmp::Reverse(p.reset_after_secs)))
    }

    /// `X-RateLimit-*` (the GitHub convention, for the tightest policy) and
    /// the IETF draft's `RateLimit-Policy` / `RateLimit` (every policy).
    pub fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::new();
        let Some(t) = self.tightest() else { return out };
        let hv = |s: String| HeaderValue::from_str(&s).expect("ASCII header value");
        out.push((HeaderName::from_static("x-ratelimit-limit"), hv(t.limit.to_string())));
        out.push((HeaderName::from_static("x-ratelimit-remaining"), hv(t.remaining.to_string())));
        out.push((HeaderName::from_static("x-ratelimit-reset"), hv((self.now_unix + t.reset_after_secs).to_string())));
        let policy = self
            .policies
            .iter()
            .map(|p| format!("\"{}\";q={};w={}", p.name, p.limit, p.period_secs))
            .collect::<Vec<_>>()
            .join(", ");
        let state = self
            .policies
            .iter()
            .map(|p| format!("\"{}\";r={};t={}", p.name, p.remaining, p.reset_after_secs))
            .collect::<Vec<_>>()
            .join(", ");
        out.push((HeaderName::from_static("ratelimit-policy"), hv(policy)));
        out.push((HeaderName::from_static("ratelimit"), hv(state)));
        if !self.allowed {
            out.push((actix_web::http::header::RETRY_AFTER, hv(self.retry_after_secs.max(1).to_string())));
        }
        out
    }
}

/// KEYS: one bucket per policy. ARGV: limit_1, period_ms_1, limit_2, …
/// Returns: {allowed, retry_after_ms, now_ms, remaining_1, reset_ms_1, …}.
const GCRA_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = #KEYS
local new_tats = {}
local allowed = 1
local retry_after = 0
for i = 1, n do
  local limit = tonumber(ARGV[2 * i - 1])
  local period = tonumber(ARGV[2 * i])
  local interval = period / limit
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - period
  if allow_at > now then
    allowed = 0
    if allow_at - now > retry_after then retry_after = allow_at - now end
    new_tats[i] = tat
  else
    new_tats[i] = new_tat
  end
end
local out = {allowed, math.ceil(retry_after), now}
for i = 1, n do
  local limit = tonumber(ARGV[2 * i - 1])
  local period = tonumber(ARGV[2 * i])
  local interval = period / limit
  local tat = new_tats[i]
  if allowed == 1 then
    redis.call('SET', KEYS[i], string.format('%.3f', tat), 'PX', math.max(1, math.ceil(tat - now)))
  end
  local remaining = math.floor((now + period - tat) / interval)
  if remaining < 0 then remaining = 0 end
  out[#out + 1] = remaining
  out[#out + 1] = math.ceil(tat - now)
end
return out
"#;

pub struct RateLimiter {
    redis: Option<RedisConn>,
    script: redis::Script,
    fail_closed: bool,
    local: Mutex<HashMap<String, f64>>,
    degraded: AtomicBool,
}

#[derive(Debug, thiserror::Error)]
#[error("rate limiting is unavailable (Redis unreachable and HOOKLINE_RATE_LIMIT_FAIL_CLOSED is set)")]
pub struct LimiterUnavailable;

impl RateLimiter {
    pub fn new(redis: Option<RedisConn>, fail_closed: bool) -> Self {
        Self {
            redis,
            script: redis::Script::new(GCRA_LUA),
            fail_closed,
            local: Mutex::new(HashMap::new()),
            degraded: AtomicBool::new(false),
        }
    }

    /// True while decisions are made in process memory.
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    pub async fn check(&self, policies: &[Policy]) -> Result<Decision, LimiterUnavailable> {
        if let Some(redis) = &self.redis {
            match self.check_redis(redis, policies).await {
                Ok(d) => {
                    if self.degraded.swap(false, Ordering::Relaxed) {
                        tracing::info!("Redis is reachable again; rate limits are shared once more");
                        RATE_LIMITER_FALLBACK.set(0);
                    }
                    return Ok(self.count(d));
                }
                Err(e) => {
                    if !self.degraded.swap(true, Ordering::Relaxed) {
                        tracing::warn!(error = %e, "Redis unreachable; rate limiting per process until it returns");
                        RATE_LIMITER_FALLBACK.set(1);
                    }
                    if self.fail_closed {
                        return Err(LimiterUnavailable);
                    }
                }
            }
        }
        Ok(self.count(self.check_local(policies)))
    }

    fn count(&self, d: Decision) -> Decision {
        if !d.allowed {
            if let Some(t) = d.policies.iter().find(|p| p.remaining == 0) {
                RATE_LIMIT_HITS.with_label_values(&[t.name]).inc();
            }
        }
        d
    }

    async fn check_redis(&self, redis: &RedisConn, policies: &[Policy]) -> redis::RedisResult<Decision> {
        let mut inv = self.script.prepare_invoke();
        for p in policies {
            inv.key(redis.key(&p.bucket));
            inv.arg(p.limit).arg(p.period.as_millis() as u64);
        }
        let mut conn = redis.manager.clone();
        let out: Vec<i64> = inv.invoke_async(&mut conn).await?;
        let now_ms = out[2] as u64;
        let states = policies
            .iter()
            .enumerate()
            .map(|(i, p)| PolicyState {
                name: p.name,
                limit: p.limit,
                period_secs: p.period.as_secs(),
                remaining: out[3 + 2 * i].max(0) as u64,
                reset_after_secs: (out[4 + 2 * i].max(0) as u64).div_ceil(1000),
            })
            .collect();
        Ok(Decision {
            allowed: out[0] == 1,
            retry_after_secs: (out[1].max(0) as u64).div_ceil(1000),
            policies: states,
            now_unix: now_ms / 1000,
        })
    }

    fn check_local(&self, policies: &[Policy]) -> Decision {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64() * 1000.0;
        let mut map = self.local.lock().expect("limiter lock");
        if map.len() > 100_000 {
            map.retain(|_, tat| *tat > now);
        }
        let mut allowed = true;
        let mut retry_after: f64 = 0.0;
        let mut tats = Vec::with_capacity(policies.len());
        for p in policies {
            let period = p.period.as_millis() as f64;
            let interval = period / p.limit as f64;
            let tat = map.get(&p.bucket).copied().unwrap_or(now).max(now);
            let new_tat = tat + interval;
            let allow_at = new_tat - period;
            if allow_at > now {
                allowed = false;
                retry_after = retry_after.max(allow_at - now);
                tats.push((tat, new_tat));
            } else {
                tats.push((new_tat, new_tat));
            }
        }
        let mut states = Vec::with_capacity(policies.len());
        for (p, (tat, new_tat)) in policies.iter().zip(tats) {
            let period = p.period.as_millis() as f64;
            let interval = period / p.limit as f64;
            let kept = if allowed { new_tat } else { tat };
            if allowed {
                map.insert(p.bucket.clone(), kept);
            }
            states.push(PolicyState {
                name: p.name,
                limit: p.limit,
                period_secs: p.period.as_secs(),
                remaining: ((now + period - kept) / interval).floor().max(0.0) as u64,
                reset_after_secs: ((kept - now).max(0.0) / 1000.0).ceil() as u64,
            });
        }
        Decision {
            allowed,
            retry_after_secs: (retry_after / 1000.0).ceil() as u64,
            policies: states,
            now_unix: (now / 1000.0) as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(limit: u64) -> Policy {
        Policy { name: "key", bucket: format!("t:{}", uuid::Uuid::now_v7()), limit, period: Duration::from_secs(3600) }
    }

    #[test]
    fn local_limiter_allows_exactly_the_limit_then_refuses() {
        let rl = RateLimiter::new(None, false);
        let p = policy(5);
        for i in 0..5 {
            let d = rl.check_local(std::slice::from_ref(&p));
            assert!(d.allowed, "request {i}");
            assert_eq!(d.policies[0].remaining, 4 - i);
        }
        let d = rl.check_local(std::slice::from_ref(&p));
        assert!(!d.allowed);
        assert!(d.retry_after_secs > 0 && d.retry_after_secs <= 720, "{}", d.retry_after_secs);
    }

    #[test]
    fn all_policies_must_pass_and_a_refusal_spends_nothing() {
        let rl = RateLimiter::new(None, false);
        let wide = policy(100);
        let narrow = policy(1);
        assert!(rl.check_local(&[wide.clone(), narrow.clone()]).allowed);
        let d = rl.check_local(&[wide.clone(), narrow]);
        assert!(!d.allowed);
        // The refused request did not spend from the wide bucket.
        assert_eq!(rl.check_local(std::slice::from_ref(&wide)).policies[0].remaining, 98);
    }

    #[test]
    fn headers_follow_both_conventions() {
        let d = Decision {
            allowed: false,
            retry_after_secs: 3,
            now_unix: 1_000,
            policies: vec![PolicyState {
                name: "key",
                limit: 10,
                period_secs: 3600,
                remaining: 0,
                reset_after_secs: 360,
            }],
        };
        let h: HashMap<_, _> =
            d.headers().into_iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned())).collect();
        assert_eq!(h["x-ratelimit-limit"], "10");
        assert_eq!(h["x-ratelimit-remaining"], "0");
        assert_eq!(h["x-ratelimit-reset"], "1360");
        assert_eq!(h["ratelimit-policy"], "\"key\";q=10;w=3600");
        assert_eq!(h["ratelimit"], "\"key\";r=0;t=360");
        assert_eq!(h["retry-after"], "3");
    }
}
