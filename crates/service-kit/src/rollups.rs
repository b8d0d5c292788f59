//! Analytics rollups accumulated in memory and flushed to Postgres every few
//! seconds, so neither ingest nor delivery contends on a hot counter row.

use anyhow::Context as _;
use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use hookline_store::db::PgPool;
use hookline_store::rollups::{bucket_of, DeliveryIncrement, EventIncrement, BUCKETS};
use uuid::Uuid;

#[derive(Default, Clone)]
struct D {
    attempts: i64,
    succeeded: i64,
    failed: i64,
    delivered: i64,
    dead_lettered: i64,
    buckets: Vec<i64>,
    latency_ms_total: i64,
}

#[derive(Default)]
struct Pending {
    deliveries: HashMap<(Uuid, DateTime<Utc>, Uuid, String), D>,
    events: HashMap<(Uuid, DateTime<Utc>, String), (i64, i64)>,
}

#[derive(Default)]
pub struct Rollups {
    pending: Mutex<Pending>,
}

fn hour() -> DateTime<Utc> {
    let now = Utc::now();
    now.duration_trunc(TimeDelta::hours(1)).unwrap_or(now)
}

/// How an attempt left its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Delivered,
    DeadLettered,
    Retrying,
}

impl Rollups {
    /// New counters, flushed to Postgres every `every` until `cancel` fires.
    pub fn spawn(
        pool: PgPool,
        every: std::time::Duration,
        cancel: tokio_util::sync::CancellationToken,
    ) -> std::sync::Arc<Self> {
        let rollups = std::sync::Arc::new(Self::default());
        crate::flushing::spawn_flusher(rollups.clone(), pool, every, cancel);
        rollups
    }

    pub fn attempt(
        &self,
        org: Uuid,
        endpoint: Uuid,
        event_type: &str,
        succeeded: bool,
        latency_ms: u64,
        settled: Settled,
    ) {
        let mut p = self.pending.lock().expect("rollups lock");
        let d = p.deliveries.entry((org, hour(), endpoint, event_type.to_owned())).or_default();
        if d.buckets.is_empty() {
            d.buckets = vec![0; BUCKETS];
        }
        d.attempts += 1;
        if succeeded {
            d.succeeded += 1;
        } else {
            d.failed += 1;
        }
        match settled {
            Settled::Delivered => d.delivered += 1,
            Settled::DeadLettered => d.dead_lettered += 1,
            Settled::Retrying => {}
        }
        d.buckets[bucket_of(latency_ms)] += 1;
        d.latency_ms_total += i64::try_from(latency_ms).unwrap_or(i64::MAX);
    }

    pub fn event(&self, org: Uuid, event_type: &str, deliveries: i64) {
        let mut p = self.pending.lock().expect("rollups lock");
        let e = p.events.entry((org, hour(), event_type.to_owned())).or_default();
        e.0 += 1;
        e.1 += deliveries;
    }

    /// Writes what has accumulated; on failure it is kept for the next flush.
    pub async fn flush(&self, pool: &PgPool) -> anyhow::Result<()> {
        let taken = std::mem::take(&mut *self.pending.lock().expect("rollups lock"));
        if taken.deliveries.is_empty() && taken.events.is_empty() {
            return Ok(());
        }
        let drows: Vec<DeliveryIncrement> = taken
            .deliveries
            .iter()
            .map(|((org, h, ep, t), d)| DeliveryIncrement {
                org_id: *org,
                hour: *h,
                endpoint_id: *ep,
                event_type: t.clone(),
                attempts: d.attempts,
                succeeded: d.succeeded,
                failed: d.failed,
                delivered: d.delivered,
                dead_lettered: d.dead_lettered,
                latency_buckets: d.buckets.clone(),
                latency_ms_total: d.latency_ms_total,
            })
            .collect();
        let erows: Vec<EventIncrement> = taken
            .events
            .iter()
            .map(|((org, h, t), (n, d))| EventIncrement {
                org_id: *org,
                hour: *h,
                event_type: t.clone(),
                events: *n,
                deliveries: *d,
            })
            .collect();
        let result = async {
            let mut conn = pool.get().await.context("database pool")?;
            hookline_store::rollups::add_deliveries(&mut conn, &drows).await?;
            hookline_store::rollups::add_events(&mut conn, &erows).await?;
            Ok::<_, anyhow::Error>(())
        }
        .await;
        if result.is_err() {
            let mut p = self.pending.lock().expect("rollups lock");
            for (k, v) in taken.deliveries {
                let d = p.deliveries.entry(k).or_default();
                if d.buckets.is_empty() {
                    d.buckets = vec![0; BUCKETS];
                }
                d.attempts += v.attempts;
                d.succeeded += v.succeeded;
                d.failed += v.failed;
                d.delivered += v.delivered;
                d.dead_lettered += v.dead_lettered;
                for (a, b) in d.buckets.iter_mut().zip(v.buckets) {
                    *a += b;
                }
            }
            for (k, (n, d)) in taken.events {
                let e = p.events.entry(k).or_default();
                e.0 += n;
                e.1 += d;
            }
        }
        result
    }
}

impl crate::flushing::Flush for Rollups {
    const WHAT: &'static str = "analytics rollups";

    fn flush(&self, pool: &PgPool) -> impl std::future::Future<Output = anyhow::Result<()>> + Send {
        Rollups::flush(self, pool)
    }
}
