//! `--history SECS`: many clients doing conditional stores and loads on a few datasets through the
//! gateway of a spawned cluster on one S3-compatible server, while a nemesis kills and restarts
//! workers (kill -9) and cuts the S3 server off (a TCP proxy it controls). Every call's start, end
//! and outcome is recorded; afterwards, with the faults healed, every version of every dataset is
//! read back and the history is checked (see `check`).

mod check;
mod report;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use arrow::array::{Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use polarway_proto::v1 as pb;
use rand::{Rng, SeedableRng};
use tokio::sync::Mutex;

use crate::client::{CallError, Client, ConnectOpts};
use crate::cluster::{Cluster, ClusterOpts};
use crate::tcpproxy::CutProxy;
use check::{Cond, Final, Op, Outcome, Read};
pub use report::HistoryReport;

/// Rows in each write: enough that a half-visible write would show.
const ROWS: usize = 1000;

pub struct HistoryOpts {
    pub duration: Duration,
    pub workers: usize,
    pub clients: usize,
    pub datasets: usize,
    /// A fault starts this often (and is healed before the next).
    pub nemesis_every: Duration,
    pub s3_endpoint: String,
    pub s3_bucket: String,
    pub bin_dir: PathBuf,
    pub worker_args: Vec<String>,
    pub json: Option<PathBuf>,
    pub html: Option<PathBuf>,
    pub seed: u64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Fault {
    pub kind: &'static str,
    pub target: String,
    pub at_s: f64,
    pub healed_s: f64,
}

/// Run, check, report. `Ok(true)` when the history has anomalies.
pub async fn run(opts: HistoryOpts) -> Result<bool> {
    let upstream = opts
        .s3_endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    if upstream.contains('/') || opts.s3_endpoint.starts_with("https://") {
        bail!("--s3-endpoint must be http://host:port (the nemesis proxies it in plain TCP)");
    }
    let proxy = CutProxy::start(upstream).await?;
    // A fresh prefix per run: runs can share a bucket.
    let prefix = format!("history-{}-{}", std::process::id(), opts.seed);
    let mut worker_args: Vec<String> = [
        "--handle-store",
        "s3",
        "--s3-bucket",
        &opts.s3_bucket,
        "--s3-endpoint",
        &format!("http://{}", proxy.addr),
        "--s3-path-style",
        "--s3-prefix",
        &prefix,
        "--s3-timeout",
        "3",
        // Every version stays readable, for the read-back.
        "--retain-versions",
        "1000000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    worker_args.extend(opts.worker_args.iter().cloned());
    let cluster = Cluster::start(&ClusterOpts {
        bin_dir: opts.bin_dir.clone(),
        workers: opts.workers,
        // Every call to the next worker: writers of one dataset race through all of them.
        routing: "round-robin".into(),
        cache_size_gb: 0.25,
        worker_args,
        gateway_args: Vec::new(),
        shared_state: false,
    })
    .await?;
    let url = cluster.gateway.url();
    eprintln!(
        "history: {} clients, {} datasets, {} workers, {:?}, a fault every {:?}",
        opts.clients, opts.datasets, opts.workers, opts.duration, opts.nemesis_every
    );

    let t0 = Instant::now();
    let deadline = t0 + opts.duration;
    let ops = Arc::new(Mutex::new(Vec::<Op>::new()));
    let mut tasks = Vec::new();
    for c in 0..opts.clients {
        let client =
            Client::connect(&url, &ConnectOpts::default(), Duration::from_secs(20)).await?;
        let ops = ops.clone();
        let datasets = opts.datasets;
        let seed = opts.seed.wrapping_add(c as u64);
        tasks.push(tokio::spawn(async move {
            client_loop(c, client, datasets, seed, t0, deadline, ops).await
        }));
    }
    let nemesis = tokio::spawn(nemesis(
        cluster,
        proxy,
        opts.nemesis_every,
        opts.seed,
        t0,
        deadline,
    ));
    for t in tasks {
        t.await.context("a client task panicked")?;
    }
    let (cluster, proxy, faults) = nemesis.await.context("the nemesis panicked")?;
    let run_s = t0.elapsed().as_secs_f64();

    // Read back every version of every dataset, faults healed.
    let reader = Client::connect(&url, &ConnectOpts::default(), Duration::from_secs(20)).await?;
    let mut finals = BTreeMap::new();
    for d in 0..opts.datasets {
        let name = dataset(d);
        finals.insert(name.clone(), read_back(&reader, &name).await?);
    }
    drop(cluster);
    drop(proxy);

    let ops = std::mem::take(&mut *ops.lock().await);
    let anomalies = check::check(&ops, &finals);
    let report = HistoryReport::new(&opts, run_s, ops, faults, finals, anomalies);
    report.print();
    if let Some(path) = &opts.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &opts.html {
        std::fs::write(path, report.html())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(!report.anomalies.is_empty())
}

fn dataset(d: usize) -> String {
    format!("h{d}")
}

fn us(t0: Instant) -> u64 {
    t0.elapsed().as_micros() as u64
}

/// One client: a random dataset, then a load or a store under a random condition, until the
/// deadline. The version it expects in `IfVersion` is the last one it saw of that dataset.
async fn client_loop(
    c: usize,
    client: Client,
    datasets: usize,
    seed: u64,
    t0: Instant,
    deadline: Instant,
    ops: Arc<Mutex<Vec<Op>>>,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut seen = vec![0u64; datasets];
    let mut n = 0u64;
    while Instant::now() < deadline {
        let d = rng.random_range(0..datasets);
        let name = dataset(d);
        let start_us = us(t0);
        let (write, cond, outcome) = if rng.random_bool(0.5) {
            let outcome = match client.load_rows(&name, None).await {
                Ok((version, batches)) => {
                    seen[d] = seen[d].max(version);
                    Outcome::Loaded {
                        version,
                        read: read_of(&batches),
                    }
                }
                Err(e) => Outcome::LoadFailed { code: e.status },
            };
            (None, Cond::None, outcome)
        } else {
            // Write ids: client in the high bits, so they are unique without coordination.
            let write = ((c as u64) << 40) | n;
            n += 1;
            let cond = match rng.random_range(0..3) {
                0 => Cond::None,
                1 => Cond::IfAbsent,
                _ => Cond::IfVersion(seen[d]),
            };
            let outcome = match client
                .store_with(&name, &frame(write), condition(cond))
                .await
            {
                Ok((_, info)) => {
                    seen[d] = seen[d].max(info.version);
                    Outcome::Stored {
                        version: info.version,
                    }
                }
                Err(CallError { status, .. }) if check::definite_refusal(&status) => {
                    Outcome::Refused { code: status }
                }
                Err(CallError { status, .. }) => Outcome::Unknown { code: status },
            };
            (Some(write), cond, outcome)
        };
        let mut ops = ops.lock().await;
        let id = ops.len();
        ops.push(Op {
            id,
            client: c,
            dataset: name,
            write,
            cond,
            start_us,
            end_us: us(t0),
            outcome,
        });
    }
}

fn condition(cond: Cond) -> Option<pb::Condition> {
    use pb::condition::Kind;
    let kind = match cond {
        Cond::None => return None,
        Cond::IfAbsent => Kind::IfAbsent(true),
        // IfVersion(0): the client has seen nothing yet; the store is refused unless absent.
        Cond::IfVersion(v) => Kind::IfVersion(v),
    };
    Some(pb::Condition { kind: Some(kind) })
}

/// `w` (the write id in every row) and `i` (0..ROWS), as one IPC stream.
fn frame(write: u64) -> Bytes {
    let schema = Arc::new(Schema::new(vec![
        Field::new("w", DataType::UInt64, false),
        Field::new("i", DataType::UInt64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(UInt64Array::from(vec![write; ROWS])),
            Arc::new(UInt64Array::from_iter_values(0..ROWS as u64)),
        ],
    )
    .expect("a valid batch");
    let mut out = Vec::new();
    let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut out, &schema).expect("IPC writer");
    w.write(&batch).expect("IPC write");
    w.finish().expect("IPC finish");
    drop(w);
    Bytes::from(out)
}

/// Which write the rows came from, and whether all of its rows are there, once, in order.
fn read_of(batches: &[RecordBatch]) -> Read {
    let mut write = None;
    let mut next = 0u64;
    let mut complete = true;
    for b in batches {
        let (Some(w), Some(i)) = (
            b.column_by_name("w")
                .and_then(|c| c.as_any().downcast_ref::<UInt64Array>()),
            b.column_by_name("i")
                .and_then(|c| c.as_any().downcast_ref::<UInt64Array>()),
        ) else {
            return Read {
                write: None,
                complete: false,
            };
        };
        for (w, i) in w.iter().zip(i.iter()) {
            let (Some(w), Some(i)) = (w, i) else {
                complete = false;
                continue;
            };
            if *write.get_or_insert(w) != w || i != next {
                complete = false;
            }
            next += 1;
        }
    }
    Read {
        write,
        complete: complete && next == ROWS as u64,
    }
}

/// Every version of `name`, with retries while the cluster settles after the last fault.
async fn read_back(client: &Client, name: &str) -> Result<Final> {
    let latest = retry(|| client.latest_version(name)).await;
    let latest = match latest {
        Ok(v) => v,
        Err(e) if e.status == "NOT_FOUND" => 0,
        Err(e) => bail!("reading back {name}: {} {}", e.status, e.message),
    };
    let mut fin = Final {
        latest,
        ..Default::default()
    };
    for v in 1..=latest {
        let read = retry(|| client.load_rows(name, Some(v)))
            .await
            .map(|(_, batches)| read_of(&batches))
            .map_err(|e| format!("{} {}", e.status, e.message));
        fin.versions.insert(v, read);
    }
    Ok(fin)
}

async fn retry<T, F, Fut>(mut call: F) -> std::result::Result<T, CallError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, CallError>>,
{
    let mut tries = 0;
    loop {
        match call().await {
            Err(e) if e.status == "UNAVAILABLE" && tries < 30 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            r => return r,
        }
    }
}

/// Until the deadline, one fault every `every`: kill -9 a random worker and start it again, or cut
/// the S3 server off; each is healed before the next starts and before this returns.
async fn nemesis(
    mut cluster: Cluster,
    proxy: CutProxy,
    every: Duration,
    seed: u64,
    t0: Instant,
    deadline: Instant,
) -> (Cluster, CutProxy, Vec<Fault>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed);
    let mut faults = Vec::new();
    let mut turn = 0usize;
    loop {
        tokio::time::sleep(every / 2).await;
        if Instant::now() + every / 2 >= deadline {
            break;
        }
        let hold = Duration::from_millis(rng.random_range(500..2500));
        let at_s = t0.elapsed().as_secs_f64();
        let fault = if turn.is_multiple_of(2) {
            let i = rng.random_range(0..cluster.workers.len());
            let w = &mut cluster.workers[i];
            w.kill().await;
            tokio::time::sleep(hold).await;
            if let Err(e) = w.restart("polarway").await {
                eprintln!("nemesis: restarting worker {} failed: {e:#}", w.addr);
            }
            Fault {
                kind: "kill -9 worker",
                target: w.addr.clone(),
                at_s,
                healed_s: t0.elapsed().as_secs_f64(),
            }
        } else {
            proxy.cut();
            tokio::time::sleep(hold).await;
            proxy.heal();
            Fault {
                kind: "S3 cut off",
                target: proxy.addr.to_string(),
                at_s,
                healed_s: t0.elapsed().as_secs_f64(),
            }
        };
        eprintln!(
            "nemesis: {} {} at {:.1} s, healed at {:.1} s",
            fault.kind, fault.target, fault.at_s, fault.healed_s
        );
        faults.push(fault);
        turn += 1;
        tokio::time::sleep(every / 2).await;
    }
    (cluster, proxy, faults)
}
