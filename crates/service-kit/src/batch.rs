//! Group commit: the writes of many concurrent callers in one transaction.
//!
//! A [`Batcher`] runs a few writer tasks. Each takes whatever callers have
//! queued since its last write (at least one item, at most `max_batch`),
//! writes them together and answers each caller. Nothing waits for a batch
//! to fill: under light load every item is written alone and at once; under
//! load, items queue while a transaction commits and the next one takes
//! them all, so statements and fsyncs per item fall as the load rises.
//!
//! Writes whose callers are not waiting on a user (a worker recording the
//! attempt it has already delivered) may instead linger: after the first
//! item a writer waits a few milliseconds for company, so that even a light
//! steady load shares statements.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Mutex};

type Job<T, R> = (T, oneshot::Sender<R>);

/// Why a batch's shared work failed, handed to each of its items: what was
/// being done, with the cause (and its chain) as the source.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what}")]
pub struct BatchFailed {
    pub what: &'static str,
    #[source]
    pub cause: Arc<dyn std::error::Error + Send + Sync>,
}

impl BatchFailed {
    pub fn new(what: &'static str, cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self { what, cause: Arc::from(cause.into()) }
    }

    /// What failed and its whole chain of causes, for a log line.
    pub fn report(&self) -> String {
        let mut text = self.what.to_owned();
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&*self.cause);
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        text
    }
}

pub struct Batcher<T, R> {
    tx: mpsc::Sender<Job<T, R>>,
}

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    /// Starts `writers` writer tasks on the current Tokio runtime. `write`
    /// gets a batch and returns one result per item, in order.
    pub fn spawn<F, Fut>(writers: usize, max_batch: usize, write: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<R>> + Send + 'static,
    {
        Self::spawn_lingering(writers, max_batch, Duration::ZERO, write)
    }

    /// Like [`Batcher::spawn`], but a writer holding fewer than `max_batch`
    /// items waits up to `linger` after the first for more to arrive.
    pub fn spawn_lingering<F, Fut>(writers: usize, max_batch: usize, linger: Duration, write: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<R>> + Send + 'static,
    {
        let max_batch = max_batch.max(1);
        let (tx, rx) = mpsc::channel::<Job<T, R>>(max_batch * writers.max(1) * 2);
        let rx = Arc::new(Mutex::new(rx));
        let write = Arc::new(write);
        for _ in 0..writers.max(1) {
            let rx = rx.clone();
            let write = write.clone();
            tokio::spawn(async move {
                loop {
                    let mut jobs = Vec::with_capacity(max_batch);
                    {
                        let mut rx = rx.lock().await;
                        match rx.recv().await {
                            Some(job) => jobs.push(job),
                            None => return,
                        }
                        while jobs.len() < max_batch {
                            match rx.try_recv() {
                                Ok(job) => jobs.push(job),
                                Err(_) => break,
                            }
                        }
                        if jobs.len() < max_batch && !linger.is_zero() {
                            let until = tokio::time::Instant::now() + linger;
                            while jobs.len() < max_batch {
                                match tokio::time::timeout_at(until, rx.recv()).await {
                                    Ok(Some(job)) => jobs.push(job),
                                    Ok(None) | Err(_) => break,
                                }
                            }
                        }
                    }
                    let (items, replies): (Vec<T>, Vec<oneshot::Sender<R>>) = jobs.into_iter().unzip();
                    let results = write(items).await;
                    debug_assert_eq!(results.len(), replies.len(), "one result per item");
                    for (reply, result) in replies.into_iter().zip(results) {
                        // A caller that went away (a dropped request) no longer needs its answer.
                        let _ = reply.send(result);
                    }
                }
            });
        }
        Self { tx }
    }

    /// Queues `item` and waits for its result; None if the writers are gone.
    pub async fn submit(&self, item: T) -> Option<R> {
        let (reply, answer) = oneshot::channel();
        self.tx.send((item, reply)).await.ok()?;
        answer.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_caller_gets_its_own_result_and_batches_form_while_one_is_written() {
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let (seen, held) = (sizes.clone(), gate.clone());
        let b = Arc::new(Batcher::spawn(1, 16, move |items: Vec<u32>| {
            let gated = {
                let mut seen = seen.lock().unwrap();
                seen.push(items.len());
                seen.len() == 2
            };
            let held = held.clone();
            async move {
                // The second write stays open until every caller has queued.
                if gated {
                    held.acquire().await.unwrap().forget();
                }
                items.into_iter().map(|i| i * 2).collect::<Vec<_>>()
            }
        }));
        // Alone, an item is written at once, without waiting for company.
        assert_eq!(b.submit(1000).await, Some(2000));
        let calls: Vec<_> = (0..100u32)
            .map(|i| {
                let b = b.clone();
                tokio::spawn(async move { (i, b.submit(i).await) })
            })
            .collect();
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        gate.add_permits(1);
        for call in calls {
            let (i, got) = call.await.unwrap();
            assert_eq!(got, Some(i * 2));
        }
        let sizes = sizes.lock().unwrap();
        assert_eq!(sizes[0], 1);
        assert_eq!(sizes[1..].iter().sum::<usize>(), 100);
        assert!(sizes.iter().all(|&n| (1..=16).contains(&n)), "batches stay within the limit: {sizes:?}");
        assert!(sizes[2..].contains(&16), "callers queued behind a write share the next: {sizes:?}");
    }

    #[tokio::test]
    async fn a_lingering_writer_waits_for_company_but_not_past_a_full_batch() {
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = sizes.clone();
        // A linger far longer than the test: only a full batch ends it early.
        let b = Arc::new(Batcher::spawn_lingering(1, 2, Duration::from_secs(600), move |items: Vec<u32>| {
            seen.lock().unwrap().push(items.len());
            async move { items }
        }));
        let first = tokio::spawn({
            let b = b.clone();
            async move { b.submit(1).await }
        });
        // Let the writer take the first item and start waiting.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert!(sizes.lock().unwrap().is_empty(), "a lone item waits for company");
        assert_eq!(b.submit(2).await, Some(2));
        assert_eq!(first.await.unwrap(), Some(1));
        assert_eq!(*sizes.lock().unwrap(), vec![2], "both items share one write");

        // A short linger still writes a lone item once it has passed.
        let b = Batcher::spawn_lingering(1, 8, Duration::from_millis(20), |items: Vec<u32>| async move { items });
        assert_eq!(b.submit(7).await, Some(7));
    }
}
