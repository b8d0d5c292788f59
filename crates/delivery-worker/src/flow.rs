//! Flow control per endpoint across the whole worker fleet, in Redis.
//!
//! * `rate_limit_per_second` is one budget shared by every worker (GCRA,
//!   strictly spaced), not one per process.
//! * The allowed rate adapts (AIMD): a 429 or 503 halves it and pauses the
//!   endpoint for its `Retry-After`; latency far past the endpoint's baseline
//!   halves it too; while the endpoint is healthy it rises by a tenth of its
//!   ceiling a second, and the state is dropped once it is back there.
//!
//! A delivery held back is parked (delayed), never counted as an attempt.
//! Endpoints with no limit and no adaptive state cost one Redis call a
//! second per worker, not one per delivery. Without Redis, the configured
//! limit holds per process and nothing adapts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hookline_service_kit::flow::flow_key;
use hookline_service_kit::redis_conn::RedisConn;
use uuid::Uuid;

/// How long a worker trusts that an endpoint has no adaptive state.
const STATE_TTL: Duration = Duration::from_secs(1);
/// The longest pause a `Retry-After` can impose.
const MAX_PAUSE_MS: u64 = 60_000;
/// Latency this many times the endpoint's baseline (and above `SLOW_FLOOR_MS`) counts as overload.
const SLOW_FACTOR: f64 = 4.0;
const SLOW_FLOOR_MS: f64 = 500.0;

/// Whether to send now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Go,
    Wait(Duration),
}

/// The checks before a send: pause, then the spacing of the effective rate
/// (the configured limit or the adaptive rate, whichever is lower).
/// Returns {wait_ms, has_adaptive_state}.
const GATE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local configured = tonumber(ARGV[1])
local flow = redis.call('HMGET', KEYS[2], 'rate', 'until')
local adaptive = tonumber(flow[1])
local paused = tonumber(flow[2])
local has = adaptive and 1 or 0
if paused and paused > now then return {paused - now, has} end
local rate = configured
if adaptive and (rate == 0 or adaptive < rate) then rate = adaptive end
if rate <= 0 then return {0, has} end
local interval = 1000 / rate
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
if tat > now then return {math.ceil(tat - now), has} end
redis.call('SET', KEYS[1], tostring(now + interval), 'PX', math.ceil(interval) + 1000)
return {0, has}
"#;

/// ARGV: kind (down|up), configured rate (0: none), the rate observed
/// before throttling, pause in ms. Down halves the rate (from the adaptive
/// one, else the ceiling: the configured rate, else the observed one) at
/// most twice a second, and sets the pause; up adds a tenth of the ceiling
/// at most once a second and forgets the state at the ceiling.
const SIGNAL: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local configured = tonumber(ARGV[2])
local observed = tonumber(ARGV[3])
local pause = tonumber(ARGV[4])
local flow = redis.call('HMGET', KEYS[1], 'rate', 'ceiling', 'changed')
local rate = tonumber(flow[1])
local ceiling = tonumber(flow[2])
local changed = tonumber(flow[3]) or 0
if ARGV[1] == 'down' then
  if not ceiling then
    if configured > 0 then ceiling = configured else ceiling = math.max(observed, 2) end
  end
  if not rate then rate = ceiling end
  if now - changed >= 500 then rate = math.max(1, rate / 2) end
  redis.call('HSET', KEYS[1], 'rate', tostring(rate), 'ceiling', tostring(ceiling), 'changed', now)
  if pause > 0 then redis.call('HSET', KEYS[1], 'until', now + pause) end
  redis.call('PEXPIRE', KEYS[1], 600000)
  return 1
end
if not rate then return 0 end
if now - changed < 1000 then return 0 end
rate = rate + math.max(1, ceiling / 10)
if rate >= ceiling then redis.call('DEL', KEYS[1]) return 2 end
redis.call('HSET', KEYS[1], 'rate', tostring(rate), 'changed', now)
redis.call('PEXPIRE', KEYS[1], 600000)
return 1
"#;

#[derive(Default)]
struct Local {
    /// When an endpoint was last seen without adaptive state.
    calm: HashMap<Uuid, Instant>,
    /// Sends per endpoint in the current second, and the last full second's rate.
    sent: HashMap<Uuid, (Instant, u32, f64)>,
}

pub struct Flow {
    redis: RedisConn,
    gate: redis::Script,
    signal: redis::Script,
    local: Mutex<Local>,
}

impl Flow {
    pub fn new(redis: RedisConn) -> Self {
        Self { redis, gate: redis::Script::new(GATE), signal: redis::Script::new(SIGNAL), local: Mutex::default() }
    }

    fn tat_key(&self, endpoint: Uuid) -> String {
        self.redis.key(&format!("flow:{}:tat", endpoint.simple()))
    }

    fn calm(&self, endpoint: Uuid) -> bool {
        let local = self.local.lock().expect("flow lock");
        local.calm.get(&endpoint).is_some_and(|t| t.elapsed() < STATE_TTL)
    }

    /// Whether a send to `endpoint` may go now. `Err` when Redis could not be asked.
    pub async fn gate(&self, endpoint: Uuid, configured: Option<i32>) -> redis::RedisResult<Gate> {
        if configured.is_none() && self.calm(endpoint) {
            self.count(endpoint);
            return Ok(Gate::Go);
        }
        let mut inv = self.gate.prepare_invoke();
        inv.key(self.tat_key(endpoint)).key(flow_key(&self.redis, endpoint)).arg(configured.unwrap_or(0).max(0));
        let mut conn = self.redis.manager.clone();
        let (wait_ms, has): (i64, i64) = inv.invoke_async(&mut conn).await?;
        {
            let mut local = self.local.lock().expect("flow lock");
            if has == 0 {
                if local.calm.len() > 50_000 {
                    local.calm.clear();
                }
                local.calm.insert(endpoint, Instant::now());
            } else {
                local.calm.remove(&endpoint);
            }
        }
        if wait_ms > 0 {
            return Ok(Gate::Wait(Duration::from_millis(wait_ms as u64)));
        }
        self.count(endpoint);
        Ok(Gate::Go)
    }

    fn count(&self, endpoint: Uuid) {
        let mut local = self.local.lock().expect("flow lock");
        if local.sent.len() > 50_000 {
            local.sent.clear();
        }
        let e = local.sent.entry(endpoint).or_insert((Instant::now(), 0, 0.0));
        let elapsed = e.0.elapsed();
        if elapsed >= Duration::from_secs(1) {
            let rate = f64::from(e.1) / elapsed.as_secs_f64();
            *e = (Instant::now(), 0, rate);
        }
        e.1 += 1;
    }

    /// This worker's recent send rate to the endpoint, for the first throttle.
    fn observed(&self, endpoint: Uuid) -> f64 {
        let local = self.local.lock().expect("flow lock");
        local.sent.get(&endpoint).map(|(_, n, last)| last.max(f64::from(*n))).unwrap_or(1.0)
    }

    /// Adapts the endpoint's rate to what its answer says.
    pub async fn observe(
        &self,
        endpoint: Uuid,
        configured: Option<i32>,
        status: Option<u16>,
        retry_after: Option<Duration>,
        latency: Duration,
        baseline_ms: Option<f64>,
    ) -> redis::RedisResult<()> {
        let ms = latency.as_secs_f64() * 1000.0;
        let slow = baseline_ms.is_some_and(|b| ms > SLOW_FLOOR_MS && ms > b * SLOW_FACTOR);
        let overloaded = matches!(status, Some(429 | 503));
        let kind = if overloaded || slow {
            "down"
        } else if status.is_some_and(|s| (200..300).contains(&s)) && !self.calm(endpoint) {
            "up"
        } else {
            // Nothing to raise on an endpoint this worker saw calm a moment ago.
            return Ok(());
        };
        let pause =
            if overloaded { retry_after.map(|d| (d.as_millis() as u64).min(MAX_PAUSE_MS)).unwrap_or(0) } else { 0 };
        let mut inv = self.signal.prepare_invoke();
        inv.key(flow_key(&self.redis, endpoint))
            .arg(kind)
            .arg(configured.unwrap_or(0).max(0))
            .arg(self.observed(endpoint))
            .arg(pause);
        let mut conn = self.redis.manager.clone();
        let _: i64 = inv.invoke_async(&mut conn).await?;
        if kind == "down" {
            self.local.lock().expect("flow lock").calm.remove(&endpoint);
        }
        Ok(())
    }
}
