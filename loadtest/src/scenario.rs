//! Scenario files (TOML): which calls, on which datasets, how hard and for how long.
//! `loadtest/scenarios/example.toml` documents every field.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default = "default_name")]
    pub name: String,
    #[serde(default)]
    pub datasets: Datasets,
    #[serde(default)]
    pub keys: Keys,
    #[serde(default)]
    pub mix: Mix,
    #[serde(default)]
    pub load: LoadOpts,
    #[serde(default)]
    pub query: QueryOpts,
    #[serde(default)]
    pub run: Run,
}

fn default_name() -> String {
    "scenario".into()
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Datasets {
    /// Datasets are named `{prefix}_{index:04}`.
    pub prefix: String,
    pub count: usize,
    pub rows: usize,
    /// Column 0 (`k`) is an Int64 group key in 0..key_cardinality; the others alternate Float64
    /// and Int64 random values (`c1`, `c2`, ...).
    pub columns: usize,
    pub key_cardinality: i64,
    /// Rows per record batch in the uploaded IPC stream.
    pub batch_rows: usize,
    /// `store`: store every dataset before the run; `skip`: they exist already.
    pub setup: Setup,
    pub seed: u64,
}

impl Default for Datasets {
    fn default() -> Self {
        Datasets {
            prefix: "lt".into(),
            count: 4,
            rows: 10_000,
            columns: 4,
            key_cardinality: 100,
            batch_rows: 65_536,
            setup: Setup::Store,
            seed: 42,
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Setup {
    Store,
    Skip,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Keys {
    pub distribution: Distribution,
    /// Zipf exponent s: dataset i (0-based) is chosen with probability ∝ 1/(i+1)^s.
    pub exponent: f64,
}

impl Default for Keys {
    fn default() -> Self {
        Keys {
            distribution: Distribution::Uniform,
            exponent: 1.0,
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Distribution {
    Uniform,
    Zipf,
}

/// Relative weights of each operation (0: never).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mix {
    pub store: u32,
    pub load: u32,
    pub load_stream: u32,
    pub query: u32,
    pub describe: u32,
    pub list: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            store: 0,
            load: 1,
            load_stream: 0,
            query: 0,
            describe: 0,
            list: 0,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoadOpts {
    /// Projection (empty: all columns).
    pub columns: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryOpts {
    /// `{table}` is replaced by the chosen dataset's name.
    pub sql: String,
}

impl Default for QueryOpts {
    fn default() -> Self {
        QueryOpts {
            sql: "SELECT k, COUNT(*) AS n, SUM(c1) AS s FROM {table} GROUP BY k".into(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Run {
    /// `closed`: `concurrency` callers, each sends its next call when the last one ends.
    /// `open`: calls start at `rate` per second whatever the answers; latency is counted from the
    /// intended send time (no coordinated omission), at most `concurrency` in flight.
    pub mode: Mode,
    pub concurrency: usize,
    pub rate: f64,
    /// HTTP/2 connections shared by the callers.
    pub connections: usize,
    /// Bounds: the run stops at whichever comes first (0: no bound of that kind; one is needed).
    pub duration_secs: f64,
    pub calls: u64,
    /// Calls made (sequentially, unrecorded) before the measured run, e.g. to warm caches.
    pub warmup_calls: u64,
    /// Deadline of each call.
    pub timeout_secs: f64,
}

impl Default for Run {
    fn default() -> Self {
        Run {
            mode: Mode::Closed,
            concurrency: 4,
            rate: 0.0,
            connections: 1,
            duration_secs: 10.0,
            calls: 0,
            warmup_calls: 0,
            timeout_secs: 60.0,
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Closed,
    Open,
}

impl Scenario {
    /// Read a scenario file (or the defaults with `None`), then apply `section.key=value`
    /// overrides (values in TOML syntax; bare words are taken as strings).
    pub fn load(path: Option<&std::path::Path>, sets: &[String]) -> Result<Scenario> {
        let mut table: toml::Table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read {}", p.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("{} is not a valid scenario", p.display()))?
            }
            None => toml::Table::new(),
        };
        for set in sets {
            let (key, value) = set
                .split_once('=')
                .with_context(|| format!("--set {set:?}: expected key=value"))?;
            let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {value}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(value.to_string()));
            let mut parts: Vec<&str> = key.split('.').collect();
            let last = parts.pop().unwrap();
            let mut node = &mut table;
            for part in parts {
                node = node
                    .entry(part)
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                    .as_table_mut()
                    .with_context(|| format!("--set {set:?}: {part} is not a section"))?;
            }
            node.insert(last.to_string(), value);
        }
        let scenario: Scenario = toml::Value::Table(table)
            .try_into()
            .context("invalid scenario")?;
        scenario.validate()?;
        Ok(scenario)
    }

    fn validate(&self) -> Result<()> {
        let m = &self.mix;
        if m.store + m.load + m.load_stream + m.query + m.describe + m.list == 0 {
            bail!("the mix has no operation with a weight above 0");
        }
        if self.datasets.count == 0 || self.datasets.columns == 0 || self.datasets.batch_rows == 0 {
            bail!("datasets.count, datasets.columns and datasets.batch_rows must be at least 1");
        }
        if self.run.duration_secs <= 0.0 && self.run.calls == 0 {
            bail!("the run needs a bound: run.duration_secs and/or run.calls");
        }
        if self.run.concurrency == 0 || self.run.connections == 0 {
            bail!("run.concurrency and run.connections must be at least 1");
        }
        if self.run.mode == Mode::Open && self.run.rate <= 0.0 {
            bail!("run.mode = \"open\" needs run.rate (calls per second)");
        }
        if self.keys.distribution == Distribution::Zipf && self.keys.exponent <= 0.0 {
            bail!("keys.exponent must be above 0");
        }
        Ok(())
    }

    pub fn dataset_name(&self, index: usize) -> String {
        format!("{}_{index:04}", self.datasets.prefix)
    }
}
