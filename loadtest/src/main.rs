//! polarway-loadtest: drive a Polarway worker, gateway or any gRPC endpoint in front of them with
//! a scenario (a weighted mix of calls over generated datasets) and report throughput, latency
//! percentiles, errors, bytes and the workers' cache hit rate as text, JSON and HTML.

mod client;
mod cluster;
mod data;
mod history;
mod html;
mod memory;
mod mutate;
mod report;
mod runner;
mod scenario;
mod tcpproxy;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Parser;

use client::{Client, ConnectOpts};
use cluster::{Cluster, ClusterOpts};
use report::{CacheReport, SetupReport, WorkerCache};
use scenario::{Scenario, Setup};

#[derive(Parser, Debug)]
#[command(name = "polarway-loadtest", version, about)]
struct Args {
    /// Scenario file (TOML; see loadtest/scenarios/example.toml). Without it: the defaults.
    #[arg(long, short)]
    scenario: Option<PathBuf>,
    /// Override a scenario field, e.g. `--set run.concurrency=16 --set keys.distribution=zipf`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// The endpoint to load: a worker, the gateway, nginx... (http:// or https://).
    #[arg(long, conflicts_with = "spawn_cluster")]
    target: Option<String>,
    /// Workers whose CacheStats are read before and after the run (default: the target).
    #[arg(long = "worker", value_name = "URL")]
    workers: Vec<String>,
    /// CA certificate (PEM) to trust for an https:// target.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// Name to verify the server certificate against, when it differs from the URL's host.
    #[arg(long)]
    tls_domain: Option<String>,
    /// Bearer token sent as `authorization`.
    #[arg(long, env = "POLARWAY_AUTH_TOKEN")]
    token: Option<String>,
    /// Start a gateway and N workers from the binaries next to this one and load the gateway.
    #[arg(long, value_name = "N")]
    spawn_cluster: Option<usize>,
    /// Where `polarway` and `polarway-gateway` are (default: this binary's directory).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Spawned cluster: the gateway's routing.
    #[arg(long, default_value = "hash")]
    routing: String,
    /// Spawned cluster: each worker's cache, GB.
    #[arg(long, default_value_t = 1.0)]
    cache_size: f64,
    /// Spawned cluster: extra worker arguments (repeat), e.g. `--worker-arg=--query-threads=1`.
    #[arg(long = "worker-arg", allow_hyphen_values = true)]
    worker_args: Vec<String>,
    /// Fault mode (with --spawn-cluster): kill -9 worker 0 this many seconds into the run...
    #[arg(long, value_name = "SECS", requires = "spawn_cluster")]
    kill_worker_at: Option<f64>,
    /// ...and start it again (same port, same state) this many seconds after the kill.
    #[arg(long, value_name = "SECS", requires = "kill_worker_at")]
    restart_after: Option<f64>,
    /// ...and kill it again this many seconds after each kill (a soak with faults).
    #[arg(long, value_name = "SECS", requires = "restart_after")]
    kill_every: Option<f64>,
    /// Spawned cluster: sample every process's RSS this often (seconds) and report its slope.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 1.0,
        requires = "spawn_cluster"
    )]
    rss_every: f64,
    /// Write the report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a self-contained HTML report (inline SVG charts).
    #[arg(long)]
    html: Option<PathBuf>,
    /// Exit with status 1 when any call failed.
    #[arg(long)]
    fail_on_errors: bool,
    /// History mode (with --spawn-cluster, on S3): this many seconds of conditional stores and
    /// loads under kill -9 and S3 cuts, then the history is checked; exit 1 on any anomaly.
    #[arg(long, value_name = "SECS", requires_all = ["spawn_cluster", "s3_endpoint", "s3_bucket"])]
    history: Option<f64>,
    /// Mutation mode (with --spawn-cluster): this many seconds of mutated requests of every method
    /// to the gateway and the workers; exit 1 if a process dies, hangs or leaks, or the canary
    /// dataset changes.
    #[arg(
        long,
        value_name = "SECS",
        requires = "spawn_cluster",
        conflicts_with = "history"
    )]
    mutate: Option<f64>,
    /// History mode: the S3-compatible server (http://host:port), reached through a proxy the
    /// nemesis cuts. Credentials come from the AWS_* environment, as for the workers.
    #[arg(long)]
    s3_endpoint: Option<String>,
    /// History mode: an existing bucket (each run writes under its own prefix).
    #[arg(long)]
    s3_bucket: Option<String>,
    /// History mode: concurrent clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// History mode: datasets the clients contend on.
    #[arg(long, default_value_t = 3)]
    datasets: usize,
    /// History mode: seconds between faults (each is healed before the next).
    #[arg(long, default_value_t = 6.0)]
    nemesis_every: f64,
    /// History and mutation modes: the random seed (choices, faults, mutations); default: from the clock.
    #[arg(long)]
    seed: Option<u64>,
}

/// The same allocator as the worker: multi-MiB receive buffers reuse freed pages instead of
/// faulting in fresh ones (pyarrow.flight, the reference client, brings jemalloc for the same reason).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let failed = runtime.block_on(run(args))?;
    std::process::exit(if failed { 1 } else { 0 });
}

async fn run(args: Args) -> Result<bool> {
    if let Some(secs) = args.mutate {
        return mutate::run(mutate::MutateOpts {
            duration: Duration::from_secs_f64(secs),
            workers: args.spawn_cluster.unwrap_or(1).max(1),
            bin_dir: args
                .bin_dir
                .clone()
                .unwrap_or_else(cluster::default_bin_dir),
            worker_args: args.worker_args.clone(),
            seed: args.seed.unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis() as u64
            }),
            json: args.json.clone(),
        })
        .await;
    }
    if let Some(secs) = args.history {
        let seed = args.seed.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64
        });
        return history::run(history::HistoryOpts {
            duration: Duration::from_secs_f64(secs),
            workers: args.spawn_cluster.unwrap_or(3).max(1),
            clients: args.clients.max(1),
            datasets: args.datasets.max(1),
            nemesis_every: Duration::from_secs_f64(args.nemesis_every.max(1.0)),
            s3_endpoint: args.s3_endpoint.clone().unwrap_or_default(),
            s3_bucket: args.s3_bucket.clone().unwrap_or_default(),
            bin_dir: args
                .bin_dir
                .clone()
                .unwrap_or_else(cluster::default_bin_dir),
            worker_args: args.worker_args.clone(),
            json: args.json.clone(),
            html: args.html.clone(),
            seed,
        })
        .await;
    }
    let scenario = Scenario::load(args.scenario.as_deref(), &args.sets)?;
    let opts = ConnectOpts {
        tls_ca: args.tls_ca.clone(),
        tls_domain: args.tls_domain.clone(),
        token: args.token.clone(),
    };

    let mut cluster = match args.spawn_cluster {
        Some(n) => {
            if n == 0 {
                bail!("--spawn-cluster needs at least 1 worker");
            }
            let c = Cluster::start(&ClusterOpts {
                bin_dir: args
                    .bin_dir
                    .clone()
                    .unwrap_or_else(cluster::default_bin_dir),
                workers: n,
                routing: args.routing.clone(),
                cache_size_gb: args.cache_size,
                worker_args: args.worker_args.clone(),
                gateway_args: Vec::new(),
                shared_state: true,
            })
            .await?;
            eprintln!(
                "cluster: gateway {} over workers {:?}",
                c.gateway.addr,
                c.workers.iter().map(|w| &w.addr).collect::<Vec<_>>()
            );
            Some(c)
        }
        None => None,
    };
    let (target, stats_urls) = match (&cluster, &args.target) {
        (Some(c), _) => (c.gateway.url(), c.workers.iter().map(|w| w.url()).collect()),
        (None, Some(t)) => (
            t.clone(),
            if args.workers.is_empty() {
                vec![t.clone()]
            } else {
                args.workers.clone()
            },
        ),
        (None, None) => bail!("give --target URL or --spawn-cluster N"),
    };

    let timeout = Duration::from_secs_f64(scenario.run.timeout_secs);
    let mut clients = Vec::new();
    for _ in 0..scenario.run.connections {
        clients.push(Client::connect(&target, &opts, timeout).await?);
    }

    // Setup: store every dataset (encoded once; kept only if the mix stores).
    let setup_started = Instant::now();
    let mut setup = SetupReport::default();
    let keep_ipc = scenario.mix.store > 0;
    let mut ipc = Vec::new();
    if scenario.datasets.setup == Setup::Store || keep_ipc {
        for i in 0..scenario.datasets.count {
            let spec = scenario.datasets.clone();
            let encoded =
                tokio::task::spawn_blocking(move || data::encode_dataset(&spec, i)).await??;
            if scenario.datasets.setup == Setup::Store {
                let name = scenario.dataset_name(i);
                let (_, info) = clients[0].store(&name, &encoded).await.map_err(|e| {
                    anyhow::anyhow!("setup: storing {name}: {} {}", e.status, e.message)
                })?;
                if info.rows != scenario.datasets.rows as u64 {
                    bail!(
                        "setup: {name} stored {} rows, expected {}",
                        info.rows,
                        scenario.datasets.rows
                    );
                }
                setup.datasets_stored += 1;
                setup.bytes += encoded.len() as u64;
            }
            if keep_ipc {
                ipc.push(encoded);
            }
        }
    }
    setup.seconds = setup_started.elapsed().as_secs_f64();
    if setup.datasets_stored > 0 {
        eprintln!(
            "setup: stored {} datasets, {:.1} MiB in {:.2} s",
            setup.datasets_stored,
            setup.bytes as f64 / (1 << 20) as f64,
            setup.seconds
        );
    }

    let plan = Arc::new(runner::Plan::new(scenario.clone(), clients, ipc));
    plan.warmup().await;

    let stats_clients = {
        let mut v = Vec::new();
        for url in &stats_urls {
            v.push((
                url.clone(),
                Client::connect(url, &opts, Duration::from_secs(10))
                    .await
                    .ok(),
            ));
        }
        v
    };
    let before = cache_snapshot(&stats_clients).await;

    // Every spawned process's RSS through the run.
    let pids = memory::Pids::default();
    let (stop_sampling, sampling) = tokio::sync::watch::channel(false);
    let sampler = cluster.as_ref().map(|c| {
        for (name, p) in c.processes() {
            pids.set(&name, p.pid());
        }
        tokio::spawn(memory::sample(
            pids.clone(),
            Duration::from_secs_f64(args.rss_every.max(0.1)),
            sampling,
        ))
    });

    // Fault mode: kill -9 worker 0 mid-run (again every --kill-every), restart it; note when.
    let fault_task = match (&mut cluster, args.kill_worker_at) {
        (Some(c), Some(at)) => {
            let mut victim = c.workers.remove(0);
            let restart_after = args.restart_after;
            let every = args.kill_every;
            let run_for = Duration::from_secs_f64(scenario.run.duration_secs);
            let pids = pids.clone();
            Some(tokio::spawn(async move {
                let t0 = Instant::now();
                let mut kills = Vec::new();
                let mut next = Duration::from_secs_f64(at);
                loop {
                    tokio::time::sleep(next.saturating_sub(t0.elapsed())).await;
                    victim.kill().await;
                    pids.set("worker0", None);
                    let killed = t0.elapsed().as_secs_f64();
                    eprintln!("fault: killed worker {} at {killed:.2} s", victim.addr);
                    let mut restarted = None;
                    if let Some(after) = restart_after {
                        tokio::time::sleep(Duration::from_secs_f64(after)).await;
                        match victim.restart("polarway").await {
                            Ok(()) => {
                                pids.set("worker0", victim.pid());
                                restarted = Some(t0.elapsed().as_secs_f64());
                                eprintln!(
                                    "fault: restarted worker {} at {:.2} s",
                                    victim.addr,
                                    restarted.unwrap()
                                );
                            }
                            Err(e) => eprintln!("fault: restart failed: {e:#}"),
                        }
                    }
                    kills.push((killed, restarted));
                    match every {
                        Some(every) if restarted.is_some() => {
                            next += Duration::from_secs_f64(every.max(0.1));
                            if !run_for.is_zero() && next >= run_for {
                                break;
                            }
                        }
                        _ => break,
                    }
                }
                (victim, kills)
            }))
        }
        _ => None,
    };

    let started_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let outcome = plan.clone().run().await;

    let fault = match fault_task {
        Some(t) => {
            let (victim, kills) = t.await.context("fault task")?;
            let addr = victim.addr.clone();
            if let Some(c) = &mut cluster {
                c.workers.insert(0, victim);
            }
            Some(report::fault_summary(&outcome, addr, kills))
        }
        None => None,
    };
    let _ = stop_sampling.send(true);
    let memory = match sampler {
        Some(s) => s.await.context("RSS sampler")?,
        None => Vec::new(),
    };
    let after = cache_snapshot(&stats_clients).await;

    let mut report = report::build(scenario, target, started_unix_ms, &outcome, setup);
    report.cache = Some(cache_delta(&stats_urls, &before, &after));
    report.fault = fault;
    report.memory = memory;
    report::print_summary(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.html {
        std::fs::write(path, html::render(&report))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    drop(cluster);
    Ok(args.fail_on_errors && report.failures_total > 0)
}

type Snapshot = Vec<Result<polarway_proto::v1::CacheStatsResponse, String>>;

async fn cache_snapshot(clients: &[(String, Option<Client>)]) -> Snapshot {
    let mut out = Vec::new();
    for (url, c) in clients {
        out.push(match c {
            Some(c) => c
                .cache_stats()
                .await
                .map_err(|e| format!("{} {}", e.status, e.message)),
            None => Err(format!("cannot connect to {url}")),
        });
    }
    out
}

fn cache_delta(urls: &[String], before: &Snapshot, after: &Snapshot) -> CacheReport {
    let mut r = CacheReport::default();
    for ((url, b), a) in urls.iter().zip(before).zip(after) {
        let mut w = WorkerCache {
            endpoint: url.clone(),
            ..Default::default()
        };
        match (b, a) {
            (Ok(b), Ok(a)) => {
                // A restarted worker starts its counters again: count from zero then.
                let restarted = a.hits + a.misses < b.hits + b.misses;
                let (bh, bm, be) = if restarted {
                    (0, 0, 0)
                } else {
                    (b.hits, b.misses, b.evictions)
                };
                w.hits = a.hits - bh;
                w.misses = a.misses - bm;
                w.evictions = a.evictions.saturating_sub(be);
                w.bytes = a.bytes;
                w.capacity = a.capacity;
                w.hit_rate = rate(w.hits, w.misses);
            }
            (Err(e), _) | (_, Err(e)) => w.error = Some(e.clone()),
        }
        r.hits += w.hits;
        r.misses += w.misses;
        r.evictions += w.evictions;
        r.workers.push(w);
    }
    r.hit_rate = rate(r.hits, r.misses);
    r
}

fn rate(hits: u64, misses: u64) -> f64 {
    if hits + misses == 0 {
        0.0
    } else {
        hits as f64 / (hits + misses) as f64
    }
}
