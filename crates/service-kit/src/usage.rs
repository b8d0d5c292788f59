//! Per-key usage counters: requests and rate-limited requests per hour, plus
//! `last_used_at`, accumulated in memory and flushed to Postgres every few
//! seconds, so authentication costs no database write.

use anyhow::Context as _;
use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use hookline_domain::id::{KeyId, OrgId};
use hookline_store::db::PgPool;
use hookline_store::keys::UsageIncrement;

#[derive(Default)]
struct Pending {
    counts: HashMap<(KeyId, OrgId, DateTime<Utc>), (i64, i64)>,
    last_used: HashMap<KeyId, DateTime<Utc>>,
}

#[derive(Default)]
pub struct UsageRecorder {
    pending: Mutex<Pending>,
}

impl UsageRecorder {
    pub fn record(&self, key: KeyId, org: OrgId, rate_limited: bool) {
        let now = Utc::now();
        let hour = now.duration_trunc(TimeDelta::hours(1)).unwrap_or(now);
        let mut p = self.pending.lock().expect("usage lock");
        let c = p.counts.entry((key, org, hour)).or_default();
        c.0 += 1;
        if rate_limited {
            c.1 += 1;
        }
        // To the minute is enough for last_used_at.
        let minute = now.duration_trunc(TimeDelta::minutes(1)).unwrap_or(now);
        p.last_used.insert(key, minute);
    }

    /// Writes what has accumulated. On failure the counts are kept for the next flush.
    pub async fn flush(&self, pool: &PgPool) -> anyhow::Result<()> {
        let taken = std::mem::take(&mut *self.pending.lock().expect("usage lock"));
        if taken.counts.is_empty() && taken.last_used.is_empty() {
            return Ok(());
        }
        let rows: Vec<UsageIncrement> = taken
            .counts
            .iter()
            .map(|((k, o, h), (r, l))| UsageIncrement {
                key_id: k.as_uuid(),
                org_id: o.as_uuid(),
                hour: *h,
                requests: *r,
                rate_limited: *l,
            })
            .collect();
        let seen: Vec<_> = taken.last_used.iter().map(|(k, t)| (k.as_uuid(), *t)).collect();
        let result = async {
            let mut conn = pool.get().await.context("database pool")?;
            hookline_store::keys::add_usage(&mut conn, &rows).await?;
            hookline_store::keys::touch_last_used(&mut conn, &seen).await?;
            Ok::<_, anyhow::Error>(())
        }
        .await;
        if result.is_err() {
            let mut p = self.pending.lock().expect("usage lock");
            for (k, v) in taken.counts {
                let c = p.counts.entry(k).or_default();
                c.0 += v.0;
                c.1 += v.1;
            }
            for (k, t) in taken.last_used {
                p.last_used.entry(k).or_insert(t);
            }
        }
        result
    }
}

impl crate::flushing::Flush for UsageRecorder {
    const WHAT: &'static str = "API key usage";

    fn flush(&self, pool: &PgPool) -> impl std::future::Future<Output = anyhow::Result<()>> + Send {
        UsageRecorder::flush(self, pool)
    }
}
