//! When a CronJob is due: its schedule read in its time zone (UTC when it names
//! none), the most recent time it should have started since it last did, how many
//! times it missed, and the next time it will be due.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use rkube_api::cron::Schedule;

/// More missed starts than this are reported (upstream's threshold).
pub const TOO_MANY_MISSED: u64 = 100;

/// A schedule in a time zone.
pub struct ZonedSchedule {
    pub schedule: Schedule,
    pub tz: TimeZone,
}

impl ZonedSchedule {
    /// The first time strictly after `t` the schedule fires.
    pub fn next(&self, t: Timestamp) -> Option<Timestamp> {
        // The schedule is read on the wall clock of the zone: step through civil
        // time and map each hit back to an instant (a time in a DST gap is read
        // with the offset before the gap, as `compatible` picks).
        let local = t.to_zoned(self.tz.clone()).datetime();
        let local_secs = local.to_zoned(TimeZone::UTC).ok()?.timestamp().as_second();
        let mut after = local_secs;
        loop {
            let next_local = self.schedule.next_after(after)?;
            let civil = Timestamp::from_second(next_local)
                .ok()?
                .to_zoned(TimeZone::UTC)
                .datetime();
            let at = self
                .tz
                .to_ambiguous_zoned(civil)
                .compatible()
                .ok()?
                .timestamp();
            if at > t {
                return Some(at);
            }
            // A repeated hour (DST ending) maps back before `t`: look further.
            after = next_local;
        }
    }
}

/// The most recent start due in `(earliest, now]` and how many starts were due in
/// it (an estimate past a few hundred, as upstream's).
pub fn most_recent(
    s: &ZonedSchedule,
    earliest: Timestamp,
    now: Timestamp,
) -> (Option<Timestamp>, u64) {
    let Some(t1) = s.next(earliest) else {
        return (None, 0);
    };
    if t1 > now {
        return (None, 0);
    }
    let Some(t2) = s.next(t1) else {
        return (Some(t1), 1);
    };
    if t2 > now {
        return (Some(t1), 1);
    }
    // Jump close to `now` by the interval between the first two starts, then walk.
    let interval = t2.duration_since(t1).as_secs().max(1);
    let elapsed = now.duration_since(t1).as_secs();
    let missed = (elapsed / interval) as u64 + 1;
    let mut t = t1;
    if missed > 2 {
        let skip = SignedDuration::from_secs(interval * (missed as i64 - 2));
        if let Ok(jumped) = t1.checked_add(skip)
            && jumped > t1
        {
            t = jumped
                .checked_sub(SignedDuration::from_secs(1))
                .unwrap_or(jumped);
        }
    }
    // The jump may overshoot the last start of an irregular schedule (a weekend):
    // then walk from the first.
    let recent = last_before(s, t, now).or_else(|| last_before(s, t1, now));
    (recent.or(Some(t1)), missed)
}

/// The last start in `(from, now]`, walking at most a hundred thousand starts.
fn last_before(s: &ZonedSchedule, mut from: Timestamp, now: Timestamp) -> Option<Timestamp> {
    let mut recent = None;
    for _ in 0..100_000 {
        match s.next(from) {
            Some(next) if next <= now => {
                recent = Some(next);
                from = next;
            }
            _ => break,
        }
    }
    recent
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zoned(spec: &str, tz: &str) -> ZonedSchedule {
        ZonedSchedule {
            schedule: Schedule::parse(spec).unwrap(),
            tz: TimeZone::get(tz).unwrap(),
        }
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn schedules_fire_on_the_wall_clock_of_their_zone() {
        let utc = zoned("30 9 * * *", "UTC");
        assert_eq!(
            utc.next(ts("2025-03-01T00:00:00Z")).unwrap(),
            ts("2025-03-01T09:30:00Z")
        );
        // 09:30 in Seoul (UTC+9) is 00:30 UTC.
        let seoul = zoned("30 9 * * *", "Asia/Seoul");
        assert_eq!(
            seoul.next(ts("2025-03-01T00:00:00Z")).unwrap(),
            ts("2025-03-01T00:30:00Z")
        );
        // New York skips 02:00-03:00 on 2025-03-09: a 02:30 start is read with the
        // offset before the gap, 03:30 EDT (as Go's time.Date reads it).
        let ny = zoned("30 2 * * *", "America/New_York");
        assert_eq!(
            ny.next(ts("2025-03-09T05:00:00Z")).unwrap(),
            ts("2025-03-09T07:30:00Z")
        );
    }

    #[test]
    fn the_most_recent_missed_start_and_the_count() {
        let every_min = zoned("* * * * *", "UTC");
        let (t, n) = most_recent(
            &every_min,
            ts("2025-01-01T00:00:00Z"),
            ts("2025-01-01T00:00:30Z"),
        );
        assert_eq!((t, n), (None, 0));
        let (t, n) = most_recent(
            &every_min,
            ts("2025-01-01T00:00:00Z"),
            ts("2025-01-01T00:01:30Z"),
        );
        assert_eq!((t, n), (Some(ts("2025-01-01T00:01:00Z")), 1));
        let (t, n) = most_recent(
            &every_min,
            ts("2025-01-01T00:00:00Z"),
            ts("2025-01-01T03:00:10Z"),
        );
        assert_eq!(t, Some(ts("2025-01-01T03:00:00Z")));
        assert_eq!(n, 180);
        // An irregular schedule lands on its real last start.
        let weekdays = zoned("30 6-16/4 * * 1-5", "UTC");
        let (t, _) = most_recent(
            &weekdays,
            ts("2025-01-01T00:00:00Z"),
            ts("2025-01-13T12:00:00Z"),
        );
        assert_eq!(t, Some(ts("2025-01-13T10:30:00Z")));
        // Over a weekend the estimate jumps past Friday's last start; it is found.
        let (t, _) = most_recent(
            &weekdays,
            ts("2025-01-06T05:00:00Z"),
            ts("2025-01-12T12:00:00Z"),
        );
        assert_eq!(t, Some(ts("2025-01-10T14:30:00Z")));
    }
}
