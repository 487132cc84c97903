//! Sticky routing and failover: rendezvous hashing keeps each dataset on one worker (its cache
//! stays warm: compare with round robin); when a worker is killed (-9) under load, idempotent
//! calls still succeed, non-idempotent ones fail with UNAVAILABLE instead of hanging, and only the
//! dead worker's datasets move; a worker that comes back is brought back with its datasets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use polarway::{Code, DistributedClient};

async fn cache_totals(cluster: &Cluster) -> (u64, u64) {
    let mut totals = (0, 0);
    for w in &cluster.workers {
        let s = w.client().await.cache_stats().await.unwrap();
        totals.0 += s.hits;
        totals.1 += s.misses;
    }
    totals
}

/// Load each of `names` `rounds` times through `client`; the workers' cache hit rate over it.
async fn hit_rate(
    cluster: &Cluster,
    client: &DistributedClient,
    names: &[String],
    rounds: usize,
) -> f64 {
    let before = cache_totals(cluster).await;
    for _ in 0..rounds {
        for n in names {
            assert_eq!(client.load(n).await.unwrap().height(), 1000);
        }
    }
    let after = cache_totals(cluster).await;
    let (hits, misses) = (after.0 - before.0, after.1 - before.1);
    hits as f64 / (hits + misses).max(1) as f64
}

#[tokio::test(flavor = "multi_thread")]
async fn sticky_hashing_keeps_caches_warm() {
    let cluster = Cluster::start(3);
    let hashing = Gateway::start(&cluster, &[]);
    let round_robin = Gateway::start(&cluster, &["--routing", "round-robin"]);
    let (h, rr) = (hashing.client().await, round_robin.client().await);
    // 25 datasets (not a multiple of 3, so round robin does not line up by accident), 4 rounds.
    let sticky: Vec<String> = (0..25).map(|i| format!("sticky_{i}")).collect();
    let spread: Vec<String> = (0..25).map(|i| format!("spread_{i}")).collect();
    for n in sticky.iter().chain(&spread) {
        h.store(n, &frame(1000)).await.unwrap();
    }
    let hashed = hit_rate(&cluster, &h, &sticky, 4).await;
    let rotated = hit_rate(&cluster, &rr, &spread, 4).await;
    eprintln!("cache hit rate over 25 datasets x 4 loads, 3 workers: hashing {hashed:.2}, round robin {rotated:.2}");
    assert!(hashed >= 0.7, "hashing hit rate {hashed}");
    assert!(
        hashed > rotated + 0.3,
        "hashing {hashed} vs round robin {rotated}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill9_under_load_moves_only_the_dead_workers_keys() {
    let mut cluster = Cluster::start(3);
    let gw = Gateway::start(&cluster, &["--health-interval", "0.3"]);
    let client = gw.client().await;
    let names: Vec<String> = (0..30).map(|i| format!("ds_{i}")).collect();
    for n in &names {
        client.store(n, &frame(2000)).await.unwrap();
    }
    let mut raw = raw(&gw.url()).await;
    let mut before = HashMap::new();
    for n in &names {
        before.insert(n.clone(), backend_of(&mut raw, n).await.unwrap());
    }
    let victim = cluster.workers[0].addr().to_string();
    let victims_keys = before.values().filter(|b| **b == victim).count();
    assert!(
        victims_keys > 0 && victims_keys < names.len(),
        "{victims_keys} keys on the victim"
    );

    // Load: readers (idempotent) and writers (non-idempotent), each a bounded number of calls.
    let started = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::new();
    for r in 0..4 {
        let (client, names, started) = (client.clone(), names.clone(), started.clone());
        readers.push(tokio::spawn(async move {
            for i in 0..60 {
                let n = &names[(i * 7 + r) % names.len()];
                started.fetch_add(1, Ordering::Relaxed);
                let df = client
                    .load(n)
                    .await
                    .unwrap_or_else(|e| panic!("load {n} failed: {e}"));
                assert_eq!(df.height(), 2000);
                client
                    .describe(n)
                    .await
                    .unwrap_or_else(|e| panic!("describe {n} failed: {e}"));
            }
        }));
    }
    let writer = {
        let names = names.clone();
        let client = DistributedClient::builder(gw.url())
            .retries(0, Duration::ZERO)
            .connect()
            .await
            .unwrap();
        tokio::spawn(async move {
            let mut unavailable = 0;
            for i in 0..60 {
                let n = &names[i % names.len()];
                let stored =
                    tokio::time::timeout(Duration::from_secs(30), client.store(n, &frame(2000)))
                        .await;
                match stored.expect("a store hung instead of failing") {
                    Ok(_) => {}
                    Err(e) if e.code() == Some(Code::Unavailable) => unavailable += 1,
                    Err(e) => panic!("store {n}: unexpected {e}"),
                }
            }
            unavailable
        })
    };
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while started.load(Ordering::Relaxed) < 40 && std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.workers[0].proc.kill9();
    for r in readers {
        r.await.unwrap();
    }
    let unavailable = writer.await.unwrap();
    eprintln!("stores failed with UNAVAILABLE after the kill: {unavailable} of 60");

    // The routing the kill must leave: the victim's keys elsewhere, every other key in place.
    // Checked as a steady state (bounded): a live worker that misses one health check on this
    // shared 2-core machine is ejected until its next check passes, and that is not a move.
    let wrong = |now: &HashMap<String, String>| -> Vec<String> {
        names
            .iter()
            .filter(|n| {
                let (was, is) = (&before[*n], &now[*n]);
                if *was == victim {
                    *is == victim
                } else {
                    is != was
                }
            })
            .map(|n| format!("{n}: {} -> {}", before[n], now[n]))
            .collect()
    };
    let until = std::time::Instant::now() + Duration::from_secs(10);
    let (settled, last) = loop {
        let mut now = HashMap::new();
        for n in &names {
            now.insert(n.clone(), backend_of(&mut raw, n).await.unwrap());
        }
        let last = wrong(&now);
        if last.is_empty() || std::time::Instant::now() > until {
            break (last.is_empty(), last);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        settled,
        "after the kill of {victim}, keys routed wrongly (before -> now): {last:?}"
    );
    let text = http_get(&gw.metrics_url());
    assert!(
        text.contains(&format!(
            "polarway_gateway_upstream_healthy{{backend=\"{victim}\"}} 0"
        )),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill9_stores_to_the_dead_workers_keys_land_or_fail_cleanly() {
    let mut cluster = Cluster::start(3);
    let gw = Gateway::start(&cluster, &["--health-interval", "0.3"]);
    let client = DistributedClient::builder(gw.url())
        .retries(0, Duration::ZERO)
        .connect()
        .await
        .unwrap();
    let mut raw = raw(&gw.url()).await;
    let victim = cluster.workers[1].addr().to_string();
    let mut names = Vec::new();
    for i in 0..40 {
        let n = format!("w_{i}");
        client.store(&n, &frame(1000)).await.unwrap();
        if backend_of(&mut raw, &n).await.unwrap() == victim {
            names.push(n);
        }
    }
    assert!(names.len() >= 3, "only {} keys on the victim", names.len());

    // Right after the kill (before the health check can eject it): each store either lands
    // somewhere it can be read back or fails with UNAVAILABLE; none hangs.
    cluster.workers[1].proc.kill9();
    let mut outcomes = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let df = frame(1001 + i);
        let stored = tokio::time::timeout(Duration::from_secs(30), client.store(n, &df)).await;
        match stored.unwrap_or_else(|_| panic!("store {n} hung")) {
            Ok(info) => outcomes.push((n, Some((info.version, df)))),
            Err(e) if e.code() == Some(Code::Unavailable) => outcomes.push((n, None)),
            Err(e) => panic!("store {n}: unexpected {e}"),
        }
    }
    let failed = outcomes.iter().filter(|o| o.1.is_none()).count();
    eprintln!(
        "stores to the dead worker's {} keys right after kill -9: {failed} UNAVAILABLE",
        names.len()
    );

    // Once the worker is ejected, reads see exactly what was acknowledged.
    let ejected = eventually(Duration::from_secs(20), || async {
        http_get(&gw.metrics_url()).contains(&format!(
            "polarway_gateway_upstream_healthy{{backend=\"{victim}\"}} 0"
        ))
    })
    .await;
    assert!(ejected, "the dead worker was not ejected");
    for (n, acked) in &outcomes {
        let loaded = tokio::time::timeout(Duration::from_secs(30), client.load(n))
            .await
            .expect("load hung")
            .unwrap();
        let described = client.describe(n).await.unwrap();
        match acked {
            Some((version, df)) => {
                assert!(
                    loaded.equals_missing(df),
                    "{n}: an acknowledged store is not what loads"
                );
                assert_eq!(described.version, *version, "{n}");
            }
            None => {
                assert!(
                    loaded.equals_missing(&frame(1000)),
                    "{n}: a store that failed changed the data"
                );
                assert_eq!(described.version, 1, "{n}");
            }
        }
    }

    // After ejection, stores to those keys succeed on the new owner, which then serves them.
    for n in &names {
        let df = frame(7);
        let info = tokio::time::timeout(Duration::from_secs(30), client.store(n, &df))
            .await
            .expect("store hung")
            .unwrap();
        let owner = backend_of(&mut raw, n).await.unwrap();
        assert_ne!(owner, victim);
        assert!(client.load(n).await.unwrap().equals_missing(&df));
        assert_eq!(client.describe(n).await.unwrap().version, info.version);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_that_comes_back_gets_its_keys_back() {
    let mut cluster = Cluster::start(3);
    let gw = Gateway::start(&cluster, &["--health-interval", "0.3"]);
    let client = gw.client().await;
    let mut raw = raw(&gw.url()).await;
    let names: Vec<String> = (0..20).map(|i| format!("back_{i}")).collect();
    let mut before = HashMap::new();
    for n in &names {
        client.store(n, &frame(100)).await.unwrap();
        before.insert(n.clone(), backend_of(&mut raw, n).await.unwrap());
    }
    let victim = cluster.workers[2].addr().to_string();
    assert!(before.values().any(|b| *b == victim));
    let health = |up: u8| {
        let (url, victim) = (gw.metrics_url(), victim.clone());
        move || {
            let (url, victim) = (url.clone(), victim.clone());
            async move {
                http_get(&url).contains(&format!(
                    "polarway_gateway_upstream_healthy{{backend=\"{victim}\"}} {up}"
                ))
            }
        }
    };

    cluster.workers[2].proc.kill9();
    assert!(
        eventually(Duration::from_secs(20), health(0)).await,
        "the dead worker was not ejected"
    );
    for n in &names {
        assert_ne!(backend_of(&mut raw, n).await.unwrap(), victim);
        assert_eq!(client.load(n).await.unwrap().height(), 100);
    }

    // Same address again: the active check brings it back and its keys return to it.
    cluster.restart(2);
    assert!(
        eventually(Duration::from_secs(20), health(1)).await,
        "the restarted worker was not brought back"
    );
    for n in &names {
        assert_eq!(backend_of(&mut raw, n).await.unwrap(), before[n], "{n}");
        assert!(client.load(n).await.unwrap().equals_missing(&frame(100)));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn only_idempotent_calls_are_retried_on_a_dead_worker() {
    let mut cluster = Cluster::start(3);
    // No ejection during the test (checks every 60 s, passive ejection after 1000 failures): every
    // call routed to the dead worker meets it, so the retry rules alone decide the outcome.
    let gw = Gateway::start(
        &cluster,
        &["--health-interval", "60", "--eject-after", "1000"],
    );
    let client = DistributedClient::builder(gw.url())
        .retries(0, Duration::ZERO)
        .connect()
        .await
        .unwrap();
    let mut raw = raw(&gw.url()).await;
    let victim = cluster.workers[0].addr().to_string();
    // Two datasets on the victim: one to read, one for `query_into` (routed by its target).
    let mut on_victim = Vec::new();
    for i in 0..30 {
        let n = format!("retry_{i}");
        client.store(&n, &frame(50)).await.unwrap();
        if backend_of(&mut raw, &n).await.unwrap() == victim {
            on_victim.push(n);
        }
    }
    assert!(
        on_victim.len() >= 2,
        "{} datasets on the victim",
        on_victim.len()
    );
    let (name, target) = (on_victim[0].clone(), on_victim[1].clone());
    let sum_of = |df: polars::prelude::DataFrame| {
        df.column("s")
            .unwrap()
            .cast(&polars::prelude::DataType::Int64)
            .unwrap()
            .i64()
            .unwrap()
            .get(0)
    };
    // A query over 64 KiB works while its worker lives (used again below).
    let big = format!(
        "SELECT SUM(a) AS s FROM {name} /* {} */",
        "x".repeat(70 * 1024)
    );
    assert_eq!(sum_of(client.query(&big).await.unwrap()), Some(1225));
    cluster.workers[0].proc.kill9();

    // Idempotent: retried on another worker, they succeed.
    assert!(client.load(&name).await.unwrap().equals_missing(&frame(50)));
    assert_eq!(client.describe(&name).await.unwrap().rows, 50);
    let sum = client
        .query(&format!("SELECT SUM(a) AS s FROM {name}"))
        .await
        .unwrap();
    assert_eq!(sum_of(sum), Some(1225));
    let retried = http_get(&gw.metrics_url());
    assert!(
        retried.contains("polarway_gateway_retries_total{method=\"Load\"}"),
        "{retried}"
    );
    assert!(
        retried.contains("polarway_gateway_retries_total{method=\"Query\"}"),
        "{retried}"
    );

    // Too large to keep for a retry (over 64 KiB): passed through once, so UNAVAILABLE.
    assert_eq!(code_of(client.query(&big).await), Code::Unavailable);

    // Not idempotent: UNAVAILABLE (bounded), and nothing was written.
    let store = tokio::time::timeout(Duration::from_secs(30), client.store(&name, &frame(3))).await;
    assert_eq!(code_of(store.expect("store hung")), Code::Unavailable);
    let sql = format!("SELECT * FROM {name} WHERE a < 10");
    let into =
        tokio::time::timeout(Duration::from_secs(30), client.query_into(&sql, &target)).await;
    assert_eq!(code_of(into.expect("query into hung")), Code::Unavailable);
    for n in [&name, &target] {
        let d = client.describe(n).await.unwrap();
        assert_eq!((d.version, d.rows), (1, 50), "{n}");
    }
}

/// A port free on both 127.0.0.2 and 127.0.0.3 (one DNS name, one port, two addresses).
fn port_free_on_two_addresses() -> u16 {
    for _ in 0..50 {
        let a = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.3", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free on both 127.0.0.2 and 127.0.0.3");
}

#[tokio::test(flavor = "multi_thread")]
async fn backends_follow_dns_changes() {
    let state = tempfile::tempdir().unwrap();
    let port = port_free_on_two_addresses();
    let (a_addr, b_addr) = (format!("127.0.0.2:{port}"), format!("127.0.0.3:{port}"));
    let _a = worker_at(state.path(), &a_addr);
    let _b = worker_at(state.path(), &b_addr);
    let hosts_dir = tempfile::tempdir().unwrap();
    let hosts = hosts_dir.path().join("hosts");
    let set_hosts = |addrs: &[&str]| {
        let lines: String = addrs
            .iter()
            .map(|a| format!("{} workers.polarway.test\n", a.split(':').next().unwrap()))
            .collect();
        // In place, not a rename: the gateway sees this file through a bind mount.
        std::fs::write(&hosts, format!("127.0.0.1 localhost\n{lines}")).unwrap();
    };
    set_hosts(&[&a_addr]);
    let backend = format!("http://workers.polarway.test:{port}");
    let gw = Gateway::start_with_hosts(
        &hosts,
        &["--backend".into(), backend],
        &["--dns-interval", "0.3"],
    );
    let client = gw.client().await;
    let names: Vec<String> = (0..20).map(|i| format!("dns_{i}")).collect();
    for n in &names {
        client.store(n, &frame(3)).await.unwrap();
    }
    let mut raw = raw(&gw.url()).await;
    let placement = || {
        let names = names.clone();
        let mut raw = raw.clone();
        async move {
            let mut out = Vec::new();
            for n in &names {
                out.push(backend_of(&mut raw, n).await.map_err(|s| s.to_string()));
            }
            out
        }
    };
    assert!(
        placement()
            .await
            .iter()
            .all(|b| b.as_deref() == Ok(a_addr.as_str())),
        "one address, one worker"
    );

    // The name gains an address: the new worker joins and takes its share of the keys.
    set_hosts(&[&a_addr, &b_addr]);
    let spread = eventually(Duration::from_secs(15), || {
        let p = placement();
        let (a, b) = (a_addr.clone(), b_addr.clone());
        async move {
            let p = p.await;
            p.iter().any(|x| x.as_deref() == Ok(b.as_str()))
                && p.iter().any(|x| x.as_deref() == Ok(a.as_str()))
        }
    })
    .await;
    assert!(
        spread,
        "the second address was not picked up: {:?}",
        placement().await
    );

    // The name loses the first address: every key moves to the remaining worker, none fails.
    set_hosts(&[&b_addr]);
    let moved = eventually(Duration::from_secs(15), || {
        let p = placement();
        let b = b_addr.clone();
        async move { p.await.iter().all(|x| x.as_deref() == Ok(b.as_str())) }
    })
    .await;
    assert!(
        moved,
        "keys stayed on the removed address: {:?}",
        placement().await
    );
    let _ = backend_of(&mut raw, "dns_0").await.unwrap();
    for n in &names {
        assert_eq!(client.load(n).await.unwrap().height(), 3);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_retry_budget_caps_retries() {
    use futures::StreamExt;
    let cluster = Cluster::start(3);
    // No ejection (passive or active): every call whose first pick is the dead worker needs a retry.
    let gw = Gateway::start(
        &cluster,
        &[
            "--retry-budget-percent",
            "0",
            "--eject-after",
            "1000000",
            "--health-interval",
            "3600",
        ],
    );
    // Kill only after the one active check (at start) has passed, so the worker stays in rotation.
    let checked = eventually(Duration::from_secs(10), || async {
        sum(
            &scrape(&gw.metrics_url()),
            "polarway_gateway_upstream_healthy",
            &[],
        ) == 3.0
    })
    .await;
    assert!(checked, "the gateway's first health check did not pass");
    let mut cluster = cluster;
    cluster.workers[0].proc.kill9();
    let client = DistributedClient::builder(gw.url())
        .retries(0, Duration::ZERO)
        .connect()
        .await
        .unwrap();
    let codes: Vec<Code> = futures::stream::iter(0..600)
        .map(|i| {
            let client = client.clone();
            async move { code_of(client.describe(&format!("budget_{i}")).await) }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let unavailable = codes.iter().filter(|c| **c == Code::Unavailable).count();
    let not_found = codes.iter().filter(|c| **c == Code::NotFound).count();
    assert_eq!(unavailable + not_found, 600, "{codes:?}");
    let retries = sum(
        &scrape(&gw.metrics_url()),
        "polarway_gateway_retries_total",
        &[("method", "Describe")],
    );
    // With 0 % the budget is its floor: 10 retries per second over its 10 s window, 100 in all
    // (a few more only if this run outlasted the window). About a third of 600 keys rank the dead
    // worker first; past the budget they fail with UNAVAILABLE instead of being retried.
    assert!(
        (100.0..=130.0).contains(&retries),
        "retries: {retries}, unavailable: {unavailable}, not found: {not_found}"
    );
    assert!(
        unavailable >= 20,
        "calls refused a retry once the budget was spent: {unavailable}"
    );
}
