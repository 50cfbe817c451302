//! `batch/v1`: Jobs (STATUS, COMPLETIONS, DURATION) and CronJobs.

use jiff::Timestamp;
use serde_json::Value;

use super::descriptions as d;
use super::format::{self, cells, condition_true, list};
use super::{AGE, CONTAINERS, Column, IMAGES, NAME, Printer};
use crate::meta;

pub(crate) static JOBS: Printer = Printer {
    columns: &[
        NAME,
        Column::text("Status", "Status of the job."),
        Column::text("Completions", d::JOB_SUCCEEDED),
        Column::text("Duration", "Time required to complete the job."),
        AGE,
        CONTAINERS,
        IMAGES,
        Column::text("Selector", d::JOB_SELECTOR).wide(),
    ],
    row: job_row,
};

fn job_row(job: &Value, now: Timestamp) -> Vec<Value> {
    let succeeded = format::int(job, &["status", "succeeded"]);
    let parallelism = meta::path_i64(job, &["spec", "parallelism"]);
    // Defaulting makes a job with neither field a single-completion job.
    let completions = meta::path_i64(job, &["spec", "completions"]).or(if parallelism.is_none() {
        Some(1)
    } else {
        None
    });
    let completions = match completions {
        Some(c) => format!("{succeeded}/{c}"),
        None => match parallelism.unwrap_or(1) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let start = format::timestamp(job, &["status", "startTime"]);
    let duration = match (start, format::timestamp(job, &["status", "completionTime"])) {
        (None, _) => String::new(),
        (Some(start), None) => format::human_duration(now.duration_since(start)),
        (Some(start), Some(end)) => format::human_duration(end.duration_since(start)),
    };
    let conditions = list(job, &["status", "conditions"]);
    let status = if condition_true(conditions, "Complete") {
        "Complete"
    } else if condition_true(conditions, "Failed") {
        "Failed"
    } else if meta::deletion_timestamp(job).is_some() {
        "Terminating"
    } else if condition_true(conditions, "Suspended") {
        "Suspended"
    } else if condition_true(conditions, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (names, images) = format::containers(meta::path(job, &["spec", "template", "spec"]));
    cells![
        format::name(job),
        status,
        completions,
        duration,
        format::age(job, now),
        names,
        images,
        format::label_selector(meta::path(job, &["spec", "selector"])),
    ]
}

pub(crate) static CRON_JOBS: Printer = Printer {
    columns: &[
        NAME,
        Column::text("Schedule", d::CJ_SCHEDULE),
        Column::text("Timezone", d::CJ_TIMEZONE),
        Column::boolean("Suspend", d::CJ_SUSPEND),
        Column::int("Active", d::CJ_ACTIVE),
        Column::text("Last Schedule", d::CJ_LAST_SCHEDULE),
        AGE,
        CONTAINERS,
        IMAGES,
        Column::text("Selector", d::JOB_SELECTOR).wide(),
    ],
    row: |cj, now| {
        let last = match format::timestamp(cj, &["status", "lastScheduleTime"]) {
            Some(t) => format::since(Some(t), now),
            None => "<none>".to_string(),
        };
        let job_spec = meta::path(cj, &["spec", "jobTemplate", "spec"]);
        let (names, images) =
            format::containers(job_spec.and_then(|s| meta::path(s, &["template", "spec"])));
        cells![
            format::name(cj),
            format::text(cj, &["spec", "schedule"]),
            meta::path_str(cj, &["spec", "timeZone"]).unwrap_or("<none>"),
            // Defaulting sets `suspend: false`.
            format::bool_ptr(Some(
                format::boolean(cj, &["spec", "suspend"]).unwrap_or(false)
            )),
            list(cj, &["status", "active"]).len() as i64,
            last,
            format::age(cj, now),
            names,
            images,
            format::label_selector(job_spec.and_then(|s| s.get("selector"))),
        ]
    },
};
