//! `coordination.k8s.io` Leases: the HOLDER.

use super::descriptions as d;
use super::format::{self, cells, text};
use super::{AGE, Column, NAME, Printer};

pub(crate) static LEASES: Printer = Printer {
    columns: &[NAME, Column::text("Holder", d::LEASE_HOLDER), AGE],
    row: |lease, now| {
        cells![
            format::name(lease),
            text(lease, &["spec", "holderIdentity"]),
            format::age(lease, now),
        ]
    },
};
