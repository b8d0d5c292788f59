//! Broker messages, generated from `proto-schemas/broker/hookline.proto`.

#[allow(clippy::all, missing_docs)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/hookline.broker.v1.rs"));
}

pub use generated::{DeliveryOutcome, DeliveryTask, OutcomeKind, TaskReason};

/// The message format version this build reads and writes.
pub const MESSAGE_VERSION: u32 = 1;

pub const CONTENT_TYPE: &str = "application/x-protobuf";
pub const TYPE_DELIVERY_TASK: &str = "hookline.broker.v1.DeliveryTask";
pub const TYPE_DELIVERY_OUTCOME: &str = "hookline.broker.v1.DeliveryOutcome";

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
}
