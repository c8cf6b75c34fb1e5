//! What the engine counts, for Prometheus (`GET /metrics`, text exposition format):
//! runs started, parked at a wait and ended (by status), failed runs by the engine's
//! failure codes, guest activations, how long a call waited before its run took it, and
//! the answers given to calls from outside (by status class and error code), and how long
//! the store's durable commits take.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AnswerLabels {
    /// `2xx`, `4xx` or `5xx`.
    class: &'static str,
    /// The error's code (`overloaded`, `gone`...); `accepted` for a 2xx.
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: &'static str,
}

/// The failure codes the engine gives; a code a guest chose is counted as `guest`, so that
/// guests cannot grow the set of series.
const ENGINE_FAILURES: &[&str] = &[
    "cpu-limit",
    "memory-limit",
    "nondeterminism",
    "trap",
    "quota-exceeded",
    "storage",
    "host-call-misuse",
    "unreadable-log",
    "corrupt-log",
    "module-unavailable",
    "timeout",
];

pub struct Metrics {
    registry: Registry,
    runs_started: Counter,
    waits_parked: Counter,
    activations: Counter,
    runs_ended: Family<StatusLabel, Counter>,
    runs_failed: Family<CodeLabel, Counter>,
    resume_seconds: Histogram,
    calls: Family<AnswerLabels, Counter>,
}

impl Metrics {
    /// The engine's metrics, with the store's commit latency (`store_commit_seconds`).
    pub fn new(store_commits: Histogram) -> Self {
        let mut registry = Registry::with_prefix("latch");
        let runs_started = Counter::default();
        registry.register("runs_started", "Runs created", runs_started.clone());
        let waits_parked = Counter::default();
        registry.register("waits_parked", "Times a run parked at a wait for a call or a timer", waits_parked.clone());
        let activations = Counter::default();
        registry.register("activations", "Times a run's code was instantiated and run", activations.clone());
        let runs_ended = Family::<StatusLabel, Counter>::default();
        registry.register("runs_ended", "Runs that ended, by status", runs_ended.clone());
        let runs_failed = Family::<CodeLabel, Counter>::default();
        registry.register(
            "runs_failed",
            "Failed runs, by the engine's failure code (guest: the guest's own)",
            runs_failed.clone(),
        );
        // From a millisecond to a minute: a hot run takes a call in about one.
        let resume_seconds = Histogram::new([0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 60.0]);
        registry.register(
            "resume_seconds",
            "From a call's arrival until its run took it into its log",
            resume_seconds.clone(),
        );
        let calls = Family::<AnswerLabels, Counter>::default();
        registry.register("calls", "Calls to webhooks and triggers, by the answer they got", calls.clone());
        registry.register(
            "store_commit_seconds",
            "From asking for a write's durability until the store had it on disk",
            store_commits,
        );
        Metrics { registry, runs_started, waits_parked, activations, runs_ended, runs_failed, resume_seconds, calls }
    }

    pub fn run_started(&self) {
        self.runs_started.inc();
    }

    pub fn wait_parked(&self) {
        self.waits_parked.inc();
    }

    pub fn activated(&self) {
        self.activations.inc();
    }

    pub fn run_ended(&self, status: &'static str) {
        self.runs_ended.get_or_create(&StatusLabel { status }).inc();
    }

    pub fn run_failed(&self, code: &str) {
        let code = ENGINE_FAILURES.iter().find(|known| **known == code).copied().unwrap_or("guest");
        self.runs_failed.get_or_create(&CodeLabel { code }).inc();
    }

    /// A call was taken into its run's log `waited_ms` after it arrived.
    pub fn call_taken(&self, waited_ms: u64) {
        self.resume_seconds.observe(waited_ms as f64 / 1000.0);
    }

    /// A call from outside was answered `status`, with the error `code` unless a 2xx.
    pub fn call_answered(&self, status: u16, code: Option<&'static str>) {
        let class = match status {
            200..=299 => "2xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.calls.get_or_create(&AnswerLabels { class, code: code.unwrap_or("accepted") }).inc();
    }

    /// Everything counted, in Prometheus' text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_in_the_text_format() {
        let commits = Histogram::new([0.001, 0.01]);
        let metrics = Metrics::new(commits.clone());
        commits.observe(0.002);
        metrics.run_started();
        metrics.run_ended("completed");
        metrics.call_answered(202, None);
        metrics.call_answered(429, Some("overloaded"));
        metrics.run_failed("cpu-limit");
        metrics.run_failed("a-code-the-guest-made-up");
        metrics.call_taken(3);
        let text = metrics.encode();
        assert!(text.contains(r#"latch_runs_failed_total{code="cpu-limit"} 1"#), "{text}");
        assert!(text.contains(r#"latch_runs_failed_total{code="guest"} 1"#), "{text}");
        assert!(text.contains(r#"latch_resume_seconds_bucket{le="0.005"} 1"#), "{text}");
        assert!(text.contains("latch_runs_started_total 1"), "{text}");
        assert!(text.contains(r#"latch_store_commit_seconds_bucket{le="0.01"} 1"#), "{text}");
        assert!(text.contains(r#"latch_runs_ended_total{status="completed"} 1"#), "{text}");
        assert!(text.contains(r#"latch_calls_total{class="2xx",code="accepted"} 1"#), "{text}");
        assert!(text.contains(r#"latch_calls_total{class="4xx",code="overloaded"} 1"#), "{text}");
    }
}
