//! A self-contained HTML report: tables and inline SVG line charts drawn here (no scripts, no
//! network fetch), so the file can be opened anywhere or attached to an issue.

use std::fmt::Write;

use crate::report::{OpStats, Report};

const COLORS: [&str; 6] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
];

pub(crate) struct Series {
    pub name: String,
    pub color: &'static str,
    pub dashed: bool,
    pub points: Vec<(f64, f64)>,
}

pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn fmt_num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// A line chart; `log_x` plots x on a log10 scale; `markers` draws labelled vertical lines.
pub(crate) fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log_x: bool,
    markers: &[(f64, String)],
) -> String {
    let (w, h, ml, mr, mt, mb) = (860.0, 320.0, 70.0, 170.0, 30.0, 45.0);
    let (pw, ph) = (w - ml - mr, h - mt - mb);
    let tx = |x: f64| if log_x { x.max(1e-6).log10() } else { x };
    let pts = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y1) = (f64::MAX, f64::MIN, 0.0f64);
    for (x, y) in pts {
        x0 = x0.min(tx(*x));
        x1 = x1.max(tx(*x));
        y1 = y1.max(*y);
    }
    for (x, _) in markers {
        x0 = x0.min(tx(*x));
        x1 = x1.max(tx(*x));
    }
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        svg,
        r#"<text x="{ml}" y="18" font-size="14" font-weight="bold">{}</text>"#,
        esc(title)
    );
    if x0 > x1 {
        svg.push_str(r#"<text x="100" y="100">no data</text></svg>"#);
        return svg;
    }
    if x1 - x0 < 1e-9 {
        x1 = x0 + 1.0;
    }
    if y1 <= 0.0 {
        y1 = 1.0;
    }
    y1 *= 1.05;
    let px = |x: f64| ml + (tx(x) - x0) / (x1 - x0) * pw;
    let py = |y: f64| mt + ph - y / y1 * ph;
    // Axes, grid and ticks.
    let _ = write!(
        svg,
        r##"<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>"##
    );
    for i in 0..=5 {
        let y = y1 * i as f64 / 5.0;
        let (x2, yy, tx_, ty) = (ml + pw, py(y), ml - 4.0, py(y) + 4.0);
        let _ = write!(
            svg,
            r##"<line x1="{ml}" x2="{x2}" y1="{yy}" y2="{yy}" stroke="#eee"/><text x="{tx_}" y="{ty}" text-anchor="end">{}</text>"##,
            fmt_num(y)
        );
    }
    if log_x {
        let (mut e, last) = (x0.floor() as i32, x1.ceil() as i32);
        while e <= last {
            let v = 10f64.powi(e);
            if tx(v) >= x0 - 1e-9 && tx(v) <= x1 + 1e-9 {
                let (x, y2, ty) = (px(v), mt + ph, mt + ph + 14.0);
                let _ = write!(
                    svg,
                    r##"<line x1="{x}" x2="{x}" y1="{mt}" y2="{y2}" stroke="#eee"/><text x="{x}" y="{ty}" text-anchor="middle">{}</text>"##,
                    fmt_num(v)
                );
            }
            e += 1;
        }
    } else {
        for i in 0..=6 {
            let v = x0 + (x1 - x0) * i as f64 / 6.0;
            let x = ml + pw * i as f64 / 6.0;
            let _ = write!(
                svg,
                r##"<text x="{x}" y="{ty}" text-anchor="middle">{label}</text>"##,
                ty = mt + ph + 14.0,
                label = fmt_num(v)
            );
        }
    }
    let _ = write!(
        svg,
        r#"<text x="{x}" y="{y}" text-anchor="middle">{label}</text>"#,
        x = ml + pw / 2.0,
        y = h - 8.0,
        label = esc(x_label)
    );
    let _ = write!(
        svg,
        r#"<text transform="translate(14,{y}) rotate(-90)" text-anchor="middle">{label}</text>"#,
        y = mt + ph / 2.0,
        label = esc(y_label)
    );
    for (x, label) in markers {
        let (lx, y2, tx_, ty) = (px(*x), mt + ph, px(*x) + 3.0, mt + 12.0);
        let _ = write!(
            svg,
            r##"<line x1="{lx}" x2="{lx}" y1="{mt}" y2="{y2}" stroke="#d62728" stroke-dasharray="2,3"/><text x="{tx_}" y="{ty}" fill="#d62728">{}</text>"##,
            esc(label)
        );
    }
    for (i, s) in series.iter().enumerate() {
        let path: Vec<String> = s
            .points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let dash = if s.dashed {
            r#" stroke-dasharray="5,4""#
        } else {
            ""
        };
        if path.len() == 1 {
            let (x, y) = s.points[0];
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"#,
                px(x),
                py(y),
                s.color
            );
        }
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{c}" stroke-width="1.6"{dash} points="{p}"/>"#,
            c = s.color,
            p = path.join(" ")
        );
        let ly = mt + 14.0 * i as f64 + 8.0;
        let (x1_, x2_, tx_, ty) = (ml + pw + 10.0, ml + pw + 30.0, ml + pw + 34.0, ly + 4.0);
        let _ = write!(
            svg,
            r#"<line x1="{x1_}" x2="{x2_}" y1="{ly}" y2="{ly}" stroke="{c}" stroke-width="2"{dash}/><text x="{tx_}" y="{ty}">{n}</text>"#,
            c = s.color,
            n = esc(&s.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn secs(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into())
}

fn op_row(name: &str, s: &OpStats) -> String {
    let errors: Vec<String> = s
        .errors
        .iter()
        .map(|(k, v)| format!("{}={v}", esc(k)))
        .collect();
    format!(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td></tr>",
        esc(name), s.calls, s.ok, s.throughput_per_s, s.mib_per_s, s.latency_ms.p50, s.latency_ms.p90, s.latency_ms.p99, s.latency_ms.p999, s.latency_ms.max, errors.join(" ")
    )
}

pub fn render(r: &Report) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>polarway-loadtest: {0}</title><style>body{{font-family:sans-serif;margin:24px;color:#222}}table{{border-collapse:collapse;margin:8px 0 20px}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}pre{{background:#f6f6f6;padding:8px;overflow:auto}}</style></head><body>",
        esc(&r.scenario.name)
    );
    let _ = write!(
        h,
        "<h1>polarway-loadtest: {}</h1><p>Target <code>{}</code>, {:.1} s, {:?} loop, concurrency {}{}, {} connection(s); {} datasets of {} rows × {} columns, keys {:?}.</p>",
        esc(&r.scenario.name),
        esc(&r.target),
        r.elapsed_s,
        r.scenario.run.mode,
        r.scenario.run.concurrency,
        if r.scenario.run.rate > 0.0 { format!(", rate {} calls/s", r.scenario.run.rate) } else { String::new() },
        r.scenario.run.connections,
        r.scenario.datasets.count,
        r.scenario.datasets.rows,
        r.scenario.datasets.columns,
        r.scenario.keys.distribution
    );
    h.push_str("<h2>Operations</h2><table><tr><th>op</th><th>calls</th><th>ok</th><th>calls/s</th><th>MiB/s</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th><th>errors</th></tr>");
    for (name, s) in &r.operations {
        h.push_str(&op_row(name, s));
    }
    h.push_str(&op_row("total", &r.total));
    h.push_str("</table>");
    if let Some(c) = &r.cache {
        let _ = write!(h, "<h2>Workers' cache (during the run)</h2><p>{} hits, {} misses: hit rate <b>{:.3}</b>, {} evictions.</p><table><tr><th>worker</th><th>hits</th><th>misses</th><th>hit rate</th><th>evictions</th><th>bytes / capacity</th></tr>", c.hits, c.misses, c.hit_rate, c.evictions);
        for w in &c.workers {
            let _ = write!(h, "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{}</td><td>{} / {}{}</td></tr>", esc(&w.endpoint), w.hits, w.misses, w.hit_rate, w.evictions, w.bytes, w.capacity, w.error.as_deref().map(|e| format!(" ({})", esc(e))).unwrap_or_default());
        }
        h.push_str("</table>");
    }
    let mut markers = Vec::new();
    if let Some(f) = &r.fault {
        let _ = write!(h, "<h2>Fault</h2><p>Worker <code>{}</code> killed (SIGKILL) {} time(s), first at {} s, restarted at {} s. {} calls failed.</p><table><tr><th>op</th><th>status</th><th>calls</th></tr>", esc(&f.worker), f.kills.len(), secs(f.killed_at_s), secs(f.restarted_at_s), f.failed_total);
        for (op, by) in &f.failed {
            for (status, n) in by {
                let _ = write!(
                    h,
                    "<tr><td>{op}</td><td>{}</td><td>{n}</td></tr>",
                    esc(status)
                );
            }
        }
        h.push_str("</table>");
        for (killed, restarted) in &f.kills {
            markers.push((*killed, "kill -9".to_string()));
            if let Some(r) = restarted {
                markers.push((*r, "restart".to_string()));
            }
        }
    }
    let ops: Vec<&str> = r.operations.keys().copied().collect();
    let color = |i: usize| COLORS[i % COLORS.len()];
    let mut lat = Vec::new();
    let mut thr = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let points: Vec<_> = r.timeline.iter().filter(|p| p.op == *op).collect();
        lat.push(Series {
            name: format!("{op} p99"),
            color: color(i),
            dashed: false,
            points: points.iter().map(|p| (p.second as f64, p.p99_ms)).collect(),
        });
        lat.push(Series {
            name: format!("{op} p50"),
            color: color(i),
            dashed: true,
            points: points.iter().map(|p| (p.second as f64, p.p50_ms)).collect(),
        });
        thr.push(Series {
            name: format!("{op} calls/s"),
            color: color(i),
            dashed: false,
            points: points
                .iter()
                .map(|p| (p.second as f64, (p.calls - p.errors) as f64))
                .collect(),
        });
        if points.iter().any(|p| p.errors > 0) {
            thr.push(Series {
                name: format!("{op} errors/s"),
                color: color(i),
                dashed: true,
                points: points
                    .iter()
                    .map(|p| (p.second as f64, p.errors as f64))
                    .collect(),
            });
        }
    }
    let hist: Vec<Series> = ops
        .iter()
        .enumerate()
        .map(|(i, op)| Series {
            name: op.to_string(),
            color: color(i),
            dashed: false,
            points: r
                .histograms
                .get(op)
                .map(|b| b.iter().map(|(ms, n)| (*ms, *n as f64)).collect())
                .unwrap_or_default(),
        })
        .collect();
    h.push_str("<h2>Charts</h2>");
    h.push_str(&line_chart(
        "Latency over time (per second, successful calls)",
        "second of the run",
        "ms",
        &lat,
        false,
        &markers,
    ));
    h.push_str("<br>");
    h.push_str(&line_chart(
        "Latency histogram (log-spaced buckets)",
        "latency, ms (log scale)",
        "calls",
        &hist,
        true,
        &[],
    ));
    h.push_str("<br>");
    h.push_str(&line_chart(
        "Throughput over time",
        "second of the run",
        "calls per second",
        &thr,
        false,
        &markers,
    ));
    if !r.memory.is_empty() {
        let rss: Vec<Series> = r
            .memory
            .iter()
            .enumerate()
            .map(|(i, m)| Series {
                name: m.process.clone(),
                color: color(i),
                dashed: false,
                points: m.samples.clone(),
            })
            .collect();
        h.push_str("<h2>Memory</h2><table><tr><th>process</th><th>RSS start MiB</th><th>end</th><th>peak</th><th>slope MiB/h</th><th>lives</th></tr>");
        for m in &r.memory {
            let slope = m
                .slope_mib_per_hour
                .map(|s| format!("{s:+.1}"))
                .unwrap_or_else(|| "n/a".into());
            let _ = write!(h, "<tr><td>{}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0}</td><td>{slope}</td><td>{}</td></tr>", esc(&m.process), m.start_mib, m.end_mib, m.peak_mib, m.lives);
        }
        h.push_str("</table><br>");
        h.push_str(&line_chart(
            "Resident memory (RSS) over time",
            "second of the run",
            "MiB",
            &rss,
            false,
            &markers,
        ));
    }
    if !r.failures.is_empty() {
        let _ = write!(h, "<h2>Failures (first {} of {})</h2><table><tr><th>at s</th><th>op</th><th>dataset</th><th>status</th><th>message</th></tr>", r.failures.len(), r.failures_total);
        for f in r.failures.iter().take(100) {
            let _ = write!(h, "<tr><td>{:.3}</td><td>{}</td><td>{}</td><td>{}</td><td style=\"text-align:left\">{}</td></tr>", f.at_s, f.op.name(), esc(&f.dataset), esc(&f.status), esc(&f.message));
        }
        h.push_str("</table>");
    }
    let _ = write!(
        h,
        "<h2>Scenario</h2><pre>{}</pre></body></html>",
        esc(&toml::to_string_pretty(&r.scenario).unwrap_or_default())
    );
    h
}
