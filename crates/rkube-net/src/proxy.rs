//! Service proxy (placeholder).
