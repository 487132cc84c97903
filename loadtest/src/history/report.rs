//! The history run's report: counts, faults, anomalies with their witnesses, as text, JSON and
//! a self-contained HTML page.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use super::check::{Anomaly, Final, Op, Outcome};
use super::{Fault, HistoryOpts};
use crate::html::{esc, line_chart, Series};

#[derive(Debug, Default, Serialize)]
pub struct Counts {
    pub operations: usize,
    pub stores_acknowledged: usize,
    pub stores_refused: usize,
    pub stores_unknown: usize,
    pub loads_ok: usize,
    pub loads_failed: usize,
    /// Failed calls by gRPC code.
    pub failures_by_code: BTreeMap<String, usize>,
}

#[derive(Debug, Serialize)]
pub struct HistoryReport {
    pub seconds: f64,
    pub workers: usize,
    pub clients: usize,
    pub datasets: usize,
    pub seed: u64,
    pub counts: Counts,
    pub faults: Vec<Fault>,
    /// Versions per dataset, as read back after the run.
    pub versions: BTreeMap<String, u64>,
    pub anomalies: Vec<Anomaly>,
    /// The operations that witness the anomalies (all of them, when there are few).
    pub witnesses: Vec<Op>,
    #[serde(skip)]
    per_second: Vec<(f64, f64)>,
    #[serde(skip)]
    failed_per_second: Vec<(f64, f64)>,
}

impl HistoryReport {
    pub fn new(
        opts: &HistoryOpts,
        seconds: f64,
        ops: Vec<Op>,
        faults: Vec<Fault>,
        finals: BTreeMap<String, Final>,
        anomalies: Vec<Anomaly>,
    ) -> Self {
        let mut counts = Counts {
            operations: ops.len(),
            ..Default::default()
        };
        let secs = seconds.ceil().max(1.0) as usize;
        let (mut ok, mut failed) = (vec![0.0; secs], vec![0.0; secs]);
        for op in &ops {
            let bucket = ((op.end_us / 1_000_000) as usize).min(secs - 1);
            let code = match &op.outcome {
                Outcome::Stored { .. } => {
                    counts.stores_acknowledged += 1;
                    None
                }
                Outcome::Loaded { .. } => {
                    counts.loads_ok += 1;
                    None
                }
                Outcome::Refused { code } => {
                    counts.stores_refused += 1;
                    Some(code)
                }
                Outcome::Unknown { code } => {
                    counts.stores_unknown += 1;
                    Some(code)
                }
                Outcome::LoadFailed { code } => {
                    counts.loads_failed += 1;
                    Some(code)
                }
            };
            match code {
                Some(code) => {
                    *counts.failures_by_code.entry(code.clone()).or_default() += 1;
                    failed[bucket] += 1.0;
                }
                None => ok[bucket] += 1.0,
            }
        }
        let mut wanted: Vec<usize> = anomalies
            .iter()
            .flat_map(|a| a.ops.iter().copied())
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        wanted.truncate(200);
        let witnesses = wanted
            .iter()
            .filter_map(|id| ops.get(*id).cloned())
            .collect();
        let series = |v: Vec<f64>| {
            v.into_iter()
                .enumerate()
                .map(|(i, n)| (i as f64 + 0.5, n))
                .collect()
        };
        HistoryReport {
            seconds,
            workers: opts.workers,
            clients: opts.clients,
            datasets: opts.datasets,
            seed: opts.seed,
            counts,
            faults,
            versions: finals.iter().map(|(k, f)| (k.clone(), f.latest)).collect(),
            anomalies,
            witnesses,
            per_second: series(ok),
            failed_per_second: series(failed),
        }
    }

    pub fn print(&self) {
        let c = &self.counts;
        println!(
            "history: {} operations in {:.1} s ({} clients, {} datasets, {} workers, seed {})",
            c.operations, self.seconds, self.clients, self.datasets, self.workers, self.seed
        );
        println!(
            "  stores: {} acknowledged, {} refused, {} unknown; loads: {} ok, {} failed",
            c.stores_acknowledged, c.stores_refused, c.stores_unknown, c.loads_ok, c.loads_failed
        );
        if !c.failures_by_code.is_empty() {
            let codes: Vec<String> = c
                .failures_by_code
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            println!("  failed calls by code: {}", codes.join(", "));
        }
        let kinds: BTreeMap<&str, usize> = self.faults.iter().fold(BTreeMap::new(), |mut m, f| {
            *m.entry(f.kind).or_default() += 1;
            m
        });
        let kinds: Vec<String> = kinds.iter().map(|(k, v)| format!("{v} x {k}")).collect();
        println!(
            "  faults injected: {} ({})",
            self.faults.len(),
            kinds.join(", ")
        );
        let versions: Vec<String> = self
            .versions
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!("  versions read back: {}", versions.join(", "));
        println!("  anomalies: {}", self.anomalies.len());
        for a in self.anomalies.iter().take(20) {
            println!("    {} on {}: {}", a.kind, a.dataset, a.detail);
            for id in &a.ops {
                if let Some(op) = self.witnesses.iter().find(|o| o.id == *id) {
                    println!("      {}", describe(op));
                }
            }
        }
    }

    pub fn html(&self) -> String {
        let c = &self.counts;
        let mut h = String::new();
        let _ = write!(
            h,
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Polarway history check</title>\
             <style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}td,th{{padding:2px 10px;text-align:left}}\
             .bad{{color:#b00}} .good{{color:#080}}</style></head><body><h1>History check</h1>"
        );
        let verdict = if self.anomalies.is_empty() {
            "<p class=\"good\"><b>No anomalies.</b></p>".to_string()
        } else {
            format!(
                "<p class=\"bad\"><b>{} anomalies.</b></p>",
                self.anomalies.len()
            )
        };
        let _ = write!(
            h,
            "{verdict}<table><tr><th>seconds</th><td>{:.1}</td></tr><tr><th>workers / clients / datasets</th><td>{} / {} / {}</td></tr>\
             <tr><th>operations</th><td>{}</td></tr><tr><th>stores acknowledged / refused / unknown</th><td>{} / {} / {}</td></tr>\
             <tr><th>loads ok / failed</th><td>{} / {}</td></tr><tr><th>faults injected</th><td>{}</td></tr><tr><th>seed</th><td>{}</td></tr></table>",
            self.seconds, self.workers, self.clients, self.datasets, c.operations, c.stores_acknowledged,
            c.stores_refused, c.stores_unknown, c.loads_ok, c.loads_failed, self.faults.len(), self.seed
        );
        let markers: Vec<(f64, String)> = self
            .faults
            .iter()
            .map(|f| (f.at_s, f.kind.to_string()))
            .collect();
        h.push_str(&line_chart(
            "Operations per second (faults marked)",
            "seconds",
            "operations",
            &[
                Series {
                    name: "succeeded".into(),
                    color: "#2ca02c",
                    dashed: false,
                    points: self.per_second.clone(),
                },
                Series {
                    name: "failed".into(),
                    color: "#d62728",
                    dashed: false,
                    points: self.failed_per_second.clone(),
                },
            ],
            false,
            &markers,
        ));
        h.push_str("<h2>Failed calls by code</h2><table><tr><th>code</th><th>calls</th></tr>");
        for (code, n) in &c.failures_by_code {
            let _ = write!(h, "<tr><td>{}</td><td>{n}</td></tr>", esc(code));
        }
        h.push_str("</table><h2>Faults</h2><table><tr><th>fault</th><th>target</th><th>at (s)</th><th>healed (s)</th></tr>");
        for f in &self.faults {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td></tr>",
                esc(f.kind),
                esc(&f.target),
                f.at_s,
                f.healed_s
            );
        }
        h.push_str("</table><h2>Anomalies</h2>");
        if self.anomalies.is_empty() {
            h.push_str("<p>None.</p>");
        }
        for a in &self.anomalies {
            let _ = write!(
                h,
                "<h3 class=\"bad\">{} on {}</h3><p>{}</p><ul>",
                esc(a.kind),
                esc(&a.dataset),
                esc(&a.detail)
            );
            for id in &a.ops {
                if let Some(op) = self.witnesses.iter().find(|o| o.id == *id) {
                    let _ = write!(h, "<li><code>{}</code></li>", esc(&describe(op)));
                }
            }
            h.push_str("</ul>");
        }
        h.push_str("</body></html>");
        h
    }
}

/// One operation, as a line of the witness.
fn describe(op: &Op) -> String {
    let what = match op.write {
        Some(w) => format!("store write {w} {:?}", op.cond),
        None => "load".to_string(),
    };
    format!(
        "#{} client {} {} {} [{:.3} s, {:.3} s] -> {:?}",
        op.id,
        op.client,
        what,
        op.dataset,
        op.start_us as f64 / 1e6,
        op.end_us as f64 / 1e6,
        op.outcome
    )
}
