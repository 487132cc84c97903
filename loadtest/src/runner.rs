//! The measured run: closed loop (N callers back to back) or open loop (a fixed start rate,
//! latency counted from each call's intended start so that a slow server cannot hide its queue).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::client::{CallError, CallResult, Client, Moved};
use crate::scenario::{Distribution, Mode, Scenario};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Store,
    Load,
    LoadStream,
    Query,
    Describe,
    List,
}

impl Op {
    pub const ALL: [Op; 6] = [
        Op::Store,
        Op::Load,
        Op::LoadStream,
        Op::Query,
        Op::Describe,
        Op::List,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Op::Store => "store",
            Op::Load => "load",
            Op::LoadStream => "load_stream",
            Op::Query => "query",
            Op::Describe => "describe",
            Op::List => "list",
        }
    }
}

/// One finished call. Times are microseconds since the run's start.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub op: Op,
    pub start_us: u64,
    pub latency_us: u64,
    pub ok: bool,
    pub moved: Moved,
}

#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    pub at_s: f64,
    pub op: Op,
    pub dataset: String,
    pub status: String,
    pub message: String,
}

pub struct Plan {
    pub scenario: Scenario,
    pub clients: Vec<Client>,
    pub names: Vec<String>,
    /// Encoded datasets, for store calls (empty when the mix has none).
    pub ipc: Vec<Bytes>,
    ops: Vec<(Op, u32)>,
    key_cdf: Vec<f64>,
}

#[derive(Default)]
pub struct Outcome {
    pub samples: Vec<Sample>,
    pub failures: Vec<Failure>,
    pub elapsed: Duration,
}

impl Plan {
    pub fn new(scenario: Scenario, clients: Vec<Client>, ipc: Vec<Bytes>) -> Plan {
        let m = &scenario.mix;
        let ops = [
            (Op::Store, m.store),
            (Op::Load, m.load),
            (Op::LoadStream, m.load_stream),
            (Op::Query, m.query),
            (Op::Describe, m.describe),
            (Op::List, m.list),
        ]
        .into_iter()
        .filter(|(_, w)| *w > 0)
        .collect();
        let n = scenario.datasets.count;
        let weights: Vec<f64> = match scenario.keys.distribution {
            Distribution::Uniform => vec![1.0; n],
            Distribution::Zipf => (0..n)
                .map(|i| 1.0 / ((i + 1) as f64).powf(scenario.keys.exponent))
                .collect(),
        };
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let key_cdf = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        let names = (0..n).map(|i| scenario.dataset_name(i)).collect();
        Plan {
            scenario,
            clients,
            names,
            ipc,
            ops,
            key_cdf,
        }
    }

    fn pick(&self, rng: &mut SmallRng) -> (Op, usize) {
        let total: u32 = self.ops.iter().map(|(_, w)| w).sum();
        let mut r = rng.random_range(0..total);
        let mut op = self.ops[0].0;
        for (o, w) in &self.ops {
            if r < *w {
                op = *o;
                break;
            }
            r -= w;
        }
        let u: f64 = rng.random();
        let key = self
            .key_cdf
            .partition_point(|c| *c < u)
            .min(self.names.len() - 1);
        (op, key)
    }

    /// Stores write `<dataset>_w` so that loads of the dataset itself stay warm.
    fn target_name(&self, op: Op, key: usize) -> String {
        match op {
            Op::Store => format!("{}_w", self.names[key]),
            _ => self.names[key].clone(),
        }
    }

    async fn call(&self, client: &Client, op: Op, key: usize) -> CallResult {
        let name = self.target_name(op, key);
        match op {
            Op::Store => match self.ipc.get(key) {
                Some(ipc) => client.store(&name, ipc).await.map(|(m, _)| m),
                None => Err(CallError {
                    status: "CLIENT_SETUP".into(),
                    message: "no data to store".into(),
                }),
            },
            Op::Load => client.load(&name, &self.scenario.load.columns, true).await,
            Op::LoadStream => client.load(&name, &self.scenario.load.columns, false).await,
            Op::Query => {
                client
                    .query(&self.scenario.query.sql.replace("{table}", &name), &name)
                    .await
            }
            Op::Describe => client.describe(&name).await,
            Op::List => client.list(&self.scenario.datasets.prefix).await,
        }
    }

    /// Unrecorded calls before the run (sequential, on the first connection).
    pub async fn warmup(&self) {
        let mut rng = SmallRng::seed_from_u64(self.scenario.datasets.seed ^ 0x5eed);
        for _ in 0..self.scenario.run.warmup_calls {
            let (op, key) = self.pick(&mut rng);
            let _ = self.call(&self.clients[0], op, key).await;
        }
    }

    pub async fn run(self: Arc<Self>) -> Outcome {
        let run = self.scenario.run.clone();
        let start = Instant::now();
        let deadline =
            (run.duration_secs > 0.0).then(|| start + Duration::from_secs_f64(run.duration_secs));
        let out = Arc::new(Mutex::new(Outcome::default()));
        let issued = Arc::new(AtomicU64::new(0));
        let record = {
            let out = out.clone();
            let plan = self.clone();
            move |op: Op, key: usize, began: Instant, result: CallResult| {
                let end = Instant::now();
                let mut o = out.lock().unwrap();
                let ok = result.is_ok();
                let moved = match result {
                    Ok(m) => m,
                    Err(e) => {
                        o.failures.push(Failure {
                            at_s: end.duration_since(start).as_secs_f64(),
                            op,
                            dataset: plan.target_name(op, key),
                            status: e.status,
                            message: e.message.chars().take(300).collect(),
                        });
                        Moved::default()
                    }
                };
                o.samples.push(Sample {
                    op,
                    start_us: began.saturating_duration_since(start).as_micros() as u64,
                    latency_us: end.saturating_duration_since(began).as_micros().max(1) as u64,
                    ok,
                    moved,
                });
            }
        };
        match run.mode {
            Mode::Closed => {
                let mut tasks = Vec::new();
                for caller in 0..run.concurrency {
                    let plan = self.clone();
                    let issued = issued.clone();
                    let record = record.clone();
                    tasks.push(tokio::spawn(async move {
                        let mut rng = SmallRng::seed_from_u64(
                            plan.scenario
                                .datasets
                                .seed
                                .wrapping_mul(31)
                                .wrapping_add(caller as u64),
                        );
                        let client = &plan.clients[caller % plan.clients.len()];
                        loop {
                            if deadline.is_some_and(|d| Instant::now() >= d) {
                                break;
                            }
                            if run.calls > 0 && issued.fetch_add(1, Ordering::Relaxed) >= run.calls
                            {
                                break;
                            }
                            let (op, key) = plan.pick(&mut rng);
                            let began = Instant::now();
                            let result = plan.call(client, op, key).await;
                            record(op, key, began, result);
                        }
                    }));
                }
                for t in tasks {
                    let _ = t.await;
                }
            }
            Mode::Open => {
                let permits = Arc::new(tokio::sync::Semaphore::new(run.concurrency));
                let mut rng = SmallRng::seed_from_u64(plan_seed(&self));
                let period = Duration::from_secs_f64(1.0 / run.rate);
                for i in 0u64.. {
                    let intended = start + period.mul_f64(i as f64);
                    if deadline.is_some_and(|d| intended >= d) || (run.calls > 0 && i >= run.calls)
                    {
                        break;
                    }
                    tokio::time::sleep_until(intended.into()).await;
                    // Waiting for a free slot counts in the latency: it starts at `intended`.
                    let permit = permits.clone().acquire_owned().await.unwrap();
                    let (op, key) = self.pick(&mut rng);
                    let plan = self.clone();
                    let record = record.clone();
                    tokio::spawn(async move {
                        let client = &plan.clients[i as usize % plan.clients.len()];
                        let result = plan.call(client, op, key).await;
                        record(op, key, intended, result);
                        drop(permit);
                    });
                }
                let _ = permits.acquire_many(run.concurrency as u32).await;
            }
        }
        let elapsed = start.elapsed();
        drop(record);
        let mut o = std::mem::take(&mut *out.lock().unwrap());
        o.elapsed = elapsed;
        o.samples.sort_by_key(|s| s.start_us);
        o
    }
}

fn plan_seed(plan: &Plan) -> u64 {
    plan.scenario.datasets.seed ^ 0x0be7
}
