//! resolv.conf (placeholder).
