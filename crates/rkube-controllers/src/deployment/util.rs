//! The arithmetic of Deployments, as upstream's deployment util defines it:
//! revisions, replica annotations, surge and unavailability fenceposts, which
//! ReplicaSet is new, conditions, and when a rollout is complete, progressing or
//! timed out.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::hash::equal_ignore_hash;

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// `revision-history` is cut to this many characters, as upstream.
const MAX_REVISION_HISTORY_CHARS: usize = 2000;

// Condition reasons, in upstream's words.
pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const RS_UPDATED: &str = "ReplicaSetUpdated";
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";
pub const PAUSED: &str = "DeploymentPaused";
pub const RESUMED: &str = "DeploymentResumed";
pub const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
pub const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn rs_status(rs: &ReplicaSet) -> (i32, i32, i32) {
    rs.status
        .as_ref()
        .map(|s| {
            (
                s.replicas,
                s.ready_replicas.unwrap_or(0),
                s.available_replicas.unwrap_or(0),
            )
        })
        .unwrap_or((0, 0, 0))
}

pub fn rs_actual(rs: &ReplicaSet) -> i32 {
    rs_status(rs).0
}

pub fn rs_available(rs: &ReplicaSet) -> i32 {
    rs_status(rs).2
}

/// Available pods a ReplicaSet will keep: a status written before the ReplicaSet
/// was scaled down may count pods it is about to delete.
pub fn rs_available_kept(rs: &ReplicaSet) -> i32 {
    rs_available(rs).min(rs_replicas(rs)).max(0)
}

/// Sum of `spec.replicas`.
pub fn replica_count(rss: &[&ReplicaSet]) -> i32 {
    rss.iter().map(|r| rs_replicas(r)).sum()
}

/// Sum of `status.replicas`.
pub fn actual_count(rss: &[&ReplicaSet]) -> i32 {
    rss.iter().map(|r| rs_status(r).0).sum()
}

pub fn ready_count(rss: &[&ReplicaSet]) -> i32 {
    rss.iter().map(|r| rs_status(r).1).sum()
}

pub fn available_count(rss: &[&ReplicaSet]) -> i32 {
    rss.iter().map(|r| rs_status(r).2).sum()
}

pub fn is_rolling(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate"
}

pub fn is_paused(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false)
}

pub fn min_ready_seconds(d: &Deployment) -> i32 {
    d.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

pub fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .filter(|s| *s != i32::MAX)
}

/// An int-or-percent scaled against `total` (percentages rounded up or down).
pub fn scaled(v: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match v {
        None => 0,
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => {
            let Some(p) = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
                return s.parse().unwrap_or(0);
            };
            let v = p * i64::from(total);
            (if round_up {
                (v + 99).div_euclid(100)
            } else {
                v.div_euclid(100)
            }) as i32
        }
    }
}

/// (maxSurge, maxUnavailable) resolved against the desired replicas; never both 0.
pub fn fenceposts(d: &Deployment) -> (i32, i32) {
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let desired = replicas(d);
    let surge = scaled(ru.and_then(|r| r.max_surge.as_ref()), desired, true);
    let unavailable = scaled(ru.and_then(|r| r.max_unavailable.as_ref()), desired, false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

pub fn max_surge(d: &Deployment) -> i32 {
    if is_rolling(d) { fenceposts(d).0 } else { 0 }
}

pub fn max_unavailable(d: &Deployment) -> i32 {
    let n = replicas(d);
    if !is_rolling(d) || n == 0 {
        return 0;
    }
    fenceposts(d).1.min(n)
}

/// How many replicas the new ReplicaSet should have now. `all` counts a ReplicaSet
/// by the larger of its spec and its observed pods, so pods still being deleted keep
/// the surge within maxSurge.
pub fn new_rs_new_replicas(d: &Deployment, all: &[&ReplicaSet], new_rs: &ReplicaSet) -> i32 {
    if !is_rolling(d) {
        return replicas(d);
    }
    let current: i32 = all.iter().map(|r| rs_replicas(r).max(rs_actual(r))).sum();
    let max_total = replicas(d) + max_surge(d);
    let new_now = rs_replicas(new_rs);
    if current >= max_total {
        return new_now;
    }
    let up = (max_total - current).min((replicas(d) - new_now).max(0));
    new_now + up
}

pub fn revision(rs: &ReplicaSet) -> i64 {
    annotation(&rs.metadata.annotations, REVISION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn annotation<'a>(a: &'a Option<BTreeMap<String, String>>, k: &str) -> Option<&'a str> {
    a.as_ref().and_then(|a| a.get(k)).map(String::as_str)
}

pub fn max_revision(rss: &[&ReplicaSet]) -> i64 {
    rss.iter().map(|r| revision(r)).max().unwrap_or(0)
}

pub fn desired_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    annotation(&rs.metadata.annotations, DESIRED_REPLICAS).and_then(|v| v.parse().ok())
}

pub fn max_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    annotation(&rs.metadata.annotations, MAX_REPLICAS).and_then(|v| v.parse().ok())
}

fn skipped(k: &str) -> bool {
    [
        LAST_APPLIED,
        REVISION,
        REVISION_HISTORY,
        DESIRED_REPLICAS,
        MAX_REPLICAS,
        ROLLBACK_TO,
    ]
    .contains(&k)
}

/// Copies the Deployment's own annotations to the ReplicaSet; whether it changed.
fn copy_annotations(d: &Deployment, rs: &mut ReplicaSet) -> bool {
    let mut changed = false;
    let a = rs.metadata.annotations.get_or_insert_with(Default::default);
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if skipped(k) || a.get(k) == Some(v) {
            continue;
        }
        a.insert(k.clone(), v.clone());
        changed = true;
    }
    changed
}

/// Sets the desired/max replica annotations; whether they changed.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let a = rs.metadata.annotations.get_or_insert_with(Default::default);
    let mut changed = false;
    for (k, v) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let v = v.to_string();
        if a.get(k) != Some(&v) {
            a.insert(k.to_string(), v);
            changed = true;
        }
    }
    changed
}

pub fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    desired_replicas_annotation(rs) != Some(desired) || max_replicas_annotation(rs) != Some(max)
}

/// The annotations of the new ReplicaSet: the Deployment's, the new revision (the
/// previous one moves to `revision-history` when an old ReplicaSet is reused), and,
/// for a new ReplicaSet, the replica annotations. Whether anything changed.
pub fn set_new_rs_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: i64,
    exists: bool,
) -> bool {
    let mut changed = copy_annotations(d, rs);
    let a = rs.metadata.annotations.get_or_insert_with(Default::default);
    let old = a.get(REVISION).cloned().unwrap_or_default();
    let old_num: i64 = old.parse().unwrap_or(0);
    if old_num < new_revision {
        a.insert(REVISION.into(), new_revision.to_string());
        changed = true;
        if exists && !old.is_empty() {
            let history = match a.get(REVISION_HISTORY) {
                Some(h) if !h.is_empty() => format!("{h},{old}"),
                _ => old.clone(),
            };
            let mut history = history.as_str();
            while history.len() > MAX_REVISION_HISTORY_CHARS {
                history = history.split_once(',').map(|(_, r)| r).unwrap_or("");
            }
            a.insert(REVISION_HISTORY.into(), history.to_string());
        }
    }
    if !exists {
        changed |= set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d));
    }
    changed
}

/// Sets the Deployment's revision annotation; whether it changed.
pub fn set_deployment_revision(d: &mut Deployment, revision: &str) -> bool {
    let a = d.metadata.annotations.get_or_insert_with(Default::default);
    if a.get(REVISION).map(String::as_str) == Some(revision) {
        return false;
    }
    a.insert(REVISION.into(), revision.to_string());
    true
}

fn template_json(t: Option<&k8s_openapi::api::core::v1::PodTemplateSpec>) -> serde_json::Value {
    serde_json::to_value(t).unwrap_or_default()
}

/// The ReplicaSet whose template is the Deployment's (the oldest, if several).
pub fn find_new_rs<'a>(d: &Deployment, rss: &[&'a ReplicaSet]) -> Option<&'a ReplicaSet> {
    let want = template_json(d.spec.as_ref().map(|s| &s.template));
    let mut sorted = rss.to_vec();
    sort_by_creation(&mut sorted);
    sorted.into_iter().find(|rs| {
        equal_ignore_hash(
            &want,
            &template_json(rs.spec.as_ref().and_then(|s| s.template.as_ref())),
        )
    })
}

/// Oldest first; ties by name.
pub fn sort_by_creation(rss: &mut [&ReplicaSet]) {
    rss.sort_by(|a, b| {
        let ka = (
            a.metadata.creation_timestamp.clone(),
            a.metadata.name.clone(),
        );
        let kb = (
            b.metadata.creation_timestamp.clone(),
            b.metadata.name.clone(),
        );
        ka.cmp(&kb)
    });
}

pub fn is_active(rs: &ReplicaSet) -> bool {
    rs_replicas(rs) > 0
}

/// The single active ReplicaSet, or the newest when none is active; `None` when
/// several are active (a rollout is under way).
pub fn find_active_or_latest<'a>(
    new_rs: Option<&'a ReplicaSet>,
    old: &[&'a ReplicaSet],
) -> Option<&'a ReplicaSet> {
    if new_rs.is_none() && old.is_empty() {
        return None;
    }
    let mut old_sorted = old.to_vec();
    sort_by_creation(&mut old_sorted);
    old_sorted.reverse();
    let all: Vec<&ReplicaSet> = old_sorted
        .iter()
        .copied()
        .chain(new_rs)
        .filter(|r| is_active(r))
        .collect();
    match all.len() {
        0 => new_rs.or_else(|| old_sorted.first().copied()),
        1 => Some(all[0]),
        _ => None,
    }
}

/// The new ReplicaSet has all the replicas, knows it, and they are available.
pub fn is_saturated(d: &Deployment, rs: Option<&ReplicaSet>) -> bool {
    let Some(rs) = rs else { return false };
    rs_replicas(rs) == replicas(d)
        && desired_replicas_annotation(rs) == Some(replicas(d))
        && rs_available(rs) == replicas(d)
}

pub fn deployment_complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let n = replicas(d);
    s.updated_replicas.unwrap_or(0) == n
        && s.replicas.unwrap_or(0) == n
        && s.available_replicas.unwrap_or(0) == n
        && s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

pub fn deployment_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let g = |v: Option<i32>| v.unwrap_or(0);
    let old_old = g(old.replicas) - g(old.updated_replicas);
    let new_old = g(new.replicas) - g(new.updated_replicas);
    g(new.updated_replicas) > g(old.updated_replicas)
        || new_old < old_old
        || g(new.ready_replicas) > g(old.ready_replicas)
        || g(new.available_replicas) > g(old.available_replicas)
}

pub fn deployment_timed_out(d: &Deployment, s: &DeploymentStatus, now: Timestamp) -> bool {
    let Some(deadline) = progress_deadline(d) else {
        return false;
    };
    let Some(c) = condition(s, "Progressing") else {
        return false;
    };
    match c.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => false,
        Some(TIMED_OUT) => true,
        _ => c
            .last_update_time
            .as_ref()
            .and_then(|t| {
                t.0.checked_add(SignedDuration::from_secs(i64::from(deadline)))
                    .ok()
            })
            .is_some_and(|until| until < now),
    }
}

pub fn condition<'a>(s: &'a DeploymentStatus, ty: &str) -> Option<&'a DeploymentCondition> {
    s.conditions.as_ref()?.iter().find(|c| c.type_ == ty)
}

pub fn new_condition(
    ty: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: ty.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Sets a condition unless the same status and reason are there; keeps the
/// transition time when only the reason changes.
pub fn set_condition(s: &mut DeploymentStatus, mut c: DeploymentCondition) {
    if let Some(cur) = condition(s, &c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    remove_condition(s, &c.type_.clone());
    s.conditions.get_or_insert_with(Vec::new).push(c);
}

pub fn remove_condition(s: &mut DeploymentStatus, ty: &str) {
    if let Some(cs) = s.conditions.as_mut() {
        cs.retain(|c| c.type_ != ty);
    }
}

/// The share of a scaling step this ReplicaSet gets (proportional scaling).
pub fn proportion(rs: &ReplicaSet, d: &Deployment, to_add: i32, added: i32) -> i32 {
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

fn fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    if replicas(d) == 0 {
        return -rs_replicas(rs);
    }
    let deployment_max = replicas(d) + max_surge(d);
    let annotated = match max_replicas_annotation(rs) {
        Some(v) if v > 0 => v,
        _ => d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0),
    };
    if annotated == 0 {
        return 0;
    }
    let new_size = (f64::from(rs_replicas(rs)) * f64::from(deployment_max) / f64::from(annotated))
        .round() as i32;
    new_size - rs_replicas(rs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy(
        replicas: i32,
        surge: serde_json::Value,
        unavailable: serde_json::Value,
    ) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "d"},
            "spec": {"replicas": replicas, "selector": {}, "template": {},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}}
        }))
        .unwrap()
    }

    fn rs(replicas: i32, actual: i32) -> ReplicaSet {
        serde_json::from_value(
            json!({"metadata": {"name": "r"}, "spec": {"replicas": replicas, "selector": {}},
            "status": {"replicas": actual}}),
        )
        .unwrap()
    }

    #[test]
    fn fenceposts_round_like_upstream() {
        let d = deploy(10, json!("25%"), json!("25%"));
        assert_eq!(fenceposts(&d), (3, 2));
        let d = deploy(1, json!("25%"), json!("25%"));
        assert_eq!(fenceposts(&d), (1, 0));
        let d = deploy(3, json!(0), json!("10%"));
        // Both resolve to zero: one may be unavailable.
        assert_eq!(fenceposts(&d), (0, 1));
        assert_eq!(max_unavailable(&deploy(0, json!(1), json!(1))), 0);
        assert_eq!(max_unavailable(&deploy(2, json!(0), json!(5))), 2);
    }

    #[test]
    fn the_new_replica_set_grows_within_the_surge() {
        let d = deploy(3, json!(1), json!(0));
        let old = rs(3, 3);
        let new = rs(0, 0);
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], &new), 1);
        let old = rs(2, 3);
        let new = rs(1, 1);
        // The old ReplicaSet still has three pods: no room yet.
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], &new), 1);
        let old = rs(2, 2);
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], &new), 2);
    }

    #[test]
    fn reusing_an_old_replica_set_records_its_revision_history() {
        let d = deploy(3, json!(1), json!(0));
        let mut r = rs(0, 0);
        r.metadata.annotations = Some([(REVISION.to_string(), "1".to_string())].into());
        assert!(set_new_rs_annotations(&d, &mut r, 3, true));
        let a = r.metadata.annotations.as_ref().unwrap();
        assert_eq!(a[REVISION], "3");
        assert_eq!(a[REVISION_HISTORY], "1");
        assert!(!a.contains_key(DESIRED_REPLICAS));
        let mut fresh = rs(0, 0);
        set_new_rs_annotations(&d, &mut fresh, 4, false);
        let a = fresh.metadata.annotations.unwrap();
        assert_eq!(
            (
                a[REVISION].as_str(),
                a[DESIRED_REPLICAS].as_str(),
                a[MAX_REPLICAS].as_str()
            ),
            ("4", "3", "4")
        );
    }

    #[test]
    fn conditions_keep_their_transition_time() {
        let t0: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2025-01-01T00:01:00Z".parse().unwrap();
        let mut s = DeploymentStatus::default();
        set_condition(
            &mut s,
            new_condition("Progressing", "True", NEW_RS_CREATED, "a".into(), t0),
        );
        set_condition(
            &mut s,
            new_condition("Progressing", "True", RS_UPDATED, "b".into(), t1),
        );
        let c = condition(&s, "Progressing").unwrap();
        assert_eq!(c.reason.as_deref(), Some(RS_UPDATED));
        assert_eq!(c.last_transition_time.as_ref().unwrap().0, t0);
        assert_eq!(c.last_update_time.as_ref().unwrap().0, t1);
    }

    #[test]
    fn timing_out_needs_a_stale_progressing_condition() {
        let mut d = deploy(1, json!(1), json!(0));
        d.spec.as_mut().unwrap().progress_deadline_seconds = Some(60);
        let t0: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        let mut s = DeploymentStatus::default();
        assert!(!deployment_timed_out(&d, &s, t0));
        set_condition(
            &mut s,
            new_condition("Progressing", "True", RS_UPDATED, "x".into(), t0),
        );
        assert!(!deployment_timed_out(
            &d,
            &s,
            "2025-01-01T00:00:59Z".parse().unwrap()
        ));
        assert!(deployment_timed_out(
            &d,
            &s,
            "2025-01-01T00:01:01Z".parse().unwrap()
        ));
    }
}
