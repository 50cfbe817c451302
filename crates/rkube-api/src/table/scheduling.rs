//! `scheduling.k8s.io` PriorityClasses: VALUE, GLOBAL-DEFAULT, PREEMPTIONPOLICY.

use super::descriptions as d;
use super::format::{self, cells, non_empty};
use super::{AGE, Column, NAME, Printer};

pub(crate) static PRIORITY_CLASSES: Printer = Printer {
    columns: &[
        NAME,
        Column::int("Value", d::PC_VALUE),
        Column::boolean("Global-Default", d::PC_GLOBAL_DEFAULT),
        AGE,
        Column::text("PreemptionPolicy", d::PC_PREEMPTION),
    ],
    row: |pc, now| {
        cells![
            format::name(pc),
            format::int(pc, &["value"]),
            format::boolean(pc, &["globalDefault"]).unwrap_or(false),
            format::age(pc, now),
            // Defaulting fills `PreemptLowerPriority`.
            non_empty(pc, &["preemptionPolicy"]).unwrap_or("PreemptLowerPriority"),
        ]
    },
};
