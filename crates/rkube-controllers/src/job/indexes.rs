//! Completion indexes of Indexed Jobs as `status.completedIndexes` writes them:
//! sorted, with consecutive runs joined (`1,3-5,7`), and the index a pod
//! carries in its annotation.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Pod;

/// The annotation (and label) with a pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// The indexes in a `completedIndexes` string below `completions`; malformed
/// parts are skipped.
pub fn parse(s: &str, completions: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
            None => (part.parse::<i32>(), part.parse::<i32>()),
        };
        let (Ok(lo), Ok(hi)) = (lo, hi) else {
            continue;
        };
        for i in lo.max(0)..=hi.min(completions - 1) {
            out.insert(i);
        }
    }
    out
}

/// The string form: ascending, runs as `a-b`.
pub fn format(set: &BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end = iter.next().unwrap_or(end);
        }
        parts.push(if end == start {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

/// The completion index of a pod, if it has a valid one.
pub fn of_pod(pod: &Pod) -> Option<i32> {
    let v = pod.metadata.annotations.as_ref()?.get(COMPLETION_INDEX)?;
    let i: i32 = v.parse().ok()?;
    (i >= 0 && i.to_string() == *v).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_round_trip_with_runs() {
        let s: BTreeSet<i32> = [0, 1, 2, 4, 6, 7].into_iter().collect();
        assert_eq!(format(&s), "0-2,4,6-7");
        assert_eq!(parse("0-2,4,6-7", 10), s);
        assert_eq!(parse("0-2,4,6-7", 5), [0, 1, 2, 4].into_iter().collect());
        assert_eq!(format(&BTreeSet::new()), "");
        assert!(parse("", 3).is_empty());
        assert_eq!(parse("x,1", 3), [1].into_iter().collect());
    }
}
