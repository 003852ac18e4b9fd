//! A reader's acknowledgements, sent together (group commit): while one
//! `XACK` is in flight, the events finished meanwhile wait and go in the
//! next one. Under load one round trip acknowledges many events; an event
//! finished alone waits for nobody.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Acknowledges a batch of entry ids; true if Redis did.
pub type Flush = Arc<dyn Fn(Vec<String>) -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

pub struct Acks {
    flush: Flush,
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<(String, oneshot::Sender<bool>)>,
    /// A flushing task is running: it takes whatever waits when its XACK returns.
    flushing: bool,
}

impl Acks {
    pub fn new(flush: Flush) -> Arc<Acks> {
        Arc::new(Acks { flush, queue: Mutex::default() })
    }

    /// Acknowledges `id`; true once Redis has (false: it did not answer,
    /// and the event will be delivered again).
    pub async fn ack(self: &Arc<Self>, id: &str) -> bool {
        let (tx, rx) = oneshot::channel();
        let lead = {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.waiting.push((id.to_string(), tx));
            !std::mem::replace(&mut q.flushing, true)
        };
        if lead {
            tokio::spawn(self.clone().flush_all());
        }
        rx.await.unwrap_or(false)
    }

    async fn flush_all(self: Arc<Self>) {
        let mut unwinding = Unwinding { acks: &self, armed: true };
        loop {
            let batch = {
                let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                if q.waiting.is_empty() {
                    q.flushing = false;
                    unwinding.armed = false;
                    return;
                }
                std::mem::take(&mut q.waiting)
            };
            let (ids, done): (Vec<String>, Vec<_>) = batch.into_iter().unzip();
            let ok = (self.flush)(ids).await;
            for tx in done {
                let _ = tx.send(ok);
            }
        }
    }
}

/// Ends a flushing task that did not end normally (its flush panicked, or
/// the runtime dropped it): fails what waits, so each event is delivered
/// again, and lets the next ack start a new flushing task.
struct Unwinding<'a> {
    acks: &'a Acks,
    armed: bool,
}

impl Drop for Unwinding<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut q = self.acks.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.flushing = false;
            for (_, tx) in q.waiting.drain(..) {
                let _ = tx.send(false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acks_that_arrive_during_a_flush_go_together_in_the_next() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let seen = batches.clone();
        let acks = Acks::new(Arc::new(move |ids: Vec<String>| {
            let seen = seen.clone();
            Box::pin(async move {
                seen.lock().unwrap().push(ids.len());
                tokio::time::sleep(Duration::from_millis(20)).await;
                true
            })
        }));
        // Alone: flushed at once, by itself.
        assert!(acks.ack("1-0").await);
        assert_eq!(*batches.lock().unwrap(), vec![1]);
        // Fifty at once: every one acknowledged, in far fewer round trips.
        let all: Vec<_> = (0..50)
            .map(|i| {
                let acks = acks.clone();
                tokio::spawn(async move { acks.ack(&format!("{i}-1")).await })
            })
            .collect();
        for a in all {
            assert!(a.await.unwrap());
        }
        let batches = batches.lock().unwrap();
        assert_eq!(batches.iter().sum::<usize>(), 51);
        assert!(batches.len() <= 4, "{batches:?}");
    }

    #[tokio::test]
    async fn a_flush_that_panics_fails_its_acks_and_the_next_flush_runs() {
        let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let seen = calls.clone();
        let acks = Acks::new(Arc::new(move |_ids: Vec<String>| {
            let first = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
            Box::pin(async move {
                assert!(!first, "the first flush panics");
                true
            })
        }));
        assert!(!acks.ack("1-0").await, "its flush panicked");
        assert!(acks.ack("2-0").await, "a new flushing task took the next ack");
    }

    #[tokio::test]
    async fn a_failed_flush_fails_every_ack_in_it() {
        let acks = Acks::new(Arc::new(|_ids: Vec<String>| Box::pin(async { false })));
        assert!(!acks.ack("1-0").await);
        assert!(!acks.ack("2-0").await, "a later batch is tried again, and fails too");
    }
}
