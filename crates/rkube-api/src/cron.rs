//! Cron schedules as CronJobs write them: five fields (minute hour day-of-month month
//! day-of-week) with lists, ranges, steps and names, or a `@daily`-style macro.

/// A parse failure, shown to the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CronError(pub String);

/// A parsed schedule: the allowed values of each field as bit sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Whether day-of-month / day-of-week were `*` (cron's OR rule needs to know).
    days_star: bool,
    weekdays_star: bool,
}

const MONTHS: &[&str] = &[
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn parse_field(
    field: &str,
    min: u32,
    max: u32,
    names: &[&str],
    name_base: u32,
) -> Result<(u64, bool), CronError> {
    let mut bits = 0u64;
    let star = field == "*" || field == "?";
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().map_err(|_| {
                    CronError(format!("failed to parse int from {s}: invalid syntax"))
                })?;
                if step == 0 {
                    return Err(CronError(format!(
                        "step of range should be a positive number: {part}"
                    )));
                }
                (r, step)
            }
            None => (part, 1),
        };
        let value = |s: &str| -> Result<u32, CronError> {
            if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
                return Ok(i as u32 + name_base);
            }
            s.parse::<u32>()
                .map_err(|_| CronError(format!("failed to parse int from {s}: invalid syntax")))
        };
        let (lo, hi) = if range == "*" || range == "?" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            if part.contains('/') { (v, max) } else { (v, v) }
        };
        if lo < min || hi > max || lo > hi {
            return Err(CronError(format!(
                "end of range ({hi}) above maximum ({max}): {part}"
            )));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, star))
}

impl Schedule {
    pub fn parse(spec: &str) -> Result<Self, CronError> {
        let spec = spec.trim();
        if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
            return Err(CronError(
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into(),
            ));
        }
        let expanded = match spec {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            s if s.starts_with('@') => {
                return Err(CronError(format!("unrecognized descriptor: {s}")));
            }
            s => s,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(CronError(format!(
                "expected exactly 5 fields, found {}: [{}]",
                fields.len(),
                fields.join(" ")
            )));
        }
        let (minutes, _) = parse_field(fields[0], 0, 59, &[], 0)?;
        let (hours, _) = parse_field(fields[1], 0, 23, &[], 0)?;
        let (days, days_star) = parse_field(fields[2], 1, 31, &[], 0)?;
        let (months, _) = parse_field(fields[3], 1, 12, MONTHS, 1)?;
        let (mut weekdays, weekdays_star) = parse_field(fields[4], 0, 7, DAYS, 0)?;
        // 7 is Sunday too.
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        Ok(Schedule {
            minutes,
            hours,
            days,
            months,
            weekdays,
            days_star,
            weekdays_star,
        })
    }

    fn day_matches(&self, day: u32, weekday: u32) -> bool {
        let d = self.days & (1 << day) != 0;
        let w = self.weekdays & (1 << weekday) != 0;
        // Standard cron: if both fields are restricted, either may match.
        if self.days_star || self.weekdays_star {
            d && w
        } else {
            d || w
        }
    }

    /// The first time strictly after `after` (Unix seconds, UTC) that the schedule fires.
    pub fn next_after(&self, after: i64) -> Option<i64> {
        // Start at the next whole minute.
        let mut t = (after.div_euclid(60) + 1) * 60;
        // Five years is enough for any satisfiable schedule (Feb 29 included).
        let limit = t + 5 * 366 * 86400;
        while t < limit {
            let (y, mo, d, h, mi, wd) = civil(t);
            if self.months & (1 << mo) == 0 {
                // Jump to the first day of the next month.
                let (ny, nm) = if mo == 12 { (y + 1, 1) } else { (y, mo + 1) };
                t = days_from_civil(ny, nm, 1) * 86400;
                continue;
            }
            if !self.day_matches(d, wd) {
                t = (t.div_euclid(86400) + 1) * 86400;
                continue;
            }
            if self.hours & (1 << h) == 0 {
                t = (t.div_euclid(3600) + 1) * 3600;
                continue;
            }
            if self.minutes & (1 << mi) == 0 {
                t += 60;
                continue;
            }
            return Some(t);
        }
        None
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// (year, month, day, hour, minute, weekday with Sunday = 0) of a Unix time.
fn civil(t: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = t.div_euclid(86400);
    let secs = t.rem_euclid(86400);
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    let wd = (days + 4).rem_euclid(7) as u32;
    (
        y,
        m,
        d,
        (secs / 3600) as u32,
        ((secs % 3600) / 60) as u32,
        wd,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-26T20:52:02Z, a Thursday.
    const T: i64 = 1_795_726_322;

    #[test]
    fn civil_round_trip() {
        let (y, m, d, h, mi, wd) = civil(T);
        assert_eq!((y, m, d, h, mi, wd), (2026, 11, 26, 20, 52, 4));
        assert_eq!(days_from_civil(2026, 11, 26), T.div_euclid(86400));
    }

    #[test]
    fn next_times() {
        let every_minute = Schedule::parse("* * * * *").unwrap();
        assert_eq!(every_minute.next_after(T), Some(T + 58));
        let daily = Schedule::parse("@daily").unwrap();
        assert_eq!(civil(daily.next_after(T).unwrap()), (2026, 11, 27, 0, 0, 5));
        let every5h = Schedule::parse("* */5 * * *").unwrap();
        assert_eq!(
            civil(every5h.next_after(T).unwrap()),
            (2026, 11, 26, 20, 53, 4)
        );
        let mondays = Schedule::parse("30 9 * * MON").unwrap();
        assert_eq!(
            civil(mondays.next_after(T).unwrap()),
            (2026, 11, 30, 9, 30, 1)
        );
    }

    #[test]
    fn bad_schedules_are_refused() {
        assert!(Schedule::parse("* * * *").is_err());
        assert!(Schedule::parse("61 * * * *").is_err());
        assert!(Schedule::parse("*/0 * * * *").is_err());
        assert!(Schedule::parse("TZ=UTC * * * * *").is_err());
        assert!(Schedule::parse("@sometimes").is_err());
    }
}
