//! The resident memory (RSS, from /proc/PID/status) of every process of a spawned cluster, sampled
//! through the run, and its slope: a process whose memory keeps growing under a steady load leaks.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

/// The current PID of each process, by name; the fault task updates a restarted worker's.
#[derive(Clone, Default)]
pub struct Pids(Arc<Mutex<BTreeMap<String, Option<u32>>>>);

impl Pids {
    pub fn set(&self, name: &str, pid: Option<u32>) {
        self.0.lock().unwrap().insert(name.to_string(), pid);
    }

    fn current(&self) -> Vec<(String, Option<u32>)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}

#[derive(Debug, Serialize)]
pub struct ProcessMemory {
    pub process: String,
    /// (second of the run, MiB).
    pub samples: Vec<(f64, f64)>,
    pub start_mib: f64,
    pub end_mib: f64,
    pub peak_mib: f64,
    /// Least-squares slope of RSS over the process's last life (since its last restart), its
    /// first fifth left out as warm-up; `None` with fewer than 10 samples there.
    pub slope_mib_per_hour: Option<f64>,
    /// How many times the process was (re)started during the run.
    pub lives: usize,
}

fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// Sample every `every` until `stop` is set; then summarize.
pub async fn sample(
    pids: Pids,
    every: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<ProcessMemory> {
    let t0 = Instant::now();
    // Per process: (second, MiB, pid).
    let mut seen: BTreeMap<String, Vec<(f64, f64, u32)>> = BTreeMap::new();
    let mut tick = tokio::time::interval(every);
    while !*stop.borrow() {
        tick.tick().await;
        let t = t0.elapsed().as_secs_f64();
        for (name, pid) in pids.current() {
            if let Some((pid, mib)) = pid.and_then(|p| rss_mib(p).map(|m| (p, m))) {
                seen.entry(name).or_default().push((t, mib, pid));
            }
        }
    }
    seen.into_iter()
        .map(|(process, s)| summarize(process, &s))
        .collect()
}

fn summarize(process: String, s: &[(f64, f64, u32)]) -> ProcessMemory {
    let last_pid = s.last().map(|x| x.2);
    let lives = 1 + s.windows(2).filter(|w| w[0].2 != w[1].2).count();
    let life: Vec<(f64, f64)> = s
        .iter()
        .rev()
        .take_while(|x| Some(x.2) == last_pid)
        .map(|x| (x.0, x.1))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let steady = &life[life.len() / 5..];
    ProcessMemory {
        process,
        samples: s.iter().map(|x| (x.0, x.1)).collect(),
        start_mib: s.first().map(|x| x.1).unwrap_or(0.0),
        end_mib: s.last().map(|x| x.1).unwrap_or(0.0),
        peak_mib: s.iter().map(|x| x.1).fold(0.0, f64::max),
        slope_mib_per_hour: (steady.len() >= 10).then(|| slope(steady) * 3600.0),
        lives,
    }
}

/// Least-squares slope of y over x.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let (num, den) = points.iter().fold((0.0, 0.0), |(num, den), (x, y)| {
        (num + (x - mx) * (y - my), den + (x - mx) * (x - mx))
    });
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_the_last_life_after_warm_up() {
        // 20 s at a flat 100 MiB, then a restart and 50 s growing 1 MiB/s after a warm-up spike.
        let mut s: Vec<(f64, f64, u32)> = (0..20).map(|t| (t as f64, 100.0, 7)).collect();
        s.extend((20..70).map(|t| {
            let mib = if t < 25 {
                500.0
            } else {
                50.0 + (t - 20) as f64
            };
            (t as f64, mib, 8)
        }));
        let m = summarize("worker0".into(), &s);
        assert_eq!(m.lives, 2);
        assert_eq!(m.peak_mib, 500.0);
        let per_hour = m.slope_mib_per_hour.unwrap();
        assert!((per_hour - 3600.0).abs() < 1.0, "{per_hour}");
        // A flat process has no slope; a short one gives none.
        let flat: Vec<_> = (0..30).map(|t| (t as f64, 80.0, 1)).collect();
        assert_eq!(summarize("gw".into(), &flat).slope_mib_per_hour, Some(0.0));
        assert_eq!(summarize("gw".into(), &flat[..5]).slope_mib_per_hour, None);
    }
}
