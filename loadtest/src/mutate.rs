//! Mutation mode (`--mutate SECS`): valid requests of every `polarway.v1` method, mutated, sent as
//! raw gRPC-over-HTTP/2 bodies to a spawned cluster: alternately to its gateway and straight to a
//! worker. The mutations reach below the protobuf layer: bits flipped, bodies cut short, bytes
//! inserted, a message's length prefix or compression flag rewritten, messages duplicated, and
//! messages of one method spliced into another's body; bodies leave in randomly cut HTTP/2 frames.
//!
//! A finding (exit status 1): a process that exits, a call with no answer well past its deadline,
//! a process that stops answering Health, the canary dataset changed or gone, or a process whose
//! memory grew by more than `LEAK_MIB` over the second half of the run, or a panic reported in a
//! process's log. Each call's gRPC status is counted by method.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bytes::Bytes;
use http_body_util::BodyExt;
use polarway_proto::v1 as pb;
use prost::Message;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tonic::client::GrpcService;
use tonic::transport::Channel;

use crate::client::{Client, ConnectOpts};
use crate::cluster::{Cluster, ClusterOpts};
use crate::scenario::Datasets;

/// The deadline each call carries (grpc-timeout), and how much longer an answer may take before
/// the call counts as hung.
const DEADLINE: Duration = Duration::from_secs(5);
const HUNG_AFTER: Duration = Duration::from_secs(20);
/// RSS growth over the second half of the run that counts as a leak.
const LEAK_MIB: f64 = 256.0;
const CANARY: &str = "zz_mutation_canary_keep";
/// Datasets the seed requests name (mutations may store, change or delete them).
const TARGETS: &[&str] = &["mut_0", "mut_1", "mut_2"];
const CALLERS: usize = 4;

pub struct MutateOpts {
    pub duration: Duration,
    pub workers: usize,
    pub bin_dir: PathBuf,
    pub worker_args: Vec<String>,
    pub seed: u64,
    pub json: Option<PathBuf>,
}

#[derive(Default, Serialize)]
struct Tally {
    calls: u64,
    /// gRPC status (or transport error) -> count, per method.
    by_method: BTreeMap<String, BTreeMap<String, u64>>,
    /// The first answer of each method and status: its message and the mutations that led to it.
    examples: BTreeMap<String, String>,
    findings: Vec<String>,
}

#[derive(Serialize)]
struct MutateReport {
    seed: u64,
    seconds: f64,
    calls: u64,
    by_method: BTreeMap<String, BTreeMap<String, u64>>,
    examples: BTreeMap<String, String>,
    /// Panics reported in the processes' logs, by place (the worker logs the panics it expects on
    /// malformed input quietly, so each one here is a finding).
    panics: BTreeMap<String, usize>,
    /// Warnings and errors the processes logged (timestamps dropped, fields kept), with counts.
    logged: BTreeMap<String, usize>,
    /// (process, RSS MiB at the start, at half time, at the end).
    memory: Vec<(String, f64, f64, f64)>,
    findings: Vec<String>,
}

/// One valid request: its method and its gRPC-framed body.
#[derive(Clone)]
struct Seed {
    method: &'static str,
    body: Vec<u8>,
}

fn framed(msg: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(msg.len() + 5);
    f.push(0);
    f.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    f.extend_from_slice(msg);
    f
}

/// Valid requests of every method, over the target datasets.
fn seeds(ipc: &Bytes) -> Vec<Seed> {
    use pb::store_request::Msg;
    let mut out = Vec::new();
    let mut add = |method: &'static str, msgs: Vec<Vec<u8>>| {
        out.push(Seed {
            method,
            body: msgs.iter().flat_map(|m| framed(m)).collect(),
        })
    };
    let header = |name: &str, condition: Option<pb::condition::Kind>| {
        pb::StoreRequest {
            msg: Some(Msg::Header(pb::StoreHeader {
                name: name.into(),
                condition: condition.map(|k| pb::Condition { kind: Some(k) }),
            })),
        }
        .encode_to_vec()
    };
    // The IPC stream in three chunks, cut where no message boundary is.
    let cuts = [0, ipc.len() / 3, ipc.len() * 2 / 3, ipc.len()];
    let chunks: Vec<Vec<u8>> = cuts
        .windows(2)
        .map(|w| {
            pb::StoreRequest {
                msg: Some(Msg::Ipc(ipc.slice(w[0]..w[1]))),
            }
            .encode_to_vec()
        })
        .collect();
    for (i, name) in TARGETS.iter().enumerate() {
        let condition = match i {
            0 => None,
            1 => Some(pb::condition::Kind::IfAbsent(true)),
            _ => Some(pb::condition::Kind::IfVersion(1)),
        };
        add(
            "Store",
            [vec![header(name, condition)], chunks.clone()].concat(),
        );
        add(
            "Load",
            vec![pb::LoadRequest {
                name: name.to_string(),
                columns: vec!["k".into()],
                version: (i == 2).then_some(1),
            }
            .encode_to_vec()],
        );
        add(
            "Describe",
            vec![pb::DescribeRequest {
                name: name.to_string(),
                version: None,
            }
            .encode_to_vec()],
        );
    }
    let batch: Vec<Vec<u8>> = TARGETS[..2]
        .iter()
        .flat_map(|n| [vec![header(n, None)], chunks.clone()].concat())
        .collect();
    add("StoreBatch", batch);
    add(
        "Query",
        vec![pb::QueryRequest {
            sql: "SELECT k, count(*) AS n FROM mut_0 GROUP BY k ORDER BY k".into(),
            into: None,
        }
        .encode_to_vec()],
    );
    add(
        "Query",
        vec![pb::QueryRequest {
            sql: "SELECT * FROM mut_0 JOIN mut_1 USING (k) LIMIT 5".into(),
            into: Some("mut_2".into()),
        }
        .encode_to_vec()],
    );
    add(
        "List",
        vec![pb::ListRequest {
            prefix: "mut".into(),
        }
        .encode_to_vec()],
    );
    add(
        "Delete",
        vec![pb::DeleteRequest {
            name: "mut_1".into(),
        }
        .encode_to_vec()],
    );
    add("CacheStats", vec![pb::CacheStatsRequest {}.encode_to_vec()]);
    add("Health", vec![pb::HealthRequest {}.encode_to_vec()]);
    out
}

/// Offsets of the framed messages in `body` (as far as their length prefixes say).
fn message_starts(body: &[u8]) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut at = 0;
    while at + 5 <= body.len() {
        starts.push(at);
        let len = u32::from_be_bytes([body[at + 1], body[at + 2], body[at + 3], body[at + 4]]);
        at += 5 + len as usize;
    }
    starts
}

/// One to three mutations of `seed`'s body (`other`: another seed, for splices).
fn mutate(rng: &mut SmallRng, seed: &Seed, other: &Seed) -> (Vec<u8>, Vec<&'static str>) {
    let mut body = seed.body.clone();
    let mut applied = Vec::new();
    for _ in 0..rng.random_range(1..=3) {
        let starts = message_starts(&body);
        let kind = rng.random_range(0..8);
        match kind {
            0 if !body.is_empty() => {
                for _ in 0..rng.random_range(1..=8) {
                    let i = rng.random_range(0..body.len());
                    body[i] ^= 1 << rng.random_range(0..8);
                }
                applied.push("bit flips");
            }
            1 if !body.is_empty() => {
                body.truncate(rng.random_range(0..body.len()));
                applied.push("cut short");
            }
            2 => {
                let at = rng.random_range(0..=body.len());
                let junk: Vec<u8> = (0..rng.random_range(1..64)).map(|_| rng.random()).collect();
                body.splice(at..at, junk);
                applied.push("bytes inserted");
            }
            3 if !starts.is_empty() => {
                let at = starts[rng.random_range(0..starts.len())];
                let len: u32 = match rng.random_range(0..4) {
                    0 => 0,
                    1 => u32::MAX,
                    2 => rng.random_range(0..1 << 20),
                    _ => 300 * 1024 * 1024,
                };
                body[at + 1..at + 5].copy_from_slice(&len.to_be_bytes());
                applied.push("length prefix rewritten");
            }
            4 if !starts.is_empty() => {
                let at = starts[rng.random_range(0..starts.len())];
                body[at] = rng.random_range(1..=255);
                applied.push("compression flag set");
            }
            5 if !starts.is_empty() => {
                let i = rng.random_range(0..starts.len());
                let end = starts.get(i + 1).copied().unwrap_or(body.len());
                let msg = body[starts[i]..end].to_vec();
                body.splice(end..end, msg);
                applied.push("message duplicated");
            }
            6 => {
                let at = message_starts(&body)
                    .into_iter()
                    .nth(rng.random_range(0..4))
                    .unwrap_or(body.len());
                body.splice(at..at, other.body.iter().copied());
                applied.push("another method's messages spliced in");
            }
            _ => {
                // A protobuf field rewritten: a varint of the largest value, at a random place.
                let at = rng.random_range(0..=body.len());
                body.splice(
                    at..at,
                    [
                        0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
                    ],
                );
                applied.push("huge varint inserted");
            }
        }
    }
    (body, applied)
}

/// The body in randomly cut frames.
fn frames(rng: &mut SmallRng, body: Vec<u8>) -> tonic::body::Body {
    let body = Bytes::from(body);
    let mut cuts: Vec<usize> = (0..rng.random_range(0..6))
        .map(|_| rng.random_range(0..=body.len()))
        .collect();
    cuts.extend([0, body.len()]);
    cuts.sort_unstable();
    cuts.dedup();
    let chunks: Vec<Bytes> = cuts.windows(2).map(|w| body.slice(w[0]..w[1])).collect();
    let stream = futures::stream::iter(
        chunks
            .into_iter()
            .map(|c| Ok::<_, tonic::Status>(http_body::Frame::data(c))),
    );
    tonic::body::Body::new(http_body_util::StreamBody::new(stream))
}

/// Send one raw call; its gRPC status (or what went wrong at the transport) and message.
async fn call(channel: &mut Channel, method: &str, body: tonic::body::Body) -> (String, String) {
    let mut req = http::Request::new(body);
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = match format!("http://polarway/polarway.v1.Polarway/{method}").parse() {
        Ok(u) => u,
        Err(_) => return ("bad-uri".into(), String::new()),
    };
    let h = req.headers_mut();
    h.insert(
        "content-type",
        http::HeaderValue::from_static("application/grpc"),
    );
    h.insert("te", http::HeaderValue::from_static("trailers"));
    h.insert("grpc-timeout", http::HeaderValue::from_static("5S"));
    if futures::future::poll_fn(|cx| GrpcService::poll_ready(channel, cx))
        .await
        .is_err()
    {
        return ("transport: not ready".into(), String::new());
    }
    let resp = match GrpcService::call(channel, req).await {
        Ok(r) => r,
        Err(e) => return ("transport".into(), e.to_string()),
    };
    if resp.headers().contains_key("grpc-status") {
        return status_of(resp.headers());
    }
    match resp.into_body().collect().await {
        Ok(collected) => match collected.trailers() {
            Some(t) if t.contains_key("grpc-status") => status_of(t),
            _ => ("no grpc-status".into(), String::new()),
        },
        Err(e) => ("transport".into(), e.to_string()),
    }
}

/// The status's name and its (percent-decoded) message.
fn status_of(headers: &http::HeaderMap) -> (String, String) {
    match tonic::Status::from_header_map(headers) {
        Some(s) => (format!("{:?}", s.code()), s.message().to_string()),
        None => ("unreadable grpc-status".into(), String::new()),
    }
}

async fn channel(url: &str) -> Result<Channel> {
    Ok(tonic::transport::Endpoint::from_shared(url.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await?)
}

pub async fn run(opts: MutateOpts) -> Result<bool> {
    let cluster = Cluster::start(&ClusterOpts {
        bin_dir: opts.bin_dir.clone(),
        workers: opts.workers,
        routing: "hash".into(),
        // A small cache, so that its filling does not pass for a leak.
        cache_size_gb: 0.016,
        worker_args: opts.worker_args.clone(),
        gateway_args: Vec::new(),
        shared_state: true,
    })
    .await?;
    let processes = cluster.processes();
    // The canary and the seed requests' datasets, stored the ordinary way.
    let spec = Datasets {
        rows: 2_000,
        batch_rows: 500,
        ..Datasets::default()
    };
    let ipc = crate::data::encode_dataset(&spec, 0)?;
    let client = Client::connect(
        &cluster.gateway.url(),
        &ConnectOpts::default(),
        DEADLINE * 2,
    )
    .await?;
    let canary_ipc = crate::data::encode_dataset(&spec, 7)?;
    client
        .store(CANARY, &canary_ipc)
        .await
        .map_err(|e| anyhow::anyhow!("storing the canary: {e:?}"))?;
    let canary = client
        .load_rows(CANARY, None)
        .await
        .map_err(|e| anyhow::anyhow!("loading the canary: {e:?}"))?;
    for t in TARGETS {
        client
            .store(t, &ipc)
            .await
            .map_err(|e| anyhow::anyhow!("storing {t}: {e:?}"))?;
    }
    let seeds = Arc::new(seeds(&ipc));
    let targets: Vec<String> = processes.iter().map(|(_, p)| p.url()).collect();
    let pids = crate::memory::Pids::default();
    for (name, p) in &processes {
        pids.set(name, p.pid());
    }
    let (stop_sampling, stopped) = tokio::sync::watch::channel(false);
    let sampler = tokio::spawn(crate::memory::sample(pids, Duration::from_secs(1), stopped));
    eprintln!(
        "mutate: {} s, {} seed requests, {CALLERS} callers, gateway {} and workers {:?}, seed {}",
        opts.duration.as_secs_f64(),
        seeds.len(),
        cluster.gateway.addr,
        cluster.workers.iter().map(|w| &w.addr).collect::<Vec<_>>(),
        opts.seed
    );

    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let until = started + opts.duration;
    let mut callers = Vec::new();
    for c in 0..CALLERS {
        let (seeds, tally, targets) = (seeds.clone(), tally.clone(), targets.clone());
        let mut rng = SmallRng::seed_from_u64(opts.seed.wrapping_add(c as u64));
        callers.push(tokio::spawn(async move {
            let mut channels = Vec::new();
            for t in &targets {
                channels.push(channel(t).await?);
            }
            let mut n = 0usize;
            while Instant::now() < until {
                let seed = &seeds[rng.random_range(0..seeds.len())];
                let other = &seeds[rng.random_range(0..seeds.len())];
                let (body, applied) = mutate(&mut rng, seed, other);
                let target = n % targets.len();
                n += 1;
                let body = frames(&mut rng, body);
                let outcome =
                    tokio::time::timeout(HUNG_AFTER, call(&mut channels[target], seed.method, body)).await;
                let mut t = tally.lock().unwrap();
                t.calls += 1;
                let status = match outcome {
                    Ok((status, message)) => {
                        let example = format!("{}: {status}", seed.method);
                        t.examples.entry(example).or_insert_with(|| {
                            let m: String = message.chars().take(200).collect();
                            format!("{m} (after: {})", applied.join(", "))
                        });
                        status
                    }
                    Err(_) => {
                        t.findings.push(format!(
                            "{} to {} ({}) had no answer after {HUNG_AFTER:?} (deadline {DEADLINE:?})",
                            seed.method,
                            targets[target],
                            applied.join(", ")
                        ));
                        "hung".into()
                    }
                };
                *t.by_method
                    .entry(seed.method.to_string())
                    .or_default()
                    .entry(status)
                    .or_default() += 1;
            }
            anyhow::Ok(())
        }));
    }
    // Meanwhile: every process alive and answering Health.
    let mut health = Vec::new();
    for t in &targets {
        health.push(channel(t).await?);
    }
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(2)).await;
        for (i, ch) in health.iter_mut().enumerate() {
            let body = tonic::body::Body::new(http_body_util::Full::new(Bytes::from(framed(
                &pb::HealthRequest {}.encode_to_vec(),
            ))));
            let status = tokio::time::timeout(DEADLINE * 2, call(ch, "Health", body)).await;
            if !matches!(&status, Ok((code, _)) if code == "Ok") {
                tally.lock().unwrap().findings.push(format!(
                    "{} did not answer Health at {:.0} s: {status:?}",
                    targets[i],
                    started.elapsed().as_secs_f64()
                ));
            }
        }
        if !tally.lock().unwrap().findings.is_empty() {
            break;
        }
    }
    for c in callers {
        c.await??;
    }
    let mut tally = std::mem::take(&mut *tally.lock().unwrap());
    for (name, p) in &processes {
        if p.pid()
            .is_none_or(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
        {
            tally.findings.push(format!("{name} exited during the run"));
        }
    }
    match client.load_rows(CANARY, None).await {
        Ok(now) if now == canary => {}
        other => tally.findings.push(format!(
            "the canary dataset changed: {:?}",
            other.map(|(version, batches)| (version, batches.len()))
        )),
    }
    let _ = stop_sampling.send(true);
    let sampled = sampler.await?;
    // (process, RSS at the start, at half time, at the end): growth over the second half is what
    // counts, the first being warm-up (instances, caches, thread heaps).
    let memory: Vec<(String, f64, f64, f64)> = sampled
        .iter()
        .map(|m| {
            let mid = m
                .samples
                .get(m.samples.len() / 2)
                .map_or(m.start_mib, |s| s.1);
            (m.process.clone(), m.start_mib, mid, m.end_mib)
        })
        .collect();
    for (name, _, mid, end) in &memory {
        if end - mid > LEAK_MIB {
            tally.findings.push(format!(
                "{name} grew from {mid:.0} to {end:.0} MiB over the second half of the run"
            ));
        }
    }
    let mut panics = BTreeMap::new();
    let mut logged = BTreeMap::new();
    for (name, p) in &processes {
        let log = std::fs::read_to_string(p.log_path()).unwrap_or_default();
        for line in log.lines() {
            if let Some(at) = line.find(" WARN ").or_else(|| line.find(" ERROR ")) {
                let text: String = line[at + 1..].chars().take(240).collect();
                *logged.entry(format!("{name}: {text}")).or_default() += 1;
            }
        }
        for place in log.split("panicked at ").skip(1) {
            let place = place.split(':').take(2).collect::<Vec<_>>().join(":");
            *panics.entry(format!("{name}: {place}")).or_default() += 1;
        }
    }
    for (place, n) in &panics {
        tally.findings.push(format!("{n} panics at {place}"));
    }
    let report = MutateReport {
        seed: opts.seed,
        seconds: started.elapsed().as_secs_f64(),
        calls: tally.calls,
        by_method: tally.by_method,
        examples: tally.examples,
        panics,
        logged,
        memory,
        findings: tally.findings,
    };
    print_report(&report);
    if let Some(path) = &opts.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    if report.calls == 0 {
        bail!("no call was made");
    }
    Ok(!report.findings.is_empty())
}

fn print_report(r: &MutateReport) {
    println!(
        "mutate: {} mutated calls in {:.1} s (seed {})",
        r.calls, r.seconds, r.seed
    );
    for (method, codes) in &r.by_method {
        let codes: Vec<String> = codes.iter().map(|(c, n)| format!("{c} {n}")).collect();
        println!("  {method:<11} {}", codes.join(", "));
    }
    println!("  first answer of each kind:");
    for (kind, example) in &r.examples {
        println!("    {kind:<24} {example}");
    }
    let panics: usize = r.panics.values().sum();
    println!("  panics reported: {panics}");
    for (place, n) in &r.panics {
        println!("    {n} at {place}");
    }
    println!("  logged warnings and errors:");
    for (line, n) in &r.logged {
        println!("    {n:>6} x {line}");
    }
    for (name, start, mid, end) in &r.memory {
        println!("  {name:<9} RSS {start:.0} -> {mid:.0} (half time) -> {end:.0} MiB");
    }
    println!("  findings: {}", r.findings.len());
    for f in &r.findings {
        println!("    {f}");
    }
}
