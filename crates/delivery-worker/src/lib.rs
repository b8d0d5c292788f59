//! Hookline's delivery workers: consume the work queue, sign and POST each
//! delivery, record the attempt, and retry through delay queues or
//! dead-letter.
//!
//! [`process::process_task`] is the pure step (one task in, one
//! disposition out); [`Worker::run`] is the consume loop around it, which
//! acks only after the outcome is recorded and shuts down through the state's
//! cancellation token, waiting for in-flight deliveries. A message carries
//! one task, or several as a batch: the new deliveries of one event, or
//! retries that waited in the same delay queue (see `Worker::take_batch`).
//! An ordered lane's next delivery may also start here without a message,
//! when the worker that settled the one before has a slot to spare.

pub mod flow;
pub mod metrics;
pub mod outgoing;
pub mod process;
pub mod state;
pub mod successes;
pub mod sweeper;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::state::WorkerState;
use hookline_broker::lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions, QueueDeclareOptions};
use hookline_broker::lapin::types::FieldTable;
use hookline_broker::messages::TYPE_DELIVERY_BATCH;
use hookline_broker::topology;
use hookline_broker::{consumer, lapin};
use hookline_domain::status::DeliveryStatus;
use hookline_service_kit::batch::{BatchFailed, Batcher};
use hookline_service_kit::deps::Connections;
use hookline_service_kit::ops::{serve_ops, Probes};
use hookline_store::db::PgPool;
use hookline_store::deliveries::{AttemptOutcome, AttemptRow, DeliveryRow};
use hookline_store::events::EventRow;
use hookline_store::hot::plan::Plan;
use hookline_store::lanes::Released;
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::process::Disposition;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9101";
/// How long a delivery waits for a slot of a fast endpoint at its cap before it is parked.
pub const SLOT_WAIT: Duration = Duration::from_millis(250);
/// Endpoints answering faster than this on average are waited for rather than parked.
pub const FAST_ENDPOINT_MS: f64 = 50.0;
/// How long a message whose dependency failed waits before it comes back.
pub const REQUEUE_DELAY: Duration = Duration::from_secs(1);
/// How long SIGTERM waits for in-flight deliveries.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(30);

/// State shared by every delivery this process handles.
pub struct Worker {
    pub state: Arc<WorkerState>,
    pub client: reqwest::Client,
    /// Deliveries in flight in this process (`HOOKLINE_WORKER_CONCURRENCY`).
    concurrency: Arc<Semaphore>,
    /// In-flight requests per endpoint.
    endpoint_slots: Slots,
    /// In-flight requests per organisation: its share of the worker.
    org_slots: Slots,
    /// Flow control shared by the fleet (Redis): rate limits, adaptive rates, pauses.
    pub flow: flow::Flow,
    /// GCRA state for endpoints with `rate_limit_per_second` while Redis cannot be reached.
    endpoint_rate: Mutex<HashMap<Uuid, f64>>,
    /// Per endpoint: recent response time in milliseconds (a moving
    /// average) and when the last response (or failure) came.
    endpoint_latency: Mutex<HashMap<Uuid, (f64, std::time::Instant)>>,
    /// Records attempts of concurrent deliveries in shared transactions.
    pub recorder: Recorder,
    /// The same with a shorter wait for company, for ordered deliveries:
    /// the rest of their lane waits for the record.
    pub recorder_prompt: Recorder,
    /// Reads the deliveries (with their events) of concurrent messages in shared queries.
    pub loader: Loader,
    /// Successes alerting must hear of, at most one per endpoint a second.
    pub successes: successes::SuccessReports,
    /// Retries and parked tasks on their way to the delay queues, several to a message.
    pub delayed: outgoing::Delayed,
    /// Outcomes on their way to alerting, several to a message.
    pub outcomes: outgoing::Outcomes,
}

/// Semaphores by key (an endpoint, an organisation), made on first use; the
/// idle ones are dropped when there are many.
#[derive(Default)]
struct Slots(Mutex<HashMap<Uuid, Arc<Semaphore>>>);

impl Slots {
    fn of(&self, key: Uuid, cap: usize) -> Arc<Semaphore> {
        let mut slots = self.0.lock().expect("slots lock");
        if slots.len() > 50_000 {
            slots.retain(|_, s| s.available_permits() < cap);
        }
        slots.entry(key).or_insert_with(|| Arc::new(Semaphore::new(cap))).clone()
    }
}

/// What the work queue brings, handed to the worker one message at a time.
struct Intake {
    worker: Arc<Worker>,
    concurrency: Arc<Semaphore>,
}

impl Intake {
    /// Whether every in-flight delivery finished within [`DRAIN_DEADLINE`].
    async fn wait_in_flight(&self) -> bool {
        let all = self.worker.state.settings.worker_concurrency as u32;
        tokio::time::timeout(DRAIN_DEADLINE, self.concurrency.acquire_many(all)).await.is_ok()
    }
}

impl consumer::Handler for Intake {
    async fn take(&self, batch: Vec<lapin::message::Delivery>) {
        for delivery in batch {
            if delivery.properties.kind().as_ref().is_some_and(|k| k.as_str() == TYPE_DELIVERY_BATCH) {
                self.worker.take_batch(delivery, &self.concurrency).await;
            } else {
                self.worker.take_one(delivery, &self.concurrency).await;
            }
        }
    }

    async fn drain(&self) {
        // Their acknowledgements need this channel.
        let _ = self.wait_in_flight().await;
    }

    fn consuming(&self, up: bool) {
        if up {
            metrics::CONSUMERS.inc();
        } else {
            metrics::CONSUMERS.dec();
        }
    }
}

/// A delivery and its event, as the worker reads them.
pub type Loaded = Option<Arc<(DeliveryRow, EventRow)>>;
/// Batched reads of deliveries by id.
pub type Loader = Batcher<Uuid, Result<Loaded, BatchFailed>>;

fn loader(pool: PgPool) -> Loader {
    Loader::spawn(BATCH_TASKS, BATCH_SIZE, move |ids: Vec<Uuid>| {
        let pool = pool.clone();
        async move {
            let n = ids.len();
            let rows = async {
                let mut conn = pool.get().await.map_err(|e| BatchFailed::new("database pool", e))?;
                hookline_store::hot::reads::get_many_with_event(&mut conn, &ids, Plan::Keyed)
                    .await
                    .map_err(|e| BatchFailed::new("reading deliveries", e))
            }
            .await;
            match rows {
                Ok(rows) => {
                    let found: HashMap<Uuid, Arc<(DeliveryRow, EventRow)>> =
                        rows.into_iter().map(|r| (r.0.id, Arc::new(r))).collect();
                    ids.iter().map(|id| Ok(found.get(id).cloned())).collect()
                }
                Err(e) => vec![Err(e); n],
            }
        }
    })
}

/// An attempt and what it did to its delivery.
pub type AttemptWrite = (AttemptRow, AttemptOutcome);
/// What recording an attempt settled.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    /// Alerting must hear of the attempt.
    pub heard: bool,
    /// The attempt failed with a retry to come, and this caller claimed the
    /// right to publish it (see `hot::attempts::claim_next_attempts`).
    pub claimed: bool,
    /// For a settled ordered delivery whose lane was released with the
    /// record: the lane's next delivery, if any. None when the lane is left
    /// to the caller to release.
    pub released: Option<Option<Released>>,
}
/// Group commit for attempt records (see [`hookline_service_kit::batch`]).
pub type Recorder = Batcher<AttemptWrite, Result<Recorded, BatchFailed>>;
/// Deliveries per shared read or attempts per shared transaction, at most.
const BATCH_SIZE: usize = 128;
/// Reads or transactions of each kind in flight at once.
const BATCH_TASKS: usize = 2;
/// How long an attempt record waits for others to share its statement. The
/// receiver already has the delivery; only the ack waits.
const RECORD_LINGER: Duration = Duration::from_millis(10);
/// The same for an ordered delivery, whose lane waits: enough for the lanes
/// stepping side by side to share a commit (and its fsync, which ingest's
/// commits wait behind).
const LANE_RECORD_LINGER: Duration = Duration::from_millis(2);

/// Records attempts in shared transactions; with `lanes` (ordered
/// deliveries only), then releases the lanes of those that settled, in one
/// more statement for the batch.
fn recorder(pool: PgPool, linger: Duration, lanes: bool) -> Recorder {
    Recorder::spawn_lingering(BATCH_TASKS, BATCH_SIZE, linger, move |batch: Vec<AttemptWrite>| {
        let pool = pool.clone();
        async move {
            let (attempts, outcomes): (Vec<AttemptRow>, Vec<AttemptOutcome>) = batch.into_iter().unzip();
            let mut results = record(&pool, &attempts, &outcomes).await;
            if lanes {
                release_settled(&pool, &attempts, &outcomes, &mut results).await;
            }
            results
        }
    })
}

/// Releases, in one statement, the lanes of the recorded attempts that
/// settled their delivery. On failure each caller releases its own.
async fn release_settled(
    pool: &PgPool,
    attempts: &[AttemptRow],
    outcomes: &[AttemptOutcome],
    results: &mut [Result<Recorded, BatchFailed>],
) {
    let settles = |o: &AttemptOutcome, r: &Result<Recorded, BatchFailed>| {
        r.is_ok() && matches!(o.status, DeliveryStatus::Delivered | DeliveryStatus::DeadLetter)
    };
    let settled: Vec<Uuid> = attempts
        .iter()
        .zip(outcomes)
        .zip(results.iter())
        .filter(|((_, o), r)| settles(o, r))
        .map(|((a, _), _)| a.delivery_id)
        .collect();
    if settled.is_empty() {
        return;
    }
    let released = async {
        let mut conn = pool.get().await.map_err(|e| BatchFailed::new("database pool", e))?;
        hookline_store::lanes::release_many(&mut conn, &settled)
            .await
            .map_err(|e| BatchFailed::new("releasing lanes", e))
    };
    match released.await {
        Ok(mut next) => {
            for ((a, o), r) in attempts.iter().zip(outcomes).zip(results.iter_mut()) {
                if settles(o, r) {
                    if let Ok(r) = r {
                        r.released = Some(next.remove(&a.delivery_id));
                    }
                }
            }
        }
        Err(e) => tracing::warn!(error = e.report(), "releasing a batch of lanes failed; each is released alone"),
    }
}

/// Writes a batch of attempts; when the batch fails, each alone.
async fn record(
    pool: &PgPool,
    attempts: &[AttemptRow],
    outcomes: &[AttemptOutcome],
) -> Vec<Result<Recorded, BatchFailed>> {
    let e = match write_attempts(pool, attempts, outcomes).await {
        Ok(recorded) => return recorded.into_iter().map(Ok).collect(),
        Err(e) => e,
    };
    // Write each alone, so one bad record cannot hold the others back.
    tracing::warn!(error = e.report(), attempts = attempts.len(), "a batch of attempts failed; writing each alone");
    let mut results = Vec::with_capacity(attempts.len());
    for (a, o) in attempts.iter().zip(outcomes) {
        // A batch of one was just written alone.
        let mut alone = if attempts.len() == 1 {
            Err(e.clone())
        } else {
            write_attempts(pool, std::slice::from_ref(a), std::slice::from_ref(o)).await
        };
        if let Err(e) = &alone {
            // Still refused: keep the attempt and its outcome without what
            // the receiver sent, so the delivery moves on instead of looping.
            tracing::warn!(error = e.report(), delivery_id = %a.delivery_id, "an attempt record was refused; storing it without the response");
            let bare = degraded(a);
            alone = write_attempts(pool, std::slice::from_ref(&bare), std::slice::from_ref(o)).await;
        }
        results.push(alone.map(|mut recorded| recorded.swap_remove(0)));
    }
    results
}

/// An attempt record stripped of everything that came from outside.
fn degraded(a: &AttemptRow) -> AttemptRow {
    AttemptRow {
        request_headers: serde_json::Value::Object(Default::default()),
        response_headers: None,
        response_body: None,
        error_message: Some("the attempt's details could not be stored".to_owned()),
        ..a.clone()
    }
}

/// Records the attempts and claims the retries of those that failed, in one
/// transaction: one commit (and one flush of the WAL) for the batch rather
/// than one more per failure. A batch with nothing to retry is one
/// statement, atomic on its own.
///
/// A crash after the commit and before a claimed retry is published leaves
/// the delivery failed with its next attempt claimed; the sweeper queues
/// such retries again once they are overdue (see [`sweeper`]).
async fn write_attempts(
    pool: &PgPool,
    attempts: &[AttemptRow],
    outcomes: &[AttemptOutcome],
) -> Result<Vec<Recorded>, BatchFailed> {
    use diesel_async::AsyncConnection;
    use hookline_store::hot::attempts::{claim_next_attempts, record_attempts};
    // (position in the batch, (delivery, attempt to claim))
    let (at, claims): (Vec<usize>, Vec<(Uuid, i32)>) = attempts
        .iter()
        .zip(outcomes)
        .enumerate()
        .filter(|(_, (_, o))| o.status == DeliveryStatus::Failed && o.next_attempt_at.is_some())
        .map(|(i, (a, _))| (i, (a.delivery_id, a.attempt_number + 1)))
        .unzip();
    let mut conn = pool.get().await.map_err(|e| BatchFailed::new("database pool", e))?;
    let written = if claims.is_empty() {
        record_attempts(&mut conn, attempts, outcomes, Plan::Keyed).await.map(|heard| (heard, Vec::new()))
    } else {
        conn.transaction::<_, diesel::result::Error, _>(async |c| {
            let heard = record_attempts(c, attempts, outcomes, Plan::Keyed).await?;
            Ok((heard, claim_next_attempts(c, &claims, Plan::Keyed).await?))
        })
        .await
    };
    let (heard, won) = written.map_err(|e| BatchFailed::new("recording attempts", e))?;
    let mut recorded: Vec<Recorded> = heard.into_iter().map(|heard| Recorded { heard, ..Default::default() }).collect();
    for (i, won) in at.into_iter().zip(won) {
        recorded[i].claimed = won;
    }
    Ok(recorded)
}

impl Worker {
    pub fn new(state: Arc<WorkerState>) -> anyhow::Result<Arc<Self>> {
        let client = hookline_service_kit::outbound::build_client(
            state.settings.allow_private_targets,
            state.settings.worker_concurrency,
        )?;
        // The batched reads and attempt records, the statements run for every
        // delivery, are planned once per connection (see `hot::plan::keyed_pool`):
        // one connection for each batch of each kind in flight.
        let keyed = hookline_store::hot::plan::keyed_pool(state.settings.database_url.expose(), 3 * BATCH_TASKS)?;
        Ok(Arc::new(Self {
            client,
            concurrency: Arc::new(Semaphore::new(state.settings.worker_concurrency)),
            endpoint_slots: Slots::default(),
            org_slots: Slots::default(),
            flow: flow::Flow::new(state.redis.clone()),
            endpoint_rate: Mutex::new(HashMap::new()),
            endpoint_latency: Mutex::new(HashMap::new()),
            recorder: recorder(keyed.clone(), RECORD_LINGER, false),
            recorder_prompt: recorder(keyed.clone(), LANE_RECORD_LINGER, true),
            loader: loader(keyed),
            successes: successes::SuccessReports::default(),
            delayed: outgoing::delayed(state.broker.clone()),
            outcomes: outgoing::outcomes(state.broker.clone()),
            state,
        }))
    }

    /// A slot for one request to `endpoint`, or None when it is at its cap
    /// and should be parked.
    ///
    /// An endpoint that answers quickly frees a slot within milliseconds, so
    /// waiting briefly for one costs less than a round trip through a delay
    /// queue. Only an endpoint seen to be flowing is waited for: one that
    /// answers fast on average and has answered within the wait. A slow or
    /// stalled endpoint (or one not heard from yet) would hold this worker's
    /// slot for the whole wait, so its messages are parked at once.
    pub async fn endpoint_slot(&self, endpoint: Uuid) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let sem = self.endpoint_slots.of(endpoint, self.state.settings.endpoint_concurrency);
        if let Ok(permit) = sem.clone().try_acquire_owned() {
            return Some(permit);
        }
        if !self.is_flowing(endpoint) {
            return None;
        }
        tokio::time::timeout(SLOT_WAIT, sem.acquire_owned()).await.ok().and_then(Result::ok)
    }

    /// A slot of the organisation's share of this worker, or None when it
    /// holds its whole share (`HOOKLINE_ORG_CONCURRENCY`) and should be
    /// parked: one tenant's hanging endpoints leave the rest to the others.
    pub fn org_slot(&self, org: Uuid) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.org_slots.of(org, self.state.settings.org_concurrency).try_acquire_owned().ok()
    }

    /// A slot of the worker's concurrency for work it found itself (a lane's
    /// next delivery), if one is free, nothing waits for one, and the worker
    /// is not stopping: messages from the work queue come first.
    pub fn spare_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        if self.state.cancel.is_cancelled() {
            return None;
        }
        self.concurrency.clone().try_acquire_owned().ok()
    }

    /// Whether the endpoint answers fast on average and answered within the last [`SLOT_WAIT`].
    pub fn is_flowing(&self, endpoint: Uuid) -> bool {
        let map = self.endpoint_latency.lock().expect("latency lock");
        map.get(&endpoint).is_some_and(|(avg, last)| *avg <= FAST_ENDPOINT_MS && last.elapsed() <= SLOT_WAIT)
    }

    /// The endpoint's recent response time in milliseconds, when known.
    pub fn latency_baseline(&self, endpoint: Uuid) -> Option<f64> {
        self.endpoint_latency.lock().expect("latency lock").get(&endpoint).map(|(ms, _)| *ms)
    }

    /// Folds one attempt's response time (or time to fail) into the endpoint's average.
    pub fn observe_latency(&self, endpoint: Uuid, latency: Duration) {
        let ms = latency.as_secs_f64() * 1000.0;
        let mut map = self.endpoint_latency.lock().expect("latency lock");
        if map.len() > 50_000 {
            map.clear();
        }
        let entry = map.entry(endpoint).or_insert((ms, std::time::Instant::now()));
        entry.0 += (ms - entry.0) * 0.2;
        entry.1 = std::time::Instant::now();
    }

    /// Whether one more request to `endpoint` fits its per-second limit;
    /// otherwise how long until it would.
    pub fn endpoint_rate_check(&self, endpoint: Uuid, per_second: i32) -> Result<(), Duration> {
        let interval = 1000.0 / f64::from(per_second.max(1));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64()
            * 1000.0;
        let mut rates = self.endpoint_rate.lock().expect("rate lock");
        let tat = rates.get(&endpoint).copied().unwrap_or(now).max(now);
        // A burst of one second's worth is allowed.
        if tat - now > 1000.0 - interval {
            return Err(Duration::from_millis((tat - now - (1000.0 - interval)).ceil() as u64));
        }
        rates.insert(endpoint, tat + interval);
        Ok(())
    }

    /// Consumes until `state.cancel` fires, reconnecting with backoff when the
    /// broker connection drops; then drains in-flight deliveries.
    pub async fn run(self: &Arc<Self>) -> anyhow::Result<()> {
        let intake = Intake { worker: Arc::clone(self), concurrency: self.concurrency.clone() };
        let options = consumer::Options {
            url: self.state.settings.amqp_url.expose().to_owned(),
            name: "hookline-worker".into(),
            queue: topology::QUEUE_WORK.into(),
            prefetch: self.state.settings.worker_prefetch,
            linger: None,
        };
        consumer::consume(&options, &self.state.cancel, &intake).await;
        // Wait for in-flight deliveries (each holds a permit).
        if intake.wait_in_flight().await {
            tracing::info!("in-flight deliveries finished");
        } else {
            tracing::warn!("in-flight deliveries did not finish within the deadline; they will be redelivered");
        }
        Ok(())
    }

    /// Runs one message's task in its own slot of the worker's concurrency
    /// and settles the message with its disposition.
    async fn take_one(self: &Arc<Self>, delivery: lapin::message::Delivery, concurrency: &Arc<Semaphore>) {
        let permit = concurrency.clone().acquire_owned().await.expect("semaphore open");
        let this = Arc::clone(self);
        tokio::spawn(async move {
            metrics::IN_FLIGHT.inc();
            let traceparent = hookline_broker::publisher::traceparent_of(&delivery.properties);
            let disposition =
                process::process_one(&this, &delivery.data, delivery.redelivered, traceparent.as_deref()).await;
            let acked = match disposition {
                Disposition::Ack => delivery.acker.ack(BasicAckOptions::default()).await,
                Disposition::DeadLetter => delivery.acker.reject(BasicRejectOptions { requeue: false }).await,
                Disposition::Requeue => {
                    // Give a failing dependency a moment before the message comes back.
                    tokio::time::sleep(REQUEUE_DELAY).await;
                    delivery.acker.nack(BasicNackOptions { requeue: true, multiple: false }).await
                }
            };
            if let Err(e) = acked {
                tracing::warn!(error = %e, "acknowledging failed; the broker will redeliver");
            }
            metrics::IN_FLIGHT.dec();
            drop(permit);
        });
    }

    /// Takes a message carrying several tasks (one event's new deliveries,
    /// or retries and parked tasks that left a delay queue together; see
    /// [`outgoing`]): each runs as if it had come alone, holding a slot of the worker's
    /// concurrency of its own, and the message is acknowledged once all are
    /// settled. A task not done with goes on alone, as its own message would
    /// have: to the dead-letter exchange, or back to the work queue after
    /// [`REQUEUE_DELAY`]. Only if that cannot be published does the whole
    /// message return; the tasks already done recognise themselves then.
    async fn take_batch(self: &Arc<Self>, delivery: lapin::message::Delivery, concurrency: &Arc<Semaphore>) {
        let kind = Some(TYPE_DELIVERY_BATCH);
        let tasks = match hookline_broker::messages::tasks_of(kind, &delivery.data) {
            Ok(tasks) => tasks,
            Err(e) => {
                tracing::error!(error = %e, "an unreadable delivery batch; dead-lettering it for inspection");
                if let Err(e) = delivery.acker.reject(BasicRejectOptions { requeue: false }).await {
                    tracing::warn!(error = %e, "rejecting failed; the broker will redeliver");
                }
                return;
            }
        };
        let traceparent = hookline_broker::publisher::traceparent_of(&delivery.properties);
        let mut running = Vec::with_capacity(tasks.len());
        for task in tasks {
            let permit = concurrency.clone().acquire_owned().await.expect("semaphore open");
            let this = Arc::clone(self);
            // A retry's own trace, in the task, wins over the message's (see `process_task`).
            let traceparent = traceparent.clone();
            let redelivered = delivery.redelivered;
            running.push(tokio::spawn(async move {
                metrics::IN_FLIGHT.inc();
                let disposition = process::process_task(&this, &task, redelivered, traceparent.as_deref()).await;
                metrics::IN_FLIGHT.dec();
                drop(permit);
                (task, disposition)
            }));
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut settled = true;
            for handle in running {
                let Ok((task, disposition)) = handle.await else {
                    settled = false;
                    continue;
                };
                let broker = &this.state.broker;
                let handed = match disposition {
                    Disposition::Ack => Ok(()),
                    Disposition::DeadLetter => broker.publish_dead_letter(&task, traceparent.as_deref()).await,
                    Disposition::Requeue => broker.publish_delayed(&task, REQUEUE_DELAY, traceparent.as_deref()).await,
                };
                if let Err(e) = handed {
                    tracing::warn!(delivery_id = %task.delivery_id, error = format!("{e:#}"), "could not hand on a task of a batch; requeueing the batch");
                    settled = false;
                }
            }
            let acked = if settled {
                delivery.acker.ack(BasicAckOptions::default()).await
            } else {
                tokio::time::sleep(REQUEUE_DELAY).await;
                delivery.acker.nack(BasicNackOptions { requeue: true, multiple: false }).await
            };
            if let Err(e) = acked {
                tracing::warn!(error = %e, "acknowledging failed; the broker will redeliver");
            }
        });
    }

    /// Samples the broker's dead-letter queue depth.
    pub fn spawn_dlq_gauge(self: &Arc<Self>) {
        let state = self.state.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(ch) = state.broker.channel().await {
                    let opts = QueueDeclareOptions { passive: true, ..Default::default() };
                    if let Ok(q) = ch.queue_declare(topology::QUEUE_DEAD.into(), opts, FieldTable::default()).await {
                        metrics::DLQ_SIZE.set(i64::from(q.message_count()));
                    }
                }
                tokio::select! {
                    _ = state.cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(15)) => {}
                }
            }
        });
    }
}

/// Starts the worker's background tasks (consumer, sweeper, DLQ gauge) in
/// this process; the returned handle finishes once drained after cancel.
pub fn start(state: Arc<WorkerState>) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    metrics::init();
    let worker = Worker::new(state.clone())?;
    worker.spawn_dlq_gauge();
    sweeper::spawn(state);
    Ok(tokio::spawn(async move {
        if let Err(e) = worker.run().await {
            tracing::error!(error = format!("{e:#}"), "worker stopped");
        }
    }))
}

/// Runs the worker alone (with its health and metrics server) until the process is cancelled.
pub async fn run(c: Connections) -> anyhow::Result<()> {
    let addr =
        (c.settings.ops_listen.or(c.settings.listen)).unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"));
    let listener = hookline_service_kit::ops::bind(addr)?;
    tracing::info!(%addr, "worker health and metrics listening");
    let ops = serve_ops(Probes::needing_broker(&c), listener, c.cancel.clone())?;
    let worker = start(WorkerState::new(&c))?;
    let _ = worker.await;
    c.cancel.cancel();
    let _ = ops.await;
    Ok(())
}
