//! Hookline's alerting service: consumes delivery outcomes and dead
//! letters, evaluates the failure rules, opens and resolves alerts,
//! disables endpoints that keep failing, notifies (email, Slack-style
//! webhook, and the organisation's own endpoints as operational events),
//! and runs retention.
//!
//! Several instances may run: they share the `outcomes.alerting` queue (each
//! outcome reaches one of them), every failure is recorded in
//! `processed_outcomes` in the same transaction as its effects (so a
//! redelivered message is never counted twice; judging a success again
//! changes nothing), and scheduled work runs
//! under a Postgres advisory lock on one instance at a time.

pub mod maintenance;
pub mod metrics;
pub mod notify;
pub mod rules;
pub mod state;

use std::sync::Arc;
use std::time::Duration;

use hookline_broker::consumer;
use hookline_broker::lapin::message::Delivery;
use hookline_broker::lapin::options::{BasicAckOptions, BasicNackOptions};
use hookline_broker::topology;
use hookline_service_kit::deps::Connections;

use crate::state::AlertingState;
use hookline_service_kit::ops::{serve_ops, Probes};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9102";

/// Shared by the consumers and the scheduler.
pub struct Alerting {
    pub state: Arc<AlertingState>,
    pub notifier: notify::Notifier,
}

/// Unacknowledged messages per consumer, and the most judged together.
const PREFETCH: u16 = 64;
/// How long a batch of alerting messages waits for more after its first.
const LINGER: Duration = Duration::from_millis(50);

impl Alerting {
    pub fn new(state: Arc<AlertingState>) -> anyhow::Result<Arc<Self>> {
        let notifier = notify::Notifier::new(&state.settings)?;
        Ok(Arc::new(Self { state, notifier }))
    }

    /// Consumes `queue` until cancelled, through the broker's consume loop.
    fn spawn_consumer(self: &Arc<Self>, queue: &'static str) -> tokio::task::JoinHandle<()> {
        let options = consumer::Options {
            url: self.state.settings.amqp_url.expose().to_owned(),
            name: "hookline-alerting".into(),
            queue: queue.into(),
            prefetch: PREFETCH,
            // Outcomes are judged and acknowledged together; nobody waits on alerting.
            linger: Some(LINGER),
        };
        let handler = Judge { a: Arc::clone(self), queue };
        tokio::spawn(async move { consumer::consume(&options, &handler.a.state.cancel.clone(), &handler).await })
    }
}

/// Judges what one of alerting's queues brings.
struct Judge {
    a: Arc<Alerting>,
    queue: &'static str,
}

impl consumer::Handler for Judge {
    async fn take(&self, batch: Vec<Delivery>) {
        let results = if self.queue == topology::QUEUE_OUTCOMES_ALERTING {
            let messages: Vec<(Option<&str>, &[u8])> =
                batch.iter().map(|d| (d.properties.kind().as_ref().map(|k| k.as_str()), d.data.as_slice())).collect();
            rules::process_messages(&self.a, &messages).await
        } else {
            let mut results = Vec::with_capacity(batch.len());
            for d in &batch {
                let kind = d.properties.kind().as_ref().map(|k| k.as_str());
                results.push(rules::process_dead_letter(&self.a, kind, &d.data).await);
            }
            results
        };
        if results.iter().all(Result::is_ok) {
            // Processed in order: one acknowledgement covers the batch.
            let last = batch.last().expect("not empty");
            if let Err(e) = last.acker.ack(BasicAckOptions { multiple: true }).await {
                tracing::warn!(error = %e, "acknowledging failed; the broker will redeliver");
            }
            return;
        }
        for (delivery, result) in batch.iter().zip(results) {
            let acked = match result {
                Ok(()) => delivery.acker.ack(BasicAckOptions::default()).await,
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "processing an alerting message failed; requeueing it");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    delivery.acker.nack(BasicNackOptions { requeue: true, multiple: false }).await
                }
            };
            if let Err(e) = acked {
                tracing::warn!(error = %e, "acknowledging failed; the broker will redeliver");
            }
        }
    }
}

/// Starts the consumers and the scheduler in this process.
pub fn start(c: &Connections) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    metrics::init();
    let a = Alerting::new(AlertingState::new(c))?;
    let outcomes = a.spawn_consumer(topology::QUEUE_OUTCOMES_ALERTING);
    let dead = a.spawn_consumer(topology::QUEUE_DEAD_ALERTING);
    let sched = maintenance::spawn(a.clone());
    Ok(tokio::spawn(async move {
        let _ = tokio::join!(outcomes, dead, sched);
    }))
}

/// Runs the alerting service alone (with its health and metrics server) until the process is cancelled.
pub async fn run(c: Connections) -> anyhow::Result<()> {
    let addr =
        (c.settings.ops_listen.or(c.settings.listen)).unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"));
    let listener = hookline_service_kit::ops::bind(addr)?;
    tracing::info!(%addr, "alerting health and metrics listening");
    let ops = serve_ops(Probes::needing_broker(&c), listener, c.cancel.clone())?;
    let task = start(&c)?;
    let _ = task.await;
    c.cancel.cancel();
    let _ = ops.await;
    Ok(())
}
