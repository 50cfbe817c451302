//! `policy/v1` PodDisruptionBudgets: MIN AVAILABLE, MAX UNAVAILABLE, ALLOWED DISRUPTIONS.

use super::format::{self, cells};
use super::{AGE, Column, NAME, Printer};
use crate::meta;

pub(crate) static POD_DISRUPTION_BUDGETS: Printer = Printer {
    columns: &[
        NAME,
        Column::text(
            "Min Available",
            "The minimum number of pods that must be available.",
        ),
        Column::text(
            "Max Unavailable",
            "The maximum number of pods that may be unavailable.",
        ),
        Column::int(
            "Allowed Disruptions",
            "Calculated number of pods that may be disrupted at this time.",
        ),
        AGE,
    ],
    row: |pdb, now| {
        let bound = |field: &str| {
            meta::path(pdb, &["spec", field])
                .filter(|v| !v.is_null())
                .map_or("N/A".to_string(), format::int_or_string)
        };
        cells![
            format::name(pdb),
            bound("minAvailable"),
            bound("maxUnavailable"),
            format::int(pdb, &["status", "disruptionsAllowed"]),
            format::age(pdb, now),
        ]
    },
};
