//! The workers: their addresses, their health, and which one a key goes to. Rendezvous
//! (highest-random-weight) hashing of a key over the healthy workers sends one dataset's calls to
//! one worker, so its cache stays warm; when a worker is ejected only the keys it ranked first move
//! (each to its next-ranked worker), the others stay. Keyless calls go round robin.
//!
//! Backends come from `--backend` flags and the policy's `routing.backends`; host names are
//! resolved again every `--dns-interval` (one worker per address, e.g. a Kubernetes headless
//! service), keeping the health state of addresses that stay.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http::Uri;
use polarway_access::PolicyHandle;
pub use polarway_access::Strategy;

/// One worker address.
#[derive(Debug)]
pub struct Endpoint {
    /// `ip:port` (or `host:port` when not resolved): the hashing identity and metrics label.
    pub addr: String,
    pub uri: Uri,
    healthy: AtomicBool,
    failures: AtomicU32,
}

impl Endpoint {
    fn new(uri: Uri) -> Self {
        let addr = uri.authority().map(|a| a.to_string()).unwrap_or_default();
        // Optimistic until the first check: calls work from the first second.
        Self {
            addr,
            uri,
            healthy: AtomicBool::new(true),
            failures: AtomicU32::new(0),
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Set by the active check; returns whether it changed.
    pub fn set_healthy(&self, healthy: bool) -> bool {
        if healthy {
            self.failures.store(0, Ordering::Relaxed);
        }
        self.healthy.swap(healthy, Ordering::Relaxed) != healthy
    }

    /// A transport failure seen by a call; ejects after `threshold` in a row. True if it ejected.
    pub fn record_failure(&self, threshold: u32) -> bool {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        n >= threshold && self.healthy.swap(false, Ordering::Relaxed)
    }

    pub fn record_success(&self) {
        self.failures.store(0, Ordering::Relaxed);
    }
}

/// 64-bit FNV-1a then a splitmix64 finaliser: stable across builds and gateway replicas.
fn score(key: &str, addr: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in key.bytes().chain([0xff]).chain(addr.bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d049bb133111eb);
    h ^ (h >> 31)
}

#[derive(Default)]
pub struct Backends {
    endpoints: RwLock<Arc<Vec<Arc<Endpoint>>>>,
    /// Last successful resolution of each spec (kept when DNS fails for a while).
    resolved: tokio::sync::Mutex<HashMap<String, Vec<Uri>>>,
    rr: AtomicUsize,
}

impl Backends {
    pub fn endpoints(&self) -> Arc<Vec<Arc<Endpoint>>> {
        self.endpoints.read().unwrap().clone()
    }

    /// The worker for a call: highest rendezvous score among healthy, untried workers.
    pub fn pick(
        &self,
        strategy: Strategy,
        key: Option<&str>,
        tried: &[String],
    ) -> Option<Arc<Endpoint>> {
        let all = self.endpoints();
        let candidates: Vec<&Arc<Endpoint>> = all
            .iter()
            .filter(|e| e.is_healthy() && !tried.contains(&e.addr))
            .collect();
        match (strategy, key) {
            (Strategy::Hash, Some(key)) => candidates
                .into_iter()
                .max_by_key(|e| score(key, &e.addr))
                .cloned(),
            _ if candidates.is_empty() => None,
            _ => {
                Some(candidates[self.rr.fetch_add(1, Ordering::Relaxed) % candidates.len()].clone())
            }
        }
    }

    /// Resolve `specs` (worker URLs) into endpoints, keeping existing ones (and their health).
    pub async fn resolve(&self, specs: &[String]) {
        let mut resolved = self.resolved.lock().await;
        let mut uris = Vec::new();
        for spec in specs {
            match expand(spec).await {
                Ok(list) => {
                    resolved.insert(spec.clone(), list.clone());
                    uris.extend(list);
                }
                Err(e) => {
                    tracing::warn!(backend = %spec, "cannot resolve: {e}; keeping the last known addresses");
                    uris.extend(resolved.get(spec).cloned().unwrap_or_default());
                }
            }
        }
        resolved.retain(|k, _| specs.contains(k));
        let current = self.endpoints();
        let mut next: Vec<Arc<Endpoint>> = Vec::new();
        for uri in uris {
            if next.iter().any(|e| e.uri == uri) {
                continue;
            }
            let kept = current.iter().find(|e| e.uri == uri).cloned();
            next.push(kept.unwrap_or_else(|| Arc::new(Endpoint::new(uri))));
        }
        let changed = next.len() != current.len()
            || next.iter().zip(current.iter()).any(|(a, b)| a.uri != b.uri);
        if changed {
            tracing::info!(backends = ?next.iter().map(|e| e.addr.as_str()).collect::<Vec<_>>(), "backends");
            *self.endpoints.write().unwrap() = Arc::new(next);
        }
    }
}

/// A worker URL into one URI per address its host resolves to.
async fn expand(spec: &str) -> Result<Vec<Uri>, String> {
    let uri: Uri = spec
        .parse()
        .map_err(|e| format!("invalid backend URL {spec:?}: {e}"))?;
    let scheme = uri.scheme_str().unwrap_or("http").to_string();
    if scheme != "http" && scheme != "https" {
        return Err(format!("backend {spec:?}: use http:// or https://"));
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("backend {spec:?} has no host"))?
        .trim_matches(['[', ']'])
        .to_string();
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let build = |authority: String| -> Result<Uri, String> {
        Uri::builder()
            .scheme(scheme.as_str())
            .authority(authority)
            .path_and_query("/")
            .build()
            .map_err(|e| e.to_string())
    };
    if host.parse::<IpAddr>().is_ok() {
        return Ok(vec![build(uri.authority().unwrap().to_string())?]);
    }
    let mut addrs: Vec<_> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| e.to_string())?
        .collect();
    addrs.sort();
    addrs.dedup();
    addrs.into_iter().map(|a| build(a.to_string())).collect()
}

/// Keep the endpoint list current: at start, every `every`, and when the policy changes.
pub async fn refresh(
    backends: Arc<Backends>,
    flags: Vec<String>,
    policy: PolicyHandle,
    every: Duration,
) {
    let mut changes = policy.subscribe();
    loop {
        let mut specs = flags.clone();
        specs.extend(policy.current().backends.iter().cloned());
        backends.resolve(&specs).await;
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = changes.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends(addrs: &[&str]) -> Backends {
        let b = Backends::default();
        let eps = addrs
            .iter()
            .map(|a| Arc::new(Endpoint::new(format!("http://{a}/").parse().unwrap())))
            .collect();
        *b.endpoints.write().unwrap() = Arc::new(eps);
        b
    }

    #[test]
    fn only_the_failed_workers_keys_move() {
        let b = backends(&["10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"]);
        let keys: Vec<String> = (0..300).map(|i| format!("trades_{i}")).collect();
        let before: Vec<String> = keys
            .iter()
            .map(|k| b.pick(Strategy::Hash, Some(k), &[]).unwrap().addr.clone())
            .collect();
        for addr in ["10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"] {
            let n = before.iter().filter(|a| *a == addr).count();
            assert!(n > 60, "{addr} got only {n} of 300 keys");
        }
        b.endpoints()[1].set_healthy(false);
        for (k, was) in keys.iter().zip(&before) {
            let now = b.pick(Strategy::Hash, Some(k), &[]).unwrap().addr.clone();
            if was == "10.0.0.2:1" {
                assert_ne!(now, "10.0.0.2:1");
            } else {
                assert_eq!(&now, was, "key {k} moved although its worker is healthy");
            }
        }
    }
}
