//! An in-process work queue whose depth is an autoscaling signal: the
//! producer pushes jobs, the replicas of a worker group pop them, and a
//! queue-backlog policy sizes the group on what waits.

use std::{
    collections::VecDeque,
    fmt,
    sync::{Arc, Mutex, MutexGuard},
};

use async_trait::async_trait;
use tokio::sync::Notify;

use super::{MetricSource, Reading};

/// A multi-producer, multi-consumer FIFO of jobs, cheap to clone, with no
/// bound (the backlog is what the autoscaler reacts to; bound the producer
/// if it must be). As a [`MetricSource`] it reads its length.
///
/// ```
/// use orch_core::autoscale::WorkQueue;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let queue = WorkQueue::new();
/// queue.push("resize image 7");
/// assert_eq!(queue.len(), 1);
/// assert_eq!(queue.pop().await, "resize image 7");
/// # }
/// ```
pub struct WorkQueue<T> {
    shared: Arc<Shared<T>>,
}

struct Shared<T> {
    jobs: Mutex<VecDeque<T>>,
    pushed: Notify,
}

impl<T> WorkQueue<T> {
    /// An empty queue.
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                jobs: Mutex::new(VecDeque::new()),
                pushed: Notify::new(),
            }),
        }
    }

    fn jobs(&self) -> MutexGuard<'_, VecDeque<T>> {
        // A panic while the lock was held left a whole `VecDeque`; keep it.
        self.shared
            .jobs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a job at the back and wakes one waiting consumer.
    pub fn push(&self, job: T) {
        self.jobs().push_back(job);
        self.shared.pushed.notify_one();
    }

    /// The job at the front, if any, without waiting.
    pub fn try_pop(&self) -> Option<T> {
        self.jobs().pop_front()
    }

    /// The job at the front, waiting for one if the queue is empty.
    /// Cancel-safe: a dropped `pop` takes no job.
    pub async fn pop(&self) -> T {
        loop {
            // Registered before looking, so a push between the look and
            // the wait is not missed (`notify_one` also leaves a permit).
            let pushed = self.shared.pushed.notified();
            if let Some(job) = self.try_pop() {
                return job;
            }
            pushed.await;
        }
    }

    /// Jobs waiting.
    pub fn len(&self) -> usize {
        self.jobs().len()
    }

    /// Whether no job waits.
    pub fn is_empty(&self) -> bool {
        self.jobs().is_empty()
    }
}

impl<T> Default for WorkQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for WorkQueue<T> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> fmt::Debug for WorkQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkQueue").field("len", &self.len()).finish()
    }
}

#[async_trait]
impl<T: Send> MetricSource for WorkQueue<T> {
    async fn sample(&self) -> Reading {
        Reading::now(self.len() as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_waiting_consumer_gets_the_next_push() {
        let queue = WorkQueue::new();
        let consumer = tokio::spawn({
            let queue = queue.clone();
            async move { queue.pop().await }
        });
        tokio::task::yield_now().await;
        queue.push(7);
        assert_eq!(consumer.await.unwrap(), 7);
        assert!(queue.is_empty());
    }

    #[tokio::test]
    async fn the_depth_is_the_reading() {
        let queue = WorkQueue::new();
        queue.push(1);
        queue.push(2);
        let Reading::Sample { value, .. } = queue.sample().await else {
            panic!("a queue always has a depth")
        };
        assert_eq!(value, 2.0);
    }
}
