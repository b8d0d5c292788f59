//! Publishing with publisher confirms over a connection that heals itself.
//!
//! A [`Broker`] holds one connection and one confirm-mode channel, opened on
//! first use and re-opened after any failure, so a broker restart costs the
//! callers one failed publish each, never a stuck process. A publish returns
//! only once RabbitMQ has confirmed it (written to the quorum queue's
//! majority), which is what lets the outbox mark a row published.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use prost::Message;
use tokio::sync::Mutex;

use crate::messages::{
    DeliveryBatch, DeliveryOutcome, DeliveryOutcomeBatch, DeliveryTask, CONTENT_TYPE, TYPE_DELIVERY_BATCH,
    TYPE_DELIVERY_OUTCOME, TYPE_DELIVERY_OUTCOME_BATCH, TYPE_DELIVERY_TASK,
};
use crate::topology;

/// Header carrying the attempt number, so consumers never parse `x-death`.
pub const HEADER_ATTEMPT: &str = "x-hookline-attempt";
/// W3C trace context of the request that caused the message.
pub const HEADER_TRACEPARENT: &str = "traceparent";

/// The `traceparent` header of a received message.
pub fn traceparent_of(props: &BasicProperties) -> Option<String> {
    let headers = props.headers().as_ref()?;
    match headers.inner().get(HEADER_TRACEPARENT)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}
/// Redeclare a retry queue at least this often while publishing to it, which
/// keeps its `x-expires` timer from firing while it holds messages.
const RETRY_REDECLARE_EVERY: Duration = Duration::from_secs(30);

struct Open {
    connection: Connection,
    channel: Channel,
}

pub struct Broker {
    url: String,
    name: String,
    open: Mutex<Option<Open>>,
    retry_declared: Mutex<HashMap<u64, Instant>>,
}

/// The nodes of a broker address list: `HOOKLINE_AMQP_URL` may name several
/// nodes of one cluster, comma-separated.
pub fn nodes(urls: &str) -> Vec<&str> {
    urls.split(',').map(str::trim).filter(|u| !u.is_empty()).collect()
}

/// Which node the next connection tries first: each attempt starts one
/// further along, so a process whose node died moves to the next one, and
/// processes started together spread over the cluster.
static NEXT_NODE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Opens a connection with Hookline's connection name (visible in the
/// console) to the first node of `urls` that answers.
pub async fn connect(urls: &str, name: &str) -> anyhow::Result<Connection> {
    let nodes = nodes(urls);
    anyhow::ensure!(!nodes.is_empty(), "no RabbitMQ address given");
    let start = NEXT_NODE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut failures = Vec::new();
    for i in 0..nodes.len() {
        let url = nodes[(start + i) % nodes.len()];
        let props = ConnectionProperties::default().with_connection_name(name.to_owned().into());
        let attempt = tokio::time::timeout(Duration::from_secs(10), open(url, props)).await;
        match attempt {
            Ok(Ok(conn)) => return Ok(conn),
            Ok(Err(e)) => failures.push(format!("{}: {e:#}", host_of(url))),
            Err(_) => failures.push(format!("{}: timed out", host_of(url))),
        }
    }
    Err(anyhow!("connecting to RabbitMQ: {}", failures.join("; ")))
}

/// One node: `amqps://` over rustls, trusting the built-in roots and the CA
/// bundle named by `HOOKLINE_TLS_CA_FILE` (as every dependency does).
async fn open(url: &str, props: ConnectionProperties) -> anyhow::Result<Connection> {
    if !url.starts_with("amqps://") {
        return Ok(Connection::connect(url, props).await?);
    }
    let mut config = lapin::tcp::OwnedTLSConfig::default();
    if let Some(path) = std::env::var_os("HOOKLINE_TLS_CA_FILE").filter(|p| !p.is_empty()) {
        let pem = std::fs::read_to_string(&path)
            .with_context(|| format!("reading HOOKLINE_TLS_CA_FILE {}", path.to_string_lossy()))?;
        config.cert_chain = Some(pem);
    }
    let runtime = lapin::runtime::default_runtime()?;
    Ok(Connection::connect_with_config(url, props, config, runtime).await?)
}

/// A node's host and port, for errors (never its credentials).
fn host_of(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!("{}:{}", u.host_str().unwrap_or("?"), u.port().unwrap_or(5672)),
        Err(_) => "<invalid url>".into(),
    }
}

impl Broker {
    pub fn new(url: &str, name: &str) -> Self {
        Self {
            url: url.to_owned(),
            name: name.to_owned(),
            open: Mutex::new(None),
            retry_declared: Mutex::new(HashMap::new()),
        }
    }

    /// A confirm-mode channel, (re)connecting and declaring the topology when needed.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        let mut open = self.open.lock().await;
        if let Some(o) = open.as_ref() {
            if o.channel.status().connected() && o.connection.status().connected() {
                return Ok(o.channel.clone());
            }
        }
        *open = None;
        self.retry_declared.lock().await.clear();
        let connection = connect(&self.url, &self.name).await?;
        let channel = connection.create_channel().await.context("opening a RabbitMQ channel")?;
        channel.confirm_select(ConfirmSelectOptions::default()).await.context("enabling publisher confirms")?;
        topology::declare(&channel).await.context("declaring the RabbitMQ topology")?;
        *open = Some(Open { connection, channel: channel.clone() });
        Ok(channel)
    }

    /// Checks that the broker is reachable.
    pub async fn ping(&self) -> anyhow::Result<()> {
        self.channel().await.map(|_| ())
    }

    async fn forget(&self) {
        if let Some(o) = self.open.lock().await.take() {
            let _ = o.connection.close(320, ShortString::from("reconnecting")).await;
        }
    }

    async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        kind: &str,
        attempt: Option<u32>,
        traceparent: Option<&str>,
        payload: &[u8],
    ) -> anyhow::Result<()> {
        let result = async {
            let channel = self.channel().await?;
            let mut props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type(ShortString::from(CONTENT_TYPE))
                .with_type(ShortString::from(kind));
            let mut headers = FieldTable::default();
            if let Some(a) = attempt {
                headers.insert(ShortString::from(HEADER_ATTEMPT), AMQPValue::LongUInt(a));
            }
            if let Some(tp) = traceparent {
                headers.insert(ShortString::from(HEADER_TRACEPARENT), AMQPValue::LongString(tp.into()));
            }
            props = props.with_headers(headers);
            let confirm = channel
                .basic_publish(
                    ShortString::from(exchange),
                    ShortString::from(routing_key),
                    BasicPublishOptions { mandatory: true, ..Default::default() },
                    payload,
                    props,
                )
                .await?
                .await?;
            if !confirm.is_ack() {
                return Err(anyhow!("RabbitMQ refused the message (nack)"));
            }
            if confirm.take_message().is_some() {
                return Err(anyhow!("RabbitMQ could not route the message to any queue"));
            }
            Ok(())
        }
        .await;
        if result.is_err() {
            self.forget().await;
        }
        result
    }

    /// Publishes a task to the work queue.
    pub async fn publish_task(&self, task: &DeliveryTask, traceparent: Option<&str>) -> anyhow::Result<()> {
        self.publish(
            topology::EXCHANGE_DELIVERIES,
            topology::ROUTING_WORK,
            TYPE_DELIVERY_TASK,
            Some(task.attempt),
            traceparent,
            &task.encode_to_vec(),
        )
        .await
    }

    /// Publishes several tasks to the work queue as one message (see
    /// `DeliveryBatch`).
    pub async fn publish_batch(&self, batch: &DeliveryBatch, traceparent: Option<&str>) -> anyhow::Result<()> {
        self.publish(
            topology::EXCHANGE_DELIVERIES,
            topology::ROUTING_WORK,
            TYPE_DELIVERY_BATCH,
            None,
            traceparent,
            &batch.encode_to_vec(),
        )
        .await
    }

    /// Hands a task to the dead-letter exchange, where rejecting a message of
    /// its own would have sent it: for a task that came in a batch.
    pub async fn publish_dead_letter(&self, task: &DeliveryTask, traceparent: Option<&str>) -> anyhow::Result<()> {
        self.publish(
            topology::EXCHANGE_DEAD_LETTER,
            "",
            TYPE_DELIVERY_TASK,
            Some(task.attempt),
            traceparent,
            &task.encode_to_vec(),
        )
        .await
    }

    /// Publishes a task to the delay queue for `delay`, from which it returns
    /// to the work queue when the delay has passed.
    pub async fn publish_delayed(
        &self,
        task: &DeliveryTask,
        delay: Duration,
        traceparent: Option<&str>,
    ) -> anyhow::Result<()> {
        let queue = self.retry_queue(delay).await?;
        self.publish("", &queue, TYPE_DELIVERY_TASK, Some(task.attempt), traceparent, &task.encode_to_vec()).await
    }

    /// Publishes several tasks to the delay queue for `delay` as one message
    /// (a `DeliveryBatch`; each task carries its own trace context). One
    /// task goes as a message of its own.
    pub async fn publish_delayed_batch(&self, tasks: &[DeliveryTask], delay: Duration) -> anyhow::Result<()> {
        match tasks {
            [] => Ok(()),
            [task] => {
                let traceparent = (!task.traceparent.is_empty()).then_some(task.traceparent.as_str());
                self.publish_delayed(task, delay, traceparent).await
            }
            _ => {
                let queue = self.retry_queue(delay).await?;
                let batch = DeliveryBatch { version: crate::messages::MESSAGE_VERSION, tasks: tasks.to_vec() };
                self.publish("", &queue, TYPE_DELIVERY_BATCH, None, None, &batch.encode_to_vec()).await
            }
        }
    }

    /// The delay queue for `delay`, declared when first used and again now
    /// and then (see [`RETRY_REDECLARE_EVERY`]).
    async fn retry_queue(&self, delay: Duration) -> anyhow::Result<String> {
        let delay_ms = (delay.as_millis() as u64).max(1);
        let queue = topology::retry_queue_name(delay_ms);
        let needs_declare = {
            let declared = self.retry_declared.lock().await;
            declared.get(&delay_ms).is_none_or(|t| t.elapsed() > RETRY_REDECLARE_EVERY)
        };
        if needs_declare {
            let channel = self.channel().await?;
            if let Err(e) = topology::declare_retry_queue(&channel, delay_ms).await {
                self.forget().await;
                return Err(anyhow!("declaring delay queue {queue}: {e}"));
            }
            self.retry_declared.lock().await.insert(delay_ms, Instant::now());
        }
        Ok(queue)
    }

    /// Publishes an outcome for the alerting service.
    pub async fn publish_outcome(&self, outcome: &DeliveryOutcome) -> anyhow::Result<()> {
        self.publish(
            topology::EXCHANGE_OUTCOMES,
            outcome.kind().routing_key(),
            TYPE_DELIVERY_OUTCOME,
            None,
            None,
            &outcome.encode_to_vec(),
        )
        .await
    }

    /// Publishes outcomes of one kind for the alerting service, several as
    /// one message (a `DeliveryOutcomeBatch`) under that kind's routing key.
    pub async fn publish_outcomes(&self, outcomes: &[DeliveryOutcome]) -> anyhow::Result<()> {
        match outcomes {
            [] => Ok(()),
            [one] => self.publish_outcome(one).await,
            [first, rest @ ..] => {
                let kind = first.kind();
                if let Some(other) = rest.iter().find(|o| o.kind() != kind) {
                    return Err(anyhow!(
                        "an outcome batch holds one kind: {} and {}",
                        kind.routing_key(),
                        other.kind().routing_key()
                    ));
                }
                let batch =
                    DeliveryOutcomeBatch { version: crate::messages::MESSAGE_VERSION, outcomes: outcomes.to_vec() };
                self.publish(
                    topology::EXCHANGE_OUTCOMES,
                    kind.routing_key(),
                    TYPE_DELIVERY_OUTCOME_BATCH,
                    None,
                    None,
                    &batch.encode_to_vec(),
                )
                .await
            }
        }
    }
}
