//! The dependency graph of the garbage collector: every object the collector's
//! monitors see, linked to its owners by uid. Owners referenced but not (yet) seen
//! are "virtual" nodes, to be checked against the API. Applying a change returns the
//! work it causes (upstream's GraphBuilder.processGraphChanges).

use std::collections::{HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

/// The finalizer of foreground deletion.
pub const FOREGROUND: &str = "foregroundDeletion";
/// The finalizer of orphaning deletion.
pub const ORPHAN: &str = "orphan";

/// Who an object is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectId {
    pub api_version: String,
    pub kind: String,
    /// The object's namespace; for a virtual node, its dependent's (the owner may be
    /// cluster-scoped, which the API lookup sorts out).
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
}

impl std::fmt::Display for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/", self.kind, self.api_version)?;
        if let Some(ns) = &self.namespace {
            write!(f, "{ns}/")?;
        }
        write!(f, "{} ({})", self.name, self.uid)
    }
}

/// An object as a monitor saw it.
#[derive(Clone, Debug)]
pub struct Observed {
    pub id: ObjectId,
    pub owners: Vec<OwnerReference>,
    pub deleting: bool,
    pub finalizers: Vec<String>,
}

/// A change to apply to the graph.
#[derive(Clone, Debug)]
pub enum GraphEvent {
    /// Added or updated.
    Observed(Observed),
    /// Deleted.
    Removed(ObjectId),
    /// A virtual node's object was found missing through the API.
    VirtualRemoved(ObjectId),
}

/// Work the graph asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Work {
    /// Decide whether this object should be deleted (or, if it is waiting for its
    /// dependents, whether they are gone).
    AttemptToDelete(String),
    /// Remove this owner from its dependents, then its `orphan` finalizer.
    AttemptToOrphan(String),
}

#[derive(Clone, Debug)]
pub struct Node {
    pub id: ObjectId,
    pub owners: Vec<OwnerReference>,
    pub dependents: HashSet<String>,
    /// Known only as an owner reference.
    pub virtual_: bool,
    pub deleting: bool,
    /// Being deleted in the foreground: waits until its blocking dependents are gone.
    pub deleting_dependents: bool,
    pub finalizers: Vec<String>,
}

impl Node {
    fn virtual_owner(r: &OwnerReference, namespace: Option<String>) -> Node {
        Node {
            id: ObjectId {
                api_version: r.api_version.clone(),
                kind: r.kind.clone(),
                namespace,
                name: r.name.clone(),
                uid: r.uid.clone(),
            },
            owners: Vec::new(),
            dependents: HashSet::new(),
            virtual_: true,
            deleting: false,
            deleting_dependents: false,
            finalizers: Vec::new(),
        }
    }

    fn has(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| f == finalizer)
    }
}

/// The graph, keyed by uid.
#[derive(Default, Debug)]
pub struct Graph {
    nodes: HashMap<String, Node>,
}

impl Graph {
    pub fn node(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Dependents of `uid` whose reference to it blocks its deletion, with whether
    /// each is itself deleting its dependents.
    pub fn blocking_dependents(&self, uid: &str) -> Vec<(String, bool)> {
        let Some(n) = self.nodes.get(uid) else {
            return Vec::new();
        };
        n.dependents
            .iter()
            .filter_map(|d| self.nodes.get(d))
            .filter(|d| {
                d.owners
                    .iter()
                    .any(|r| r.uid == uid && r.block_owner_deletion == Some(true))
            })
            .map(|d| (d.id.uid.clone(), d.deleting_dependents))
            .collect()
    }

    /// Applies one change; returns the work it causes.
    pub fn apply(&mut self, ev: GraphEvent) -> Vec<Work> {
        let mut work = Vec::new();
        match ev {
            GraphEvent::Observed(o) => self.observe(o, &mut work),
            GraphEvent::Removed(id) => self.remove(&id.uid, &mut work),
            GraphEvent::VirtualRemoved(id) => {
                // Found missing through the API: a virtual node goes, and so does a
                // real one whose removal the monitor has not reported yet; a real
                // node with other coordinates stays.
                if self
                    .nodes
                    .get(&id.uid)
                    .is_some_and(|n| n.virtual_ || n.id == id)
                {
                    self.remove(&id.uid, &mut work);
                }
            }
        }
        work
    }

    fn observe(&mut self, o: Observed, work: &mut Vec<Work>) {
        let uid = o.id.uid.clone();
        let old = self.nodes.get(&uid).cloned();
        let old_owners = old.as_ref().map(|n| n.owners.clone()).unwrap_or_default();
        // Owners no longer referenced, or no longer blocked on: an owner waiting for
        // its dependents may be free to go.
        for r in &old_owners {
            let still = o.owners.iter().find(|n| n.uid == r.uid);
            let unblocked = match still {
                None => true,
                Some(n) => {
                    r.block_owner_deletion == Some(true) && n.block_owner_deletion != Some(true)
                }
            };
            if still.is_none()
                && let Some(owner) = self.nodes.get_mut(&r.uid)
            {
                owner.dependents.remove(&uid);
            }
            if unblocked
                && self
                    .nodes
                    .get(&r.uid)
                    .is_some_and(|n| n.deleting_dependents)
            {
                work.push(Work::AttemptToDelete(r.uid.clone()));
            }
        }
        // New owners: link, creating virtual nodes for owners not seen yet. (An owner
        // referenced before and gone from the graph was dealt with when it went.)
        let known = old.is_some();
        for r in &o.owners {
            let new_ref = !old_owners.iter().any(|x| x.uid == r.uid);
            match self.nodes.get_mut(&r.uid) {
                Some(owner) => {
                    owner.dependents.insert(uid.clone());
                }
                None if new_ref || !known => {
                    let mut owner = Node::virtual_owner(r, o.id.namespace.clone());
                    owner.dependents.insert(uid.clone());
                    self.nodes.insert(r.uid.clone(), owner);
                    work.push(Work::AttemptToDelete(r.uid.clone()));
                }
                None => {}
            }
        }
        let was_deleting_dependents = old.as_ref().is_some_and(|n| n.deleting_dependents);
        let node = self.nodes.entry(uid.clone()).or_insert_with(|| Node {
            id: o.id.clone(),
            owners: Vec::new(),
            dependents: HashSet::new(),
            virtual_: false,
            deleting: false,
            deleting_dependents: false,
            finalizers: Vec::new(),
        });
        node.id = o.id;
        node.virtual_ = false;
        node.owners = o.owners;
        node.deleting = o.deleting;
        node.finalizers = o.finalizers;
        let waits_orphan = node.deleting && node.has(ORPHAN);
        let waits_foreground = node.deleting && node.has(FOREGROUND);
        node.deleting_dependents = waits_foreground;
        let old_waits_orphan = old
            .as_ref()
            .is_some_and(|n| !n.virtual_ && n.deleting && n.has(ORPHAN));
        if waits_orphan && !old_waits_orphan {
            work.push(Work::AttemptToOrphan(uid));
            return;
        }
        if waits_foreground && !was_deleting_dependents {
            let deps: Vec<String> = node.dependents.iter().cloned().collect();
            work.extend(deps.into_iter().map(Work::AttemptToDelete));
            work.push(Work::AttemptToDelete(uid));
        }
    }

    fn remove(&mut self, uid: &str, work: &mut Vec<Work>) {
        let Some(node) = self.nodes.remove(uid) else {
            return;
        };
        for r in &node.owners {
            if let Some(owner) = self.nodes.get_mut(&r.uid) {
                owner.dependents.remove(uid);
                if owner.deleting_dependents {
                    work.push(Work::AttemptToDelete(r.uid.clone()));
                }
            }
        }
        // Its dependents may now be garbage.
        work.extend(node.dependents.iter().cloned().map(Work::AttemptToDelete));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(kind: &str, name: &str, uid: &str) -> ObjectId {
        ObjectId {
            api_version: "v1".into(),
            kind: kind.into(),
            namespace: Some("ns".into()),
            name: name.into(),
            uid: uid.into(),
        }
    }

    fn owner_ref(uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: format!("rs-{uid}"),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(block),
        }
    }

    fn seen(kind: &str, uid: &str, owners: Vec<OwnerReference>) -> GraphEvent {
        GraphEvent::Observed(Observed {
            id: id(kind, uid, uid),
            owners,
            deleting: false,
            finalizers: Vec::new(),
        })
    }

    fn deleting(kind: &str, uid: &str, finalizer: &str) -> GraphEvent {
        GraphEvent::Observed(Observed {
            id: id(kind, uid, uid),
            owners: Vec::new(),
            deleting: true,
            finalizers: vec![finalizer.into()],
        })
    }

    #[test]
    fn an_unknown_owner_becomes_a_virtual_node_to_check() {
        let mut g = Graph::default();
        let w = g.apply(seen("Pod", "p", vec![owner_ref("rs", true)]));
        assert_eq!(w, vec![Work::AttemptToDelete("rs".into())]);
        assert!(g.node("rs").unwrap().virtual_);
        // The owner shows up: no longer virtual, dependents kept.
        let w = g.apply(seen("ReplicaSet", "rs", vec![]));
        assert!(w.is_empty());
        let rs = g.node("rs").unwrap();
        assert!(!rs.virtual_);
        assert!(rs.dependents.contains("p"));
    }

    #[test]
    fn removing_an_owner_queues_its_dependents() {
        let mut g = Graph::default();
        g.apply(seen("ReplicaSet", "rs", vec![]));
        g.apply(seen("Pod", "a", vec![owner_ref("rs", true)]));
        g.apply(seen("Pod", "b", vec![owner_ref("rs", false)]));
        let mut w = g.apply(GraphEvent::Removed(id("ReplicaSet", "rs", "rs")));
        w.sort_by_key(|w| format!("{w:?}"));
        assert_eq!(
            w,
            vec![
                Work::AttemptToDelete("a".into()),
                Work::AttemptToDelete("b".into())
            ]
        );
    }

    #[test]
    fn foreground_deletion_waits_for_blocking_dependents() {
        let mut g = Graph::default();
        g.apply(seen("ReplicaSet", "rs", vec![]));
        g.apply(seen("Pod", "a", vec![owner_ref("rs", true)]));
        g.apply(seen("Pod", "b", vec![owner_ref("rs", false)]));
        let w = g.apply(deleting("ReplicaSet", "rs", FOREGROUND));
        assert!(w.contains(&Work::AttemptToDelete("a".into())));
        assert!(w.contains(&Work::AttemptToDelete("b".into())));
        assert_eq!(w.last(), Some(&Work::AttemptToDelete("rs".into())));
        assert!(g.node("rs").unwrap().deleting_dependents);
        assert_eq!(g.blocking_dependents("rs"), vec![("a".to_string(), false)]);
        // The blocking dependent goes: the owner is looked at again.
        let w = g.apply(GraphEvent::Removed(id("Pod", "a", "a")));
        assert_eq!(w, vec![Work::AttemptToDelete("rs".into())]);
        assert!(g.blocking_dependents("rs").is_empty());
    }

    #[test]
    fn orphaning_is_queued_once() {
        let mut g = Graph::default();
        g.apply(seen("ReplicaSet", "rs", vec![]));
        let w = g.apply(deleting("ReplicaSet", "rs", ORPHAN));
        assert_eq!(w, vec![Work::AttemptToOrphan("rs".into())]);
        let w = g.apply(deleting("ReplicaSet", "rs", ORPHAN));
        assert!(w.is_empty());
    }

    #[test]
    fn dropping_a_blocking_reference_frees_a_waiting_owner() {
        let mut g = Graph::default();
        g.apply(seen("ReplicaSet", "rs", vec![]));
        g.apply(seen("Pod", "a", vec![owner_ref("rs", true)]));
        g.apply(deleting("ReplicaSet", "rs", FOREGROUND));
        let w = g.apply(seen("Pod", "a", vec![]));
        assert_eq!(w, vec![Work::AttemptToDelete("rs".into())]);
        assert!(g.node("rs").unwrap().dependents.is_empty());
    }

    #[test]
    fn a_virtual_removal_spares_a_node_seen_since_with_other_coordinates() {
        let mut g = Graph::default();
        g.apply(seen("Pod", "p", vec![owner_ref("rs", true)]));
        g.apply(seen("ReplicaSet", "rs", vec![]));
        let mut other = id("ReplicaSet", "rs", "rs");
        other.name = "renamed".into();
        let w = g.apply(GraphEvent::VirtualRemoved(other));
        assert!(w.is_empty());
        assert!(g.node("rs").is_some());
        // Virtual: removed, and its dependents looked at.
        g.apply(seen("Pod", "q", vec![owner_ref("gone", true)]));
        let w = g.apply(GraphEvent::VirtualRemoved(
            g.node("gone").unwrap().id.clone(),
        ));
        assert_eq!(w, vec![Work::AttemptToDelete("q".into())]);
    }
}
