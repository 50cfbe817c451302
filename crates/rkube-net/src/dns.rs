//! Cluster DNS (placeholder).
