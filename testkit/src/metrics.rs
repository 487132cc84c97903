//! A Prometheus `/metrics` endpoint read the way Prometheus does, over plain HTTP/1.1 (bounded).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

/// GET a URL over plain HTTP/1.1; the whole response, headers included.
pub fn http_get(url: &str) -> String {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// One sample of the Prometheus text format: name, labels, value.
#[derive(Clone, Debug)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The samples of a text exposition (an HTTP response's headers are skipped).
pub fn parse(text: &str) -> Vec<Sample> {
    let body = text.split_once("\r\n\r\n").map_or(text, |(_, b)| b);
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|p| !p.is_empty())
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
                .collect();
            Some(Sample {
                name: name.to_string(),
                labels,
                value: value.parse().ok()?,
            })
        })
        .collect()
}

/// The sum of `name` over the samples whose labels include every pair of `want`.
pub fn sum(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && want
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

/// The samples at `url`, which must answer 200.
pub fn scrape(url: &str) -> Vec<Sample> {
    let text = http_get(url);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    parse(&text)
}

/// The value of one series, `name{labels}` exactly as exported, at `http://ADDR/metrics`.
pub fn series(addr: &str, series: &str) -> Option<f64> {
    http_get(&format!("http://{addr}/metrics"))
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}
