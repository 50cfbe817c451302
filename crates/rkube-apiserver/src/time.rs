//! Timestamps as Kubernetes writes them.

/// Now as `metav1.Time`: RFC 3339 in UTC with whole seconds (`2026-11-26T20:52:02Z`).
pub fn now_rfc3339() -> String {
    format_rfc3339(jiff::Timestamp::now())
}

/// Now as `metav1.MicroTime`: RFC 3339 with microseconds.
pub fn now_micro() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
        .to_string()
}

/// A timestamp as `metav1.Time`.
pub fn format_rfc3339(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Seconds from now, as `metav1.Time`.
pub fn rfc3339_in(seconds: i64) -> String {
    let t = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(seconds))
        .unwrap_or_else(|_| jiff::Timestamp::now());
    format_rfc3339(t)
}

/// Parses an RFC 3339 timestamp.
pub fn parse(s: &str) -> Option<jiff::Timestamp> {
    s.parse().ok()
}
