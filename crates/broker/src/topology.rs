//! The RabbitMQ topology, declared idempotently at start-up by every service
//! that touches the broker, and mirrored in `deploy/rabbitmq/definitions.json`.
//!
//! ```text
//!  publishers ──► [deliveries] (direct) ──work──► deliveries.work (quorum)
//!                      ▲                              │ reject, no requeue
//!                      │ TTL expired                  ▼
//!  deliveries.retry.<ms>ms (one per delay)     [deliveries.dlx] (fanout)
//!                                               ├─► deliveries.dead           (held for operators)
//!                                               └─► deliveries.dead.alerting  (consumed by alerting)
//!  workers ──► [outcomes] (topic, outcome.<kind>) ──#──► outcomes.alerting
//! ```

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

pub const EXCHANGE_DELIVERIES: &str = "deliveries";
pub const ROUTING_WORK: &str = "work";
pub const QUEUE_WORK: &str = "deliveries.work";
pub const EXCHANGE_DEAD_LETTER: &str = "deliveries.dlx";
pub const QUEUE_DEAD: &str = "deliveries.dead";
pub const QUEUE_DEAD_ALERTING: &str = "deliveries.dead.alerting";
pub const EXCHANGE_OUTCOMES: &str = "outcomes";
pub const QUEUE_OUTCOMES_ALERTING: &str = "outcomes.alerting";
pub const RETRY_QUEUE_PREFIX: &str = "deliveries.retry.";

/// How often a message may be redelivered (crashes, nacks) before the work
/// queue dead-letters it as poison.
pub const WORK_DELIVERY_LIMIT: i64 = 20;
/// Dead letters held for inspection expire after a week.
pub const DEAD_LETTER_TTL_MS: i64 = 7 * 24 * 3600 * 1000;
/// A retry queue outlives its last message by this much, then disappears.
pub const RETRY_QUEUE_IDLE_MS: u64 = 5 * 60 * 1000;

/// The name of the delay queue for one delay: `deliveries.retry.16000ms`.
pub fn retry_queue_name(delay_ms: u64) -> String {
    format!("{RETRY_QUEUE_PREFIX}{delay_ms}ms")
}

fn s(v: &str) -> ShortString {
    ShortString::from(v)
}

fn long(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v))
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions { durable: true, ..Default::default() }
}

fn quorum_args() -> FieldTable {
    let mut t = FieldTable::default();
    t.insert(s("x-queue-type"), long("quorum"));
    t
}

/// Declares every exchange and long-lived queue. Safe to call any number of
/// times from any number of processes.
pub async fn declare(channel: &Channel) -> lapin::Result<()> {
    let ex = ExchangeDeclareOptions { durable: true, ..Default::default() };
    channel.exchange_declare(s(EXCHANGE_DELIVERIES), ExchangeKind::Direct, ex, FieldTable::default()).await?;
    channel.exchange_declare(s(EXCHANGE_DEAD_LETTER), ExchangeKind::Fanout, ex, FieldTable::default()).await?;
    channel.exchange_declare(s(EXCHANGE_OUTCOMES), ExchangeKind::Topic, ex, FieldTable::default()).await?;

    let mut work = quorum_args();
    work.insert(s("x-dead-letter-exchange"), long(EXCHANGE_DEAD_LETTER));
    // Quorum queues dead-letter at most once unless told otherwise.
    work.insert(s("x-dead-letter-strategy"), long("at-least-once"));
    work.insert(s("x-overflow"), long("reject-publish"));
    work.insert(s("x-delivery-limit"), AMQPValue::LongLongInt(WORK_DELIVERY_LIMIT));
    channel.queue_declare(s(QUEUE_WORK), durable(), work).await?;
    channel
        .queue_bind(
            s(QUEUE_WORK),
            s(EXCHANGE_DELIVERIES),
            s(ROUTING_WORK),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

    let mut dead = quorum_args();
    dead.insert(s("x-message-ttl"), AMQPValue::LongLongInt(DEAD_LETTER_TTL_MS));
    channel.queue_declare(s(QUEUE_DEAD), durable(), dead).await?;
    channel
        .queue_bind(s(QUEUE_DEAD), s(EXCHANGE_DEAD_LETTER), s(""), QueueBindOptions::default(), FieldTable::default())
        .await?;
    channel.queue_declare(s(QUEUE_DEAD_ALERTING), durable(), quorum_args()).await?;
    channel
        .queue_bind(
            s(QUEUE_DEAD_ALERTING),
            s(EXCHANGE_DEAD_LETTER),
            s(""),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

    channel.queue_declare(s(QUEUE_OUTCOMES_ALERTING), durable(), quorum_args()).await?;
    channel
        .queue_bind(
            s(QUEUE_OUTCOMES_ALERTING),
            s(EXCHANGE_OUTCOMES),
            s("#"),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

/// Declares the delay queue for `delay_ms`: messages wait there for exactly
/// that long, then dead-letter back to the work queue. One queue per distinct
/// delay, so a 1 s retry never waits behind a 1 h one (per-message TTLs only
/// expire at the head of a queue). The queue deletes itself when unused.
pub async fn declare_retry_queue(channel: &Channel, delay_ms: u64) -> lapin::Result<String> {
    let name = retry_queue_name(delay_ms);
    let mut args = FieldTable::default();
    args.insert(s("x-message-ttl"), AMQPValue::LongLongInt(delay_ms as i64));
    args.insert(s("x-dead-letter-exchange"), long(EXCHANGE_DELIVERIES));
    args.insert(s("x-dead-letter-routing-key"), long(ROUTING_WORK));
    args.insert(s("x-expires"), AMQPValue::LongLongInt((delay_ms + RETRY_QUEUE_IDLE_MS) as i64));
    channel.queue_declare(s(&name), durable(), args).await?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_queue_names_encode_the_delay() {
        assert_eq!(retry_queue_name(16_000), "deliveries.retry.16000ms");
    }
}
