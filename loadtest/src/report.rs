//! Figures from the samples: per operation throughput, latency percentiles (HDR histograms),
//! errors by status, bytes, a per-second timeline, the workers' cache hit rate.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::memory::ProcessMemory;
use crate::runner::{Failure, Op, Outcome, Sample};
use crate::scenario::Scenario;

#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: Scenario,
    pub target: String,
    pub started_unix_ms: u128,
    pub elapsed_s: f64,
    pub setup: SetupReport,
    pub operations: BTreeMap<&'static str, OpStats>,
    pub total: OpStats,
    pub cache: Option<CacheReport>,
    /// Per second of the run (by completion time) and operation.
    pub timeline: Vec<TimePoint>,
    /// Latency histogram per operation: (upper bound in ms, calls), log-spaced buckets.
    pub histograms: BTreeMap<&'static str, Vec<(f64, u64)>>,
    pub failures_total: usize,
    /// The first failures, in order (all of them are counted in `errors`).
    pub failures: Vec<Failure>,
    pub fault: Option<FaultReport>,
    /// RSS of every spawned process through the run (gateway, worker0...).
    pub memory: Vec<ProcessMemory>,
}

#[derive(Debug, Default, Serialize)]
pub struct SetupReport {
    pub datasets_stored: usize,
    pub bytes: u64,
    pub seconds: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct OpStats {
    pub calls: u64,
    pub ok: u64,
    /// Failed calls by gRPC status (or CLIENT_* for checks made by the harness).
    pub errors: BTreeMap<String, u64>,
    /// Successful calls per second of the run.
    pub throughput_per_s: f64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Bytes both ways per second, MiB/s.
    pub mib_per_s: f64,
    pub rows: u64,
    /// Of successful calls.
    pub latency_ms: Latency,
}

#[derive(Debug, Default, Serialize)]
pub struct Latency {
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

#[derive(Debug, Serialize)]
pub struct TimePoint {
    pub second: u64,
    pub op: &'static str,
    pub calls: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct CacheReport {
    /// Over the run (after - before), all workers.
    pub hits: u64,
    pub misses: u64,
    pub hit_rate: f64,
    pub evictions: u64,
    pub workers: Vec<WorkerCache>,
}

#[derive(Debug, Default, Serialize)]
pub struct WorkerCache {
    pub endpoint: String,
    pub hits: u64,
    pub misses: u64,
    pub hit_rate: f64,
    pub evictions: u64,
    pub bytes: u64,
    pub capacity: u64,
    /// Set when CacheStats failed before or after the run.
    pub error: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct FaultReport {
    pub worker: String,
    /// The first kill.
    pub killed_at_s: Option<f64>,
    pub restarted_at_s: Option<f64>,
    /// Every kill: (killed at, restarted at), seconds into the run.
    pub kills: Vec<(f64, Option<f64>)>,
    /// Failed calls by operation, then status.
    pub failed: BTreeMap<&'static str, BTreeMap<String, u64>>,
    pub failed_total: usize,
}

fn new_hist() -> Histogram<u64> {
    // 1 µs .. 1 hour, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn stats(samples: &[&Sample], failures: &[&Failure], elapsed_s: f64) -> (OpStats, Histogram<u64>) {
    let mut h = new_hist();
    let mut s = OpStats::default();
    for x in samples {
        s.calls += 1;
        s.bytes_sent += x.moved.sent;
        s.bytes_received += x.moved.received;
        s.rows += x.moved.rows;
        if x.ok {
            s.ok += 1;
            h.saturating_record(x.latency_us);
        }
    }
    for f in failures {
        *s.errors.entry(f.status.clone()).or_default() += 1;
    }
    s.throughput_per_s = s.ok as f64 / elapsed_s.max(1e-9);
    s.mib_per_s = (s.bytes_sent + s.bytes_received) as f64 / (1 << 20) as f64 / elapsed_s.max(1e-9);
    if !h.is_empty() {
        s.latency_ms = Latency {
            min: ms(h.min()),
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        };
    }
    (s, h)
}

fn buckets(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    if h.is_empty() {
        return Vec::new();
    }
    // From the bucket before the first call, so that the chart starts where the data does.
    let all: Vec<(f64, u64)> = h
        .iter_log(10, 1.25)
        .map(|v| (ms(v.value_iterated_to()), v.count_since_last_iteration()))
        .collect();
    let first = all.iter().position(|(_, n)| *n > 0).unwrap_or(0);
    all[first.saturating_sub(1)..].to_vec()
}

pub fn build(
    scenario: Scenario,
    target: String,
    started_unix_ms: u128,
    outcome: &Outcome,
    setup: SetupReport,
) -> Report {
    let elapsed_s = outcome.elapsed.as_secs_f64();
    let mut operations = BTreeMap::new();
    let mut histograms = BTreeMap::new();
    let mut timeline = Vec::new();
    for op in Op::ALL {
        let samples: Vec<&Sample> = outcome.samples.iter().filter(|s| s.op == op).collect();
        if samples.is_empty() {
            continue;
        }
        let failures: Vec<&Failure> = outcome.failures.iter().filter(|f| f.op == op).collect();
        let (s, h) = stats(&samples, &failures, elapsed_s);
        histograms.insert(op.name(), buckets(&h));
        operations.insert(op.name(), s);
        // Per-second points by completion time.
        let mut per_second: BTreeMap<u64, (Vec<u64>, u64)> = BTreeMap::new();
        for x in &samples {
            let e = per_second
                .entry((x.start_us + x.latency_us) / 1_000_000)
                .or_default();
            if x.ok {
                e.0.push(x.latency_us);
            } else {
                e.1 += 1;
            }
        }
        for (second, (mut lat, errors)) in per_second {
            lat.sort_unstable();
            let q = |p: f64| {
                if lat.is_empty() {
                    0.0
                } else {
                    ms(lat[((lat.len() - 1) as f64 * p).round() as usize])
                }
            };
            timeline.push(TimePoint {
                second,
                op: op.name(),
                calls: lat.len() as u64 + errors,
                errors,
                p50_ms: q(0.5),
                p99_ms: q(0.99),
            });
        }
    }
    let all: Vec<&Sample> = outcome.samples.iter().collect();
    let all_failures: Vec<&Failure> = outcome.failures.iter().collect();
    let (total, _) = stats(&all, &all_failures, elapsed_s);
    Report {
        scenario,
        target,
        started_unix_ms,
        elapsed_s,
        setup,
        operations,
        total,
        cache: None,
        timeline,
        histograms,
        failures_total: outcome.failures.len(),
        failures: outcome.failures.iter().take(200).cloned().collect(),
        fault: None,
        memory: Vec::new(),
    }
}

pub fn fault_summary(
    outcome: &Outcome,
    worker: String,
    kills: Vec<(f64, Option<f64>)>,
) -> FaultReport {
    let mut failed: BTreeMap<&'static str, BTreeMap<String, u64>> = BTreeMap::new();
    for f in &outcome.failures {
        *failed
            .entry(f.op.name())
            .or_default()
            .entry(f.status.clone())
            .or_default() += 1;
    }
    FaultReport {
        worker,
        killed_at_s: kills.first().map(|k| k.0),
        restarted_at_s: kills.first().and_then(|k| k.1),
        kills,
        failed,
        failed_total: outcome.failures.len(),
    }
}

/// A plain-text table for the terminal.
pub fn print_summary(r: &Report) {
    println!(
        "scenario {:?} against {} for {:.1} s ({:?} loop, concurrency {})",
        r.scenario.name, r.target, r.elapsed_s, r.scenario.run.mode, r.scenario.run.concurrency
    );
    println!(
        "{:<12} {:>8} {:>7} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}  errors",
        "op", "calls", "ok", "calls/s", "MiB/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
    );
    let line = |name: &str, s: &OpStats| {
        let errors: Vec<String> = s.errors.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "{:<12} {:>8} {:>7} {:>10.1} {:>10.1} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}  {}",
            name,
            s.calls,
            s.ok,
            s.throughput_per_s,
            s.mib_per_s,
            s.latency_ms.p50,
            s.latency_ms.p90,
            s.latency_ms.p99,
            s.latency_ms.p999,
            s.latency_ms.max,
            errors.join(" ")
        );
    };
    for (name, s) in &r.operations {
        line(name, s);
    }
    line("total", &r.total);
    if let Some(c) = &r.cache {
        println!(
            "cache: {} hits, {} misses, hit rate {:.3}, {} evictions",
            c.hits, c.misses, c.hit_rate, c.evictions
        );
    }
    if let Some(f) = &r.fault {
        println!(
            "fault: worker {} killed {} times (first at {:?} s, restarted at {:?} s); {} calls failed: {:?}",
            f.worker,
            f.kills.len(),
            f.killed_at_s,
            f.restarted_at_s,
            f.failed_total,
            f.failed
        );
    }
    for m in &r.memory {
        println!(
            "memory: {:<8} RSS {:.0} -> {:.0} MiB (peak {:.0}), slope {}, {} life(s)",
            m.process,
            m.start_mib,
            m.end_mib,
            m.peak_mib,
            m.slope_mib_per_hour
                .map(|s| format!("{s:+.1} MiB/h"))
                .unwrap_or_else(|| "n/a".into()),
            m.lives
        );
    }
}
