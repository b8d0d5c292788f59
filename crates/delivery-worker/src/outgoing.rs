//! What a worker hands on after an attempt, gathered for a few milliseconds
//! and published several to a message: retries and parked tasks bound for
//! the same delay queue, and outcomes of one kind for alerting.
//!
//! Alone, each failure would cost three messages (a confirmed publish to a
//! delay queue, the hop from there back to the work queue, a confirmed
//! outcome): broker work per failure, in a retry storm, on the cores the
//! fresh deliveries need. Gathered, a burst's failures cost a few messages.
//!
//! Each caller still waits for the confirm of the message that carries its
//! item before it acknowledges its own, so a crash loses nothing; a failed
//! attempt's message is acknowledged, and its retry leaves, up to [`LINGER`]
//! later.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use hookline_broker::messages::{DeliveryOutcome, DeliveryTask};
use hookline_broker::publisher::Broker;
use hookline_service_kit::batch::{BatchFailed, Batcher};

/// How long the first item of a batch waits for others.
pub const LINGER: Duration = Duration::from_millis(50);
/// The most items one batch gathers.
const MAX_ITEMS: usize = 128;
/// Batches being published at once.
const WRITERS: usize = 2;

/// Tasks bound for a delay queue: a retry, or a task parked over its endpoint's limits.
pub type Delayed = Batcher<(DeliveryTask, Duration), Result<(), BatchFailed>>;
/// Outcomes for alerting.
pub type Outcomes = Batcher<DeliveryOutcome, Result<(), BatchFailed>>;

pub fn delayed(broker: Arc<Broker>) -> Delayed {
    Batcher::spawn_lingering(WRITERS, MAX_ITEMS, LINGER, move |items: Vec<(DeliveryTask, Duration)>| {
        let broker = broker.clone();
        async move {
            let groups = group(&items, |(_, delay)| delay.as_millis());
            let published = join_all(groups.iter().map(|members| {
                let tasks: Vec<DeliveryTask> = members.iter().map(|&i| items[i].0.clone()).collect();
                let delay = items[members[0]].1;
                let broker = broker.clone();
                async move { broker.publish_delayed_batch(&tasks, delay).await }
            }))
            .await;
            spread(items.len(), &groups, published)
        }
    })
}

pub fn outcomes(broker: Arc<Broker>) -> Outcomes {
    Batcher::spawn_lingering(WRITERS, MAX_ITEMS, LINGER, move |items: Vec<DeliveryOutcome>| {
        let broker = broker.clone();
        async move {
            let groups = group(&items, |o| o.kind);
            let published = join_all(groups.iter().map(|members| {
                let outcomes: Vec<DeliveryOutcome> = members.iter().map(|&i| items[i].clone()).collect();
                let broker = broker.clone();
                async move { broker.publish_outcomes(&outcomes).await }
            }))
            .await;
            spread(items.len(), &groups, published)
        }
    })
}

/// The positions of `items` grouped by `key`, groups in order of first
/// appearance and positions in order within each.
fn group<T, K: PartialEq>(items: &[T], key: impl Fn(&T) -> K) -> Vec<Vec<usize>> {
    let mut keys: Vec<K> = Vec::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let k = key(item);
        match keys.iter().position(|seen| *seen == k) {
            Some(g) => groups[g].push(i),
            None => {
                keys.push(k);
                groups.push(vec![i]);
            }
        }
    }
    groups
}

/// Each item's result: that of the message its group went in.
fn spread(n: usize, groups: &[Vec<usize>], published: Vec<anyhow::Result<()>>) -> Vec<Result<(), BatchFailed>> {
    let mut results = vec![Ok(()); n];
    for (members, result) in groups.iter().zip(published) {
        if let Err(e) = result {
            let e = BatchFailed::new("publishing", e);
            for &i in members {
                results[i] = Err(e.clone());
            }
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_group_by_key_in_order_of_first_appearance() {
        let delays = [1000, 2000, 1000, 4000, 2000, 1000];
        assert_eq!(group(&delays, |d| *d), vec![vec![0, 2, 5], vec![1, 4], vec![3]]);
        assert!(group(&[] as &[u32], |d| *d).is_empty());
    }

    #[test]
    fn a_failed_message_fails_only_the_items_it_carried() {
        let groups = vec![vec![0, 2], vec![1]];
        let results = spread(3, &groups, vec![Ok(()), Err(anyhow::anyhow!("nack"))]);
        let reports: Vec<Option<String>> = results.iter().map(|r| r.as_ref().err().map(BatchFailed::report)).collect();
        assert_eq!(reports, vec![None, Some("publishing: nack".to_owned()), None]);
    }
}
