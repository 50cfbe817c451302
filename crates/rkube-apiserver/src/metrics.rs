//! Prometheus metrics of the API server (`/metrics`).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use crate::server::ApiServer;

#[derive(Default)]
struct Counters {
    /// (verb, resource, code) -> (count, total seconds).
    requests: BTreeMap<(String, String, u16), (u64, f64)>,
    /// (resource, operation) -> count.
    writes: BTreeMap<(String, &'static str), u64>,
}

/// Request and write counters.
#[derive(Default)]
pub struct Metrics {
    counters: Mutex<Counters>,
}

impl Metrics {
    pub fn observe_request(&self, verb: &str, resource: &str, code: u16, took: Duration) {
        let mut c = self.counters.lock().expect("metrics lock");
        let e = c
            .requests
            .entry((verb.to_string(), resource.to_string(), code))
            .or_insert((0, 0.0));
        e.0 += 1;
        e.1 += took.as_secs_f64();
    }

    pub fn count_write(&self, resource: &str, op: &'static str) {
        let mut c = self.counters.lock().expect("metrics lock");
        *c.writes.entry((resource.to_string(), op)).or_insert(0) += 1;
    }

    /// The text exposition format.
    pub fn render(&self, server: &ApiServer) -> String {
        let mut out = String::new();
        let c = self.counters.lock().expect("metrics lock");
        out.push_str("# HELP apiserver_request_total Counter of apiserver requests broken out by verb, resource and HTTP response code.\n");
        out.push_str("# TYPE apiserver_request_total counter\n");
        for ((verb, res, code), (n, _)) in &c.requests {
            let _ = writeln!(
                out,
                "apiserver_request_total{{code=\"{code}\",resource=\"{res}\",verb=\"{verb}\"}} {n}"
            );
        }
        out.push_str(
            "# HELP apiserver_request_duration_seconds_sum Total time spent answering requests.\n",
        );
        out.push_str("# TYPE apiserver_request_duration_seconds_sum counter\n");
        for ((verb, res, code), (_, secs)) in &c.requests {
            let _ = writeln!(
                out,
                "apiserver_request_duration_seconds_sum{{code=\"{code}\",resource=\"{res}\",verb=\"{verb}\"}} {secs}"
            );
        }
        out.push_str("# HELP rkube_storage_writes_total Writes to the datastore by resource and operation.\n");
        out.push_str("# TYPE rkube_storage_writes_total counter\n");
        for ((res, op), n) in &c.writes {
            let _ = writeln!(
                out,
                "rkube_storage_writes_total{{operation=\"{op}\",resource=\"{res}\"}} {n}"
            );
        }
        drop(c);
        out.push_str(
            "# HELP rkube_watch_cache_revision The datastore revision the watch cache reflects.\n",
        );
        out.push_str("# TYPE rkube_watch_cache_revision gauge\n");
        let _ = writeln!(
            out,
            "rkube_watch_cache_revision {}",
            server.cache.revision()
        );
        out.push_str("# HELP rkube_watch_cache_bytes Bytes of objects held by the watch cache.\n");
        out.push_str("# TYPE rkube_watch_cache_bytes gauge\n");
        let _ = writeln!(out, "rkube_watch_cache_bytes {}", server.cache.bytes());
        if let Some(rss) = resident_bytes() {
            out.push_str("# HELP process_resident_memory_bytes Resident memory size in bytes.\n");
            out.push_str("# TYPE process_resident_memory_bytes gauge\n");
            let _ = writeln!(out, "process_resident_memory_bytes {rss}");
        }
        out.push_str("# HELP process_uptime_seconds Seconds since the API server started.\n");
        out.push_str("# TYPE process_uptime_seconds gauge\n");
        let _ = writeln!(
            out,
            "process_uptime_seconds {}",
            server.started.elapsed().as_secs_f64()
        );
        out
    }
}

/// Resident set size of this process, from /proc.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
