//! Broker messages, generated from `proto-schemas/broker/hookline.proto`.

#[allow(clippy::all, missing_docs)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/hookline.broker.v1.rs"));
}

use hookline_domain::id::{DeliveryId, EndpointId, EventId, OrgId};

pub use generated::{DeliveryBatch, DeliveryOutcome, DeliveryOutcomeBatch, DeliveryTask, OutcomeKind, TaskReason};

/// The message format version this build reads and writes.
pub const MESSAGE_VERSION: u32 = 1;

pub const CONTENT_TYPE: &str = "application/x-protobuf";
pub const TYPE_DELIVERY_TASK: &str = "hookline.broker.v1.DeliveryTask";
pub const TYPE_DELIVERY_OUTCOME: &str = "hookline.broker.v1.DeliveryOutcome";
pub const TYPE_DELIVERY_BATCH: &str = "hookline.broker.v1.DeliveryBatch";
pub const TYPE_DELIVERY_OUTCOME_BATCH: &str = "hookline.broker.v1.DeliveryOutcomeBatch";

/// Why a work message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Unreadable {
    #[error("undecodable: {0}")]
    Undecodable(#[from] prost::DecodeError),
    #[error("message format version {0}, which this build does not know")]
    Version(u32),
}

/// The tasks a work or dead-letter message carries: one for a
/// `DeliveryTask`, several for a `DeliveryBatch`, told apart by the AMQP
/// `type` property (`kind`; messages without one are single tasks).
pub fn tasks_of(kind: Option<&str>, payload: &[u8]) -> Result<Vec<DeliveryTask>, Unreadable> {
    use prost::Message;
    if kind != Some(TYPE_DELIVERY_BATCH) {
        return Ok(vec![read_task(payload)?]);
    }
    let batch = DeliveryBatch::decode(payload)?;
    known(batch.version)?;
    batch.tasks.iter().try_for_each(|t| known(t.version))?;
    Ok(batch.tasks)
}

/// Whether this build reads messages of `version`.
fn known(version: u32) -> Result<(), Unreadable> {
    if version == MESSAGE_VERSION {
        Ok(())
    } else {
        Err(Unreadable::Version(version))
    }
}

impl DeliveryTask {
    /// The first attempt at a delivery, as a worker or the relay publishes it.
    pub fn fresh(
        delivery_id: DeliveryId,
        org_id: OrgId,
        endpoint_id: EndpointId,
        event_id: EventId,
        event_type: String,
        enqueued_at_ms: i64,
    ) -> Self {
        DeliveryTask {
            version: MESSAGE_VERSION,
            delivery_id: delivery_id.to_string(),
            org_id: org_id.to_string(),
            endpoint_id: endpoint_id.to_string(),
            event_id: event_id.to_string(),
            event_type,
            attempt: 1,
            first_enqueued_at_ms: enqueued_at_ms,
            reason: TaskReason::Fresh as i32,
            parked: 0,
            // A message's header carries its trace.
            traceparent: String::new(),
        }
    }
}

/// A single `DeliveryTask` message, of a version this build knows.
pub fn read_task(payload: &[u8]) -> Result<DeliveryTask, Unreadable> {
    use prost::Message;
    let task = DeliveryTask::decode(payload)?;
    known(task.version)?;
    Ok(task)
}

/// The outcomes an outcome message carries: one for a `DeliveryOutcome`,
/// several for a `DeliveryOutcomeBatch`, told apart by the AMQP `type`
/// property (messages without one are single outcomes).
pub fn outcomes_of(kind: Option<&str>, payload: &[u8]) -> Result<Vec<DeliveryOutcome>, Unreadable> {
    use prost::Message;
    if kind != Some(TYPE_DELIVERY_OUTCOME_BATCH) {
        let outcome = DeliveryOutcome::decode(payload)?;
        known(outcome.version)?;
        return Ok(vec![outcome]);
    }
    let batch = DeliveryOutcomeBatch::decode(payload)?;
    known(batch.version)?;
    batch.outcomes.iter().try_for_each(|o| known(o.version))?;
    Ok(batch.outcomes)
}

impl OutcomeKind {
    /// The routing key outcomes are published with: `outcome.<kind>`.
    pub fn routing_key(&self) -> &'static str {
        match self {
            OutcomeKind::Delivered => "outcome.delivered",
            OutcomeKind::RetryScheduled => "outcome.retry_scheduled",
            OutcomeKind::DeadLettered => "outcome.dead_lettered",
            OutcomeKind::EndpointGone => "outcome.endpoint_gone",
            OutcomeKind::Cancelled => "outcome.cancelled",
            OutcomeKind::Unspecified => "outcome.unspecified",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn tasks_round_trip() {
        let task = DeliveryTask {
            version: MESSAGE_VERSION,
            delivery_id: "dlv_1".into(),
            attempt: 3,
            reason: TaskReason::Retry as i32,
            ..Default::default()
        };
        let bytes = task.encode_to_vec();
        let back = DeliveryTask::decode(bytes.as_slice()).unwrap();
        assert_eq!(back, task);
        assert_eq!(back.reason(), TaskReason::Retry);
    }

    #[test]
    fn a_batch_is_read_by_its_type_and_a_task_without_one() {
        let task = |id: &str| DeliveryTask {
            version: MESSAGE_VERSION,
            delivery_id: id.into(),
            attempt: 1,
            ..Default::default()
        };
        let batch = DeliveryBatch { version: MESSAGE_VERSION, tasks: vec![task("dlv_1"), task("dlv_2")] };
        let got = tasks_of(Some(TYPE_DELIVERY_BATCH), &batch.encode_to_vec()).unwrap();
        assert_eq!(got.iter().map(|t| t.delivery_id.as_str()).collect::<Vec<_>>(), ["dlv_1", "dlv_2"]);
        assert_eq!(tasks_of(None, &task("dlv_3").encode_to_vec()).unwrap()[0].delivery_id, "dlv_3");
        assert_eq!(tasks_of(Some(TYPE_DELIVERY_TASK), &task("dlv_4").encode_to_vec()).unwrap().len(), 1);
        let newer = DeliveryBatch { version: MESSAGE_VERSION + 1, tasks: vec![task("dlv_5")] };
        assert!(matches!(tasks_of(Some(TYPE_DELIVERY_BATCH), &newer.encode_to_vec()), Err(Unreadable::Version(_))));
        let mixed = DeliveryBatch {
            version: MESSAGE_VERSION,
            tasks: vec![task("dlv_6"), DeliveryTask { version: 9, ..task("dlv_7") }],
        };
        assert!(matches!(tasks_of(Some(TYPE_DELIVERY_BATCH), &mixed.encode_to_vec()), Err(Unreadable::Version(9))));
        assert!(tasks_of(Some(TYPE_DELIVERY_BATCH), b"\xff\xff\xff").is_err());
    }

    #[test]
    fn an_outcome_batch_is_read_by_its_type_and_an_outcome_without_one() {
        let outcome = |id: &str| DeliveryOutcome {
            version: MESSAGE_VERSION,
            delivery_id: id.into(),
            kind: OutcomeKind::RetryScheduled as i32,
            ..Default::default()
        };
        let batch =
            DeliveryOutcomeBatch { version: MESSAGE_VERSION, outcomes: vec![outcome("dlv_1"), outcome("dlv_2")] };
        let got = outcomes_of(Some(TYPE_DELIVERY_OUTCOME_BATCH), &batch.encode_to_vec()).unwrap();
        assert_eq!(got.iter().map(|o| o.delivery_id.as_str()).collect::<Vec<_>>(), ["dlv_1", "dlv_2"]);
        assert_eq!(outcomes_of(None, &outcome("dlv_3").encode_to_vec()).unwrap()[0].delivery_id, "dlv_3");
        let one = outcomes_of(Some(TYPE_DELIVERY_OUTCOME), &outcome("dlv_4").encode_to_vec()).unwrap();
        assert_eq!(one.len(), 1);
        let newer = DeliveryOutcome { version: MESSAGE_VERSION + 1, ..outcome("dlv_5") };
        assert!(matches!(outcomes_of(None, &newer.encode_to_vec()), Err(Unreadable::Version(_))));
        let mixed = DeliveryOutcomeBatch {
            version: MESSAGE_VERSION,
            outcomes: vec![outcome("dlv_6"), DeliveryOutcome { version: 9, ..outcome("dlv_7") }],
        };
        let read = outcomes_of(Some(TYPE_DELIVERY_OUTCOME_BATCH), &mixed.encode_to_vec());
        assert!(matches!(read, Err(Unreadable::Version(9))));
        assert!(outcomes_of(Some(TYPE_DELIVERY_OUTCOME_BATCH), b"\xff\xff\xff").is_err());
    }
}
