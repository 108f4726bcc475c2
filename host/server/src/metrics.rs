//! The host's own measurements, served at `GET /metrics` in Prometheus'
//! text format. Counters and histograms are atomics: recording never takes
//! a lock on the build path (except the per-plugin map, once per call).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::store::BuildStatus;

/// A cumulative histogram with fixed buckets (seconds).
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Record one observation.
    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            if seconds <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        let total = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {total}");
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(
            out,
            "{name}_sum{braces} {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{braces} {total}");
    }
}

const BUILD_SECONDS: &[f64] = &[
    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];
const PLUGIN_SECONDS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0,
];

/// Everything `/metrics` reports.
pub struct Metrics {
    builds_created: AtomicU64,
    builds_refused_by_quota: AtomicU64,
    builds_finished: [AtomicU64; 3],
    build_duration: Histogram,
    plugin_calls: Mutex<BTreeMap<(String, &'static str), std::sync::Arc<Histogram>>>,
    gc: Mutex<GcTally>,
    /// Push deliveries at projects' webhooks, by [`PushOutcome`].
    pushes: [AtomicU64; 3],
    /// Completion-webhook attempts, by [`AttemptResult`].
    webhook_attempts: [AtomicU64; 3],
}

/// What a push delivery came to.
#[derive(Debug, Clone, Copy)]
pub enum PushOutcome {
    Built = 0,
    Ignored = 1,
    /// A missing or wrong signature.
    Refused = 2,
}

/// What one completion-webhook attempt came to.
#[derive(Debug, Clone, Copy)]
pub enum AttemptResult {
    Succeeded = 0,
    /// No 2xx; another attempt comes.
    Retried = 1,
    /// No 2xx, and the delivery was given up.
    Failed = 2,
}

/// Garbage collections since start (dry runs not counted).
#[derive(Default)]
struct GcTally {
    runs: u64,
    errors: u64,
    /// kind → (count, bytes)
    removed: BTreeMap<String, (u64, u64)>,
    last_run_unix_seconds: f64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            builds_created: AtomicU64::new(0),
            builds_refused_by_quota: AtomicU64::new(0),
            pushes: Default::default(),
            webhook_attempts: Default::default(),
            builds_finished: Default::default(),
            build_duration: Histogram::new(BUILD_SECONDS),
            plugin_calls: Mutex::new(BTreeMap::new()),
            gc: Mutex::default(),
        }
    }
}

/// Gauges read at scrape time.
pub struct Snapshot {
    pub queue_depth: u64,
    pub running: u64,
    /// The pool's engines, as `GET /v1/engines` shows them.
    pub engines: Vec<kiln_api::Engine>,
}

impl Metrics {
    /// A build was accepted.
    pub fn build_created(&self) {
        self.builds_created.fetch_add(1, Ordering::Relaxed);
    }

    /// A CreateBuild was refused: its organization had its most builds queued.
    pub fn build_refused_by_quota(&self) {
        self.builds_refused_by_quota.fetch_add(1, Ordering::Relaxed);
    }

    /// A push delivery was answered.
    pub fn push(&self, outcome: PushOutcome) {
        self.pushes[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A completion-webhook delivery was attempted.
    pub fn webhook_attempt(&self, result: AttemptResult) {
        self.webhook_attempts[result as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A build ended with `status` after `took`.
    pub fn build_finished(&self, status: BuildStatus, took: Duration) {
        let index = match status {
            BuildStatus::Succeeded => 0,
            BuildStatus::Failed => 1,
            BuildStatus::Cancelled => 2,
            _ => return,
        };
        self.builds_finished[index].fetch_add(1, Ordering::Relaxed);
        self.build_duration.observe(took);
    }

    /// A build a previous run of the host left RUNNING was closed
    /// (`INTERRUPTED`) at start-up. It ended in this run, so it counts as
    /// finished; it has no duration worth observing (the host was down).
    pub fn build_closed_at_start(&self) {
        self.builds_finished[1].fetch_add(1, Ordering::Relaxed);
    }

    /// A plugin call (`materialize`, `build`...) took `took`.
    pub fn plugin_call(&self, plugin: &str, call: &'static str, took: Duration) {
        let histogram = self
            .plugin_calls
            .lock()
            .unwrap()
            .entry((plugin.to_string(), call))
            .or_insert_with(|| std::sync::Arc::new(Histogram::new(PLUGIN_SECONDS)))
            .clone();
        histogram.observe(took);
    }

    /// A garbage collection (not a dry run) finished.
    pub fn gc_ran(&self, report: &kiln_api::GcReport) {
        let mut gc = self.gc.lock().unwrap();
        gc.runs += 1;
        gc.errors += report.errors.len() as u64;
        for total in &report.totals {
            let sum = gc.removed.entry(total.kind.clone()).or_default();
            sum.0 += total.count;
            sum.1 += total.bytes;
        }
        gc.last_run_unix_seconds = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    }

    /// The Prometheus text exposition.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        let mut out = String::new();
        out.push_str("# HELP kiln_builds_created_total Builds accepted since the host started.\n# TYPE kiln_builds_created_total counter\n");
        let _ = writeln!(
            out,
            "kiln_builds_created_total {}",
            self.builds_created.load(Ordering::Relaxed)
        );
        out.push_str("# HELP kiln_builds_refused_by_quota_total CreateBuild calls answered 429 because the organization had its most builds queued.\n# TYPE kiln_builds_refused_by_quota_total counter\n");
        let _ = writeln!(
            out,
            "kiln_builds_refused_by_quota_total {}",
            self.builds_refused_by_quota.load(Ordering::Relaxed)
        );
        out.push_str("# HELP kiln_builds_finished_total Builds that ended since the host started, by final status (builds a previous run left running, closed INTERRUPTED at start-up, count as failed).\n# TYPE kiln_builds_finished_total counter\n");
        for (status, count) in [
            "BUILD_STATUS_SUCCEEDED",
            "BUILD_STATUS_FAILED",
            "BUILD_STATUS_CANCELLED",
        ]
        .iter()
        .zip(&self.builds_finished)
        {
            let _ = writeln!(
                out,
                "kiln_builds_finished_total{{status=\"{status}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        out.push_str(
            "# HELP kiln_queue_depth Builds waiting for a worker.\n# TYPE kiln_queue_depth gauge\n",
        );
        let _ = writeln!(out, "kiln_queue_depth {}", snapshot.queue_depth);
        out.push_str(
            "# HELP kiln_builds_running Builds running now.\n# TYPE kiln_builds_running gauge\n",
        );
        let _ = writeln!(out, "kiln_builds_running {}", snapshot.running);
        render_engines(&mut out, &snapshot.engines);
        out.push_str("# HELP kiln_build_duration_seconds Wall time of finished builds.\n# TYPE kiln_build_duration_seconds histogram\n");
        self.build_duration
            .render(&mut out, "kiln_build_duration_seconds", "");
        out.push_str("# HELP kiln_plugin_call_duration_seconds Wall time of plugin calls, by plugin and call.\n# TYPE kiln_plugin_call_duration_seconds histogram\n");
        for ((plugin, call), histogram) in self.plugin_calls.lock().unwrap().iter() {
            histogram.render(
                &mut out,
                "kiln_plugin_call_duration_seconds",
                &format!("plugin=\"{plugin}\",call=\"{call}\""),
            );
        }
        out.push_str("# HELP kiln_push_deliveries_total Push deliveries at projects' webhooks, by outcome (built; ignored: filtered out, deleted refs, other events; refused: no or a wrong signature).\n# TYPE kiln_push_deliveries_total counter\n");
        for (outcome, count) in ["built", "ignored", "refused"].iter().zip(&self.pushes) {
            let _ = writeln!(
                out,
                "kiln_push_deliveries_total{{outcome=\"{outcome}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP kiln_webhook_attempts_total Completion-webhook delivery attempts, by result (succeeded: a 2xx; retried: none, another attempt comes; failed: none, and the delivery was given up).\n# TYPE kiln_webhook_attempts_total counter\n");
        for (result, count) in ["succeeded", "retried", "failed"]
            .iter()
            .zip(&self.webhook_attempts)
        {
            let _ = writeln!(
                out,
                "kiln_webhook_attempts_total{{result=\"{result}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        self.render_gc(&mut out);
        out
    }

    fn render_gc(&self, out: &mut String) {
        let gc = self.gc.lock().unwrap();
        out.push_str("# HELP kiln_gc_runs_total Garbage collections since the host started (dry runs not counted).\n# TYPE kiln_gc_runs_total counter\n");
        let _ = writeln!(out, "kiln_gc_runs_total {}", gc.runs);
        out.push_str("# HELP kiln_gc_errors_total Things garbage collection could not remove.\n# TYPE kiln_gc_errors_total counter\n");
        let _ = writeln!(out, "kiln_gc_errors_total {}", gc.errors);
        out.push_str("# HELP kiln_gc_removed_total Things garbage collection removed, by kind.\n# TYPE kiln_gc_removed_total counter\n");
        for kind in crate::gc::KINDS {
            let (count, _) = gc.removed.get(kind).copied().unwrap_or_default();
            let _ = writeln!(out, "kiln_gc_removed_total{{kind=\"{kind}\"}} {count}");
        }
        out.push_str("# HELP kiln_gc_removed_bytes_total Bytes garbage collection freed, by kind (store records counted by their log's size).\n# TYPE kiln_gc_removed_bytes_total counter\n");
        for kind in crate::gc::KINDS {
            let (_, bytes) = gc.removed.get(kind).copied().unwrap_or_default();
            let _ = writeln!(
                out,
                "kiln_gc_removed_bytes_total{{kind=\"{kind}\"}} {bytes}"
            );
        }
        out.push_str("# HELP kiln_gc_last_run_timestamp_seconds When the last garbage collection finished (0: none yet).\n# TYPE kiln_gc_last_run_timestamp_seconds gauge\n");
        let _ = writeln!(
            out,
            "kiln_gc_last_run_timestamp_seconds {}",
            gc.last_run_unix_seconds
        );
    }
}

/// Per engine: up or not, drained or not, builds running and slots,
/// builds given since start, BuildKit cache size.
fn render_engines(out: &mut String, engines: &[kiln_api::Engine]) {
    type Read = fn(&kiln_api::Engine) -> Option<u64>;
    let gauges: [(&str, &str, &str, Read); 5] = [
        (
            "kiln_engine_up",
            "gauge",
            "1 when the engine's last check found it answering.",
            |e| Some((e.health == kiln_api::EngineHealth::Healthy) as u64),
        ),
        (
            "kiln_engine_draining",
            "gauge",
            "1 when an operator drained the engine.",
            |e| Some(e.draining as u64),
        ),
        (
            "kiln_engine_running_builds",
            "gauge",
            "Builds running on the engine now.",
            |e| Some(e.running_builds.len() as u64),
        ),
        (
            "kiln_engine_builds_started_total",
            "counter",
            "Builds the engine was given since the host started.",
            |e| Some(e.builds_started),
        ),
        (
            "kiln_engine_cache_bytes",
            "gauge",
            "The engine's BuildKit cache, as its last reading found it.",
            |e| e.cache_bytes,
        ),
    ];
    for (name, kind, help, value) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for engine in engines {
            if let Some(value) = value(engine) {
                let _ = writeln!(out, "{name}{{engine=\"{}\"}} {value}", engine.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_rendered_for_prometheus() {
        let metrics = Metrics::default();
        metrics.build_finished(BuildStatus::Succeeded, Duration::from_secs(3));
        metrics.build_finished(BuildStatus::Failed, Duration::from_secs(40));
        metrics.plugin_call("buildkit", "build", Duration::from_millis(20));
        let text = metrics.render(&Snapshot {
            queue_depth: 4,
            running: 2,
            engines: Vec::new(),
        });
        assert!(text.contains("kiln_builds_finished_total{status=\"BUILD_STATUS_SUCCEEDED\"} 1"));
        assert!(text.contains("kiln_build_duration_seconds_bucket{le=\"5\"} 1"));
        assert!(text.contains("kiln_build_duration_seconds_bucket{le=\"60\"} 2"));
        assert!(text.contains("kiln_build_duration_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("kiln_build_duration_seconds_sum 43"));
        assert!(text.contains("kiln_queue_depth 4\n"));
        assert!(text.contains(
            "kiln_plugin_call_duration_seconds_bucket{plugin=\"buildkit\",call=\"build\",le=\"0.05\"} 1"
        ));
    }
}
