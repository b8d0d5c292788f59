//! The one consume loop: connect, declare the topology, set the prefetch,
//! consume, and on a dropped connection do it all again with backoff, until
//! cancelled. The worker and alerting supply only a [`Handler`].

use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use tokio_util::sync::CancellationToken;

use crate::topology;

/// What a consumer does with its messages. The handler settles every message
/// it is given (ack, reject or nack), once it knows its disposition.
pub trait Handler: Send + Sync {
    /// Takes the messages that arrived together: one, or with
    /// [`Options::linger`] those that arrived within it of the first.
    /// Returning slowly holds back the next messages (backpressure).
    fn take(&self, batch: Vec<Delivery>) -> impl Future<Output = ()> + Send;

    /// Awaited when the consumer stops on cancellation, before its channel
    /// closes: work still settling messages finishes here.
    fn drain(&self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Called when a consumer starts (true) and when it ends (false).
    fn consuming(&self, _up: bool) {}
}

#[derive(Debug, Clone)]
pub struct Options {
    pub url: String,
    /// The connection's name, as the broker shows it.
    pub name: String,
    pub queue: String,
    pub prefetch: u16,
    /// How long to wait for more messages after the first of a batch; a
    /// batch is at most `prefetch` long.
    pub linger: Option<Duration>,
}

/// Consumes until `cancel` fires, reconnecting with backoff (200 ms doubling
/// to 10 s) whenever the connection or the consumer fails.
pub async fn consume<H: Handler>(options: &Options, cancel: &CancellationToken, handler: &H) {
    let mut backoff = Duration::from_millis(200);
    while !cancel.is_cancelled() {
        match session(options, cancel, handler).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(
                    queue = options.queue,
                    error = format!("{e:#}"),
                    retry_in_ms = backoff.as_millis() as u64,
                    "broker consumer stopped; reconnecting"
                );
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// One connection's life: Ok when cancelled, Err when the broker went away.
async fn session<H: Handler>(options: &Options, cancel: &CancellationToken, handler: &H) -> anyhow::Result<()> {
    let conn = crate::publisher::connect(&options.url, &options.name).await?;
    let channel = conn.create_channel().await?;
    topology::declare(&channel).await?;
    channel.basic_qos(options.prefetch, BasicQosOptions::default()).await?;
    let mut consumer = channel
        .basic_consume(options.queue.as_str().into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await?;
    tracing::info!(queue = options.queue, "consuming");
    handler.consuming(true);
    let result = loop {
        let next = tokio::select! {
            _ = cancel.cancelled() => break Ok(()),
            d = consumer.next() => d,
        };
        let first = match next {
            Some(Ok(d)) => d,
            Some(Err(e)) => break Err(anyhow::anyhow!("consumer: {e}")),
            None => break Err(anyhow::anyhow!("the broker closed the consumer")),
        };
        let mut batch = vec![first];
        let mut ended = None;
        if let Some(linger) = options.linger {
            let until = tokio::time::Instant::now() + linger;
            while batch.len() < usize::from(options.prefetch) {
                match tokio::time::timeout_at(until, consumer.next()).await {
                    Ok(Some(Ok(d))) => batch.push(d),
                    Ok(Some(Err(e))) => {
                        ended = Some(anyhow::anyhow!("consumer: {e}"));
                        break;
                    }
                    Ok(None) => {
                        ended = Some(anyhow::anyhow!("the broker closed the consumer"));
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
        handler.take(batch).await;
        if let Some(e) = ended {
            break Err(e);
        }
    };
    handler.consuming(false);
    // Stop taking messages; unacknowledged ones return to the queue when the channel closes.
    let _ = channel.basic_cancel(consumer.tag(), Default::default()).await;
    if result.is_ok() {
        handler.drain().await;
    }
    let _ = conn.close(200, "shutting down".into()).await;
    result
}
