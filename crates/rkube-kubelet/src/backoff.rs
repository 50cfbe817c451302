//! Exponential back-off per key, as upstream's `flowcontrol.Backoff`: CrashLoopBackOff
//! (restarts of a failed container) and ImagePullBackOff use it, 10 s doubling to 5 min.
//!
//! The first failure is retried at once; each later one waits the current delay from
//! the failure, and the delay doubles. A key quiet for twice the maximum starts over.

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;

/// Back-off state of many keys.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: HashMap<String, Entry>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    delay: Duration,
    last_update: Timestamp,
}

/// Upstream's container restart back-off: 10 s doubling up to 300 s.
pub const CRASH_LOOP_INITIAL: Duration = Duration::from_secs(10);
/// See [`CRASH_LOOP_INITIAL`].
pub const CRASH_LOOP_MAX: Duration = Duration::from_secs(300);

fn since(now: Timestamp, then: Timestamp) -> Duration {
    now.duration_since(then)
        .try_into()
        .unwrap_or(Duration::ZERO)
}

impl Backoff {
    /// A back-off starting at `initial`, doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            entries: HashMap::new(),
        }
    }

    /// The container restart back-off.
    pub fn crash_loop() -> Self {
        Self::new(CRASH_LOOP_INITIAL, CRASH_LOOP_MAX)
    }

    fn expired(&self, e: &Entry, now: Timestamp) -> bool {
        since(now, e.last_update) > self.max * 2
    }

    /// Records a retry after the failure at `event_time`: the next delay doubles.
    pub fn next(&mut self, key: &str, event_time: Timestamp) {
        let fresh = Entry {
            delay: self.initial,
            last_update: event_time,
        };
        let e = match self.entries.get(key) {
            Some(e) if !self.expired(e, event_time) => Entry {
                delay: (e.delay * 2).min(self.max),
                last_update: event_time,
            },
            _ => fresh,
        };
        self.entries.insert(key.to_string(), e);
    }

    /// If the failure at `event_time` must still wait at `now`: how long is left,
    /// and the whole delay (for the "back-off 20s" message).
    pub fn wait_left(
        &self,
        key: &str,
        event_time: Timestamp,
        now: Timestamp,
    ) -> Option<(Duration, Duration)> {
        let e = self.entries.get(key)?;
        if self.expired(e, now) {
            return None;
        }
        let passed = since(now, event_time);
        (passed < e.delay).then(|| (e.delay - passed, e.delay))
    }

    /// If the key's last update (the last failure) must still wait at `now`: how long.
    pub fn wait_left_since_update(&self, key: &str, now: Timestamp) -> Option<Duration> {
        let e = self.entries.get(key)?;
        self.wait_left(key, e.last_update, now)
            .map(|(left, _)| left)
    }

    /// The current delay of a key, if it has one.
    pub fn delay(&self, key: &str) -> Option<Duration> {
        self.entries.get(key).map(|e| e.delay)
    }

    /// Forgets a key (the thing succeeded).
    pub fn reset(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Forgets keys that have been quiet for twice the maximum.
    pub fn gc(&mut self, now: Timestamp) {
        let max = self.max;
        self.entries
            .retain(|_, e| since(now, e.last_update) <= max * 2);
    }
}

/// `10s`, `2m40s`, `5m0s` as upstream words back-off delays (Go's duration format).
pub fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{}m{}s", s / 3600, (s % 3600) / 60, s % 60)
    } else if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else if d.subsec_millis() > 0 && s == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    #[test]
    fn first_failure_retries_at_once_then_doubles_to_the_cap() {
        let mut b = Backoff::crash_loop();
        let k = "pod/c";
        // First crash: no entry, restart at once.
        assert_eq!(b.wait_left(k, t(0), t(0)), None);
        b.next(k, t(0));
        // Second crash at 5s: wait 10s from it.
        assert_eq!(
            b.wait_left(k, t(5), t(7)),
            Some((Duration::from_secs(8), Duration::from_secs(10)))
        );
        assert_eq!(b.wait_left(k, t(5), t(15)), None);
        b.next(k, t(5));
        assert_eq!(b.delay(k), Some(Duration::from_secs(20)));
        let mut at = 5;
        for _ in 0..10 {
            at += 1;
            b.next(k, t(at));
        }
        assert_eq!(b.delay(k), Some(CRASH_LOOP_MAX));
        // Quiet for more than twice the cap: starts over.
        b.next(k, t(at + 601));
        assert_eq!(b.delay(k), Some(CRASH_LOOP_INITIAL));
        b.gc(t(at + 2000));
        assert_eq!(b.delay(k), None);
    }

    #[test]
    fn durations_read_like_upstream() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(160)), "2m40s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
    }
}
