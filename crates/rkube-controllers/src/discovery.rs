//! What the API serves, found through discovery: the resources the namespace
//! controller empties and the garbage collector watches, custom resources included.

use std::collections::HashMap;

use kube::Client;
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope};

/// A served resource in its group's preferred version.
#[derive(Clone, Debug)]
pub struct Served {
    pub resource: ApiResource,
    pub namespaced: bool,
    pub verbs: Vec<String>,
}

impl Served {
    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }
}

/// Every resource of every group, in each group's preferred version.
#[derive(Clone, Debug, Default)]
pub struct Resources {
    pub all: Vec<Served>,
    /// (group, kind) to the entry in `all`.
    by_kind: HashMap<(String, String), usize>,
}

impl Resources {
    /// Asks the API (aggregated discovery, falling back to per-group requests).
    pub async fn discover(client: &Client) -> Result<Resources, kube::Error> {
        let d = match Discovery::new(client.clone()).run_aggregated().await {
            Ok(d) => d,
            Err(_) => Discovery::new(client.clone()).run().await?,
        };
        let mut all = Vec::new();
        for g in d.groups() {
            for (ar, caps) in g.recommended_resources() {
                all.push(served(ar, &caps));
            }
        }
        Ok(Resources::from_list(all))
    }

    pub fn from_list(all: Vec<Served>) -> Resources {
        let by_kind = all
            .iter()
            .enumerate()
            .map(|(i, s)| ((s.resource.group.clone(), s.resource.kind.clone()), i))
            .collect();
        Resources { all, by_kind }
    }

    /// The resource of a kind, whatever version the reference names.
    pub fn by_api_version_kind(&self, api_version: &str, kind: &str) -> Option<&Served> {
        let group = match api_version.split_once('/') {
            Some((g, _)) => g,
            None => "",
        };
        self.by_kind
            .get(&(group.to_string(), kind.to_string()))
            .map(|i| &self.all[*i])
    }
}

fn served(ar: ApiResource, caps: &ApiCapabilities) -> Served {
    Served {
        namespaced: caps.scope == Scope::Namespaced,
        verbs: caps.operations.clone(),
        resource: ar,
    }
}
