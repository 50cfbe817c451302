//! The work queue every controller runs on, with upstream's guarantees: a key is
//! queued at most once, never handed to two workers at the same time, and a key
//! added while it is being processed is processed again afterwards. Failed keys come
//! back after an exponential backoff.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// The first retry delay of a failing key, doubled on each failure.
const BASE_DELAY: Duration = Duration::from_millis(5);
/// The longest retry delay.
const MAX_DELAY: Duration = Duration::from_secs(300);

/// A de-duplicating queue of keys (upstream's rate-limited delaying work queue).
pub struct WorkQueue<T> {
    state: Arc<Mutex<State<T>>>,
    notify: Arc<Notify>,
}

impl<T> Clone for WorkQueue<T> {
    fn clone(&self) -> Self {
        WorkQueue {
            state: self.state.clone(),
            notify: self.notify.clone(),
        }
    }
}

struct State<T> {
    queue: VecDeque<T>,
    /// Keys waiting to be processed (in `queue`, or re-added while processing).
    dirty: HashSet<T>,
    processing: HashSet<T>,
    failures: HashMap<T, u32>,
    /// The deadline of each delayed add, so a later duplicate does not postpone it.
    waiting: HashMap<T, Instant>,
    shut_down: bool,
}

impl<T> Default for WorkQueue<T>
where
    T: Clone + Eq + Hash + Send + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<T> WorkQueue<T>
where
    T: Clone + Eq + Hash + Send + 'static,
{
    pub fn new() -> Self {
        WorkQueue {
            state: Arc::new(Mutex::new(State {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                failures: HashMap::new(),
                waiting: HashMap::new(),
                shut_down: false,
            })),
            notify: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().expect("work queue lock")
    }

    /// Queues a key now.
    pub fn add(&self, key: T) {
        let mut s = self.lock();
        if s.shut_down || !s.dirty.insert(key.clone()) {
            return;
        }
        if !s.processing.contains(&key) {
            s.queue.push_back(key);
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Queues a key once `delay` has passed (at once for a zero delay). A key
    /// already waiting for an earlier time keeps that time.
    pub fn add_after(&self, key: T, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let deadline = Instant::now() + delay;
        {
            let mut s = self.lock();
            if s.shut_down {
                return;
            }
            match s.waiting.get(&key) {
                Some(at) if *at <= deadline => return,
                _ => {
                    s.waiting.insert(key.clone(), deadline);
                }
            }
        }
        let weak: Weak<Mutex<State<T>>> = Arc::downgrade(&self.state);
        let notify = self.notify.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(deadline).await;
            let Some(state) = weak.upgrade() else { return };
            let queue = WorkQueue { state, notify };
            let due = {
                let mut s = queue.lock();
                if s.waiting.get(&key) == Some(&deadline) {
                    s.waiting.remove(&key);
                    true
                } else {
                    false
                }
            };
            if due {
                queue.add(key);
            }
        });
    }

    /// Queues a key after its backoff, which doubles with each failure.
    pub fn add_rate_limited(&self, key: T) {
        let n = {
            let mut s = self.lock();
            let n = s.failures.entry(key.clone()).or_insert(0);
            *n += 1;
            *n
        };
        self.add_after(key, backoff(n));
    }

    /// Forgets the failures of a key (it succeeded).
    pub fn forget(&self, key: &T) {
        self.lock().failures.remove(key);
    }

    /// How many times in a row a key failed.
    pub fn failures(&self, key: &T) -> u32 {
        self.lock().failures.get(key).copied().unwrap_or(0)
    }

    /// The next key to process; `None` once the queue is shut down.
    pub async fn get(&self) -> Option<T> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.lock();
                if let Some(key) = s.queue.pop_front() {
                    s.dirty.remove(&key);
                    s.processing.insert(key.clone());
                    // Other workers may be waiting too.
                    if !s.queue.is_empty() {
                        self.notify.notify_one();
                    }
                    return Some(key);
                }
                if s.shut_down {
                    self.notify.notify_one();
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Marks a key processed; one re-added meanwhile is queued again.
    pub fn done(&self, key: &T) {
        let mut s = self.lock();
        s.processing.remove(key);
        if s.dirty.contains(key) {
            s.queue.push_back(key.clone());
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Stops handing out keys; workers return.
    pub fn shut_down(&self) {
        self.lock().shut_down = true;
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs `workers` tasks that take keys and call `sync`. `Ok(Some(d))` asks for the
    /// key again after `d`; an error retries it with backoff. Returns when the queue
    /// is shut down.
    pub async fn run<F, Fut, E>(&self, workers: usize, name: &'static str, sync: F)
    where
        F: Fn(T) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<Duration>, E>> + Send,
        E: std::fmt::Display,
        T: std::fmt::Debug + Sync,
    {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..workers.max(1) {
            let queue = self.clone();
            let sync = sync.clone();
            tasks.spawn(async move {
                while let Some(key) = queue.get().await {
                    match sync(key.clone()).await {
                        Ok(after) => {
                            queue.forget(&key);
                            if let Some(d) = after {
                                queue.add_after(key.clone(), d);
                            }
                        }
                        Err(e) => {
                            let n = queue.failures(&key);
                            if n < 5 {
                                tracing::debug!("{name}: syncing {key:?}: {e}");
                            } else {
                                tracing::warn!("{name}: syncing {key:?} (failure {n}): {e}");
                            }
                            queue.add_rate_limited(key.clone());
                        }
                    }
                    queue.done(&key);
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    }
}

/// The delay before the `n`th retry (n ≥ 1).
pub fn backoff(n: u32) -> Duration {
    let exp = n.saturating_sub(1).min(30);
    BASE_DELAY
        .checked_mul(1u32 << exp)
        .unwrap_or(MAX_DELAY)
        .min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_key_is_queued_once() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        assert_eq!(q.get().await, Some("a"));
        assert_eq!(q.get().await, Some("b"));
    }

    #[tokio::test]
    async fn a_key_added_while_processing_comes_back_after_done() {
        let q = WorkQueue::new();
        q.add("a");
        let k = q.get().await.unwrap();
        q.add("a");
        // Not handed out again while the first worker holds it.
        assert!(q.is_empty());
        q.done(&k);
        assert_eq!(q.get().await, Some("a"));
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_adds_keep_the_earliest_deadline() {
        let q = WorkQueue::new();
        q.add_after("a", Duration::from_secs(1));
        q.add_after("a", Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        assert_eq!(backoff(1), Duration::from_millis(5));
        assert_eq!(backoff(2), Duration::from_millis(10));
        assert_eq!(backoff(4), Duration::from_millis(40));
        assert_eq!(backoff(40), MAX_DELAY);
    }

    #[tokio::test]
    async fn workers_never_sync_one_key_concurrently() {
        let q: WorkQueue<u32> = WorkQueue::new();
        let running = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(AtomicUsize::new(0));
        let (r, s) = (running.clone(), seen.clone());
        let runner = {
            let q = q.clone();
            tokio::spawn(async move {
                q.run(4, "test", move |_k: u32| {
                    let (r, s) = (r.clone(), s.clone());
                    async move {
                        assert_eq!(r.fetch_add(1, Ordering::SeqCst), 0, "two syncs at once");
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        r.fetch_sub(1, Ordering::SeqCst);
                        s.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, std::convert::Infallible>(None)
                    }
                })
                .await
            })
        };
        for _ in 0..20 {
            q.add(7);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        q.shut_down();
        runner.await.unwrap();
        assert!(seen.load(Ordering::SeqCst) >= 2);
    }
}
