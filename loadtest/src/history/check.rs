//! The checker: what a history of stores and loads must satisfy for the store to be linearizable
//! per dataset, given what was read back at the end. Every write stores a frame that names it (a
//! unique write id in every row), so each version read back says which write it came from.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Cond {
    None,
    IfAbsent,
    IfVersion(u64),
}

/// What one load found: the write its rows came from, and whether they are all there.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Read {
    pub write: Option<u64>,
    pub complete: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Outcome {
    /// Acknowledged with this version.
    Stored {
        version: u64,
    },
    /// Refused with a code that promises nothing was written (ABORTED, INVALID_ARGUMENT...).
    Refused {
        code: String,
    },
    /// Failed without knowing (UNAVAILABLE, DEADLINE_EXCEEDED...): written or not, never half.
    Unknown {
        code: String,
    },
    Loaded {
        version: u64,
        read: Read,
    },
    LoadFailed {
        code: String,
    },
}

#[derive(Clone, Debug, Serialize)]
pub struct Op {
    pub id: usize,
    pub client: usize,
    pub dataset: String,
    /// The write id of a store; `None` for a load.
    pub write: Option<u64>,
    pub cond: Cond,
    pub start_us: u64,
    pub end_us: u64,
    pub outcome: Outcome,
}

/// A dataset as read back after the run, every retained version.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Final {
    pub latest: u64,
    /// Version -> what it holds, or the error that loading it gave.
    pub versions: BTreeMap<u64, Result<Read, String>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Anomaly {
    pub kind: &'static str,
    pub dataset: String,
    pub detail: String,
    /// The smallest sub-history that shows it: the operations involved.
    pub ops: Vec<usize>,
}

/// Codes after which a store certainly did not happen.
pub fn definite_refusal(code: &str) -> bool {
    matches!(
        code,
        "ABORTED"
            | "ALREADY_EXISTS"
            | "INVALID_ARGUMENT"
            | "FAILED_PRECONDITION"
            | "PERMISSION_DENIED"
            | "UNAUTHENTICATED"
            | "NOT_FOUND"
            | "OUT_OF_RANGE"
            | "RESOURCE_EXHAUSTED"
    )
}

pub fn check(ops: &[Op], finals: &BTreeMap<String, Final>) -> Vec<Anomaly> {
    let mut found = Vec::new();
    let mut push = |kind, dataset: &str, detail: String, ops: Vec<usize>| {
        found.push(Anomaly {
            kind,
            dataset: dataset.to_string(),
            detail,
            ops,
        })
    };
    let writes: HashMap<u64, &Op> = ops.iter().filter_map(|o| o.write.map(|w| (w, o))).collect();

    for (name, fin) in finals {
        let here: Vec<&Op> = ops.iter().filter(|o| &o.dataset == name).collect();
        let acked: Vec<(&Op, u64)> = here
            .iter()
            .filter_map(|o| match o.outcome {
                Outcome::Stored { version } => Some((*o, version)),
                _ => None,
            })
            .collect();

        // The versions read back: 1..=latest, each one complete write of this dataset, each write
        // in one version at most, and no refused write among them.
        let mut holder: HashMap<u64, u64> = HashMap::new(); // write -> version
        for v in 1..=fin.latest {
            match fin.versions.get(&v) {
                None | Some(Err(_)) => push(
                    "gap",
                    name,
                    format!(
                        "version {v} of {} cannot be read back: {}",
                        fin.latest,
                        match fin.versions.get(&v) {
                            Some(Err(e)) => e.as_str(),
                            _ => "not loaded",
                        }
                    ),
                    vec![],
                ),
                Some(Ok(read)) => {
                    let Some(w) = read.write.filter(|_| read.complete) else {
                        push(
                            "partial-version",
                            name,
                            format!("version {v} does not hold one whole write: {read:?}"),
                            vec![],
                        );
                        continue;
                    };
                    match writes.get(&w) {
                        None => push(
                            "phantom-write",
                            name,
                            format!("version {v} holds write {w}, which nobody sent"),
                            vec![],
                        ),
                        Some(op) if &op.dataset != name => push(
                            "phantom-write",
                            name,
                            format!("version {v} holds write {w}, sent to {}", op.dataset),
                            vec![op.id],
                        ),
                        Some(op) => {
                            if let Outcome::Refused { code } = &op.outcome {
                                push(
                                    "refused-write-visible",
                                    name,
                                    format!("version {v} holds write {w}, refused with {code}"),
                                    vec![op.id],
                                );
                            }
                            if let Some(other) = holder.insert(w, v) {
                                push(
                                    "written-twice",
                                    name,
                                    format!("write {w} is both version {other} and version {v}"),
                                    vec![op.id],
                                );
                            }
                        }
                    }
                }
            }
        }

        // Each acknowledged write is the version it was acknowledged as, and unique.
        let mut by_version: HashMap<u64, &Op> = HashMap::new();
        for (op, v) in &acked {
            if let Some(first) = by_version.insert(*v, op) {
                push(
                    "duplicate-version",
                    name,
                    format!(
                        "writes {} and {} were both acknowledged as version {v}",
                        w(first),
                        w(op)
                    ),
                    vec![first.id, op.id],
                );
            }
            match holder.iter().find(|(_, hv)| *hv == v).map(|(w, _)| *w) {
                Some(held) if Some(held) == op.write => {}
                Some(held) => push(
                    "lost-write",
                    name,
                    format!(
                        "write {} was acknowledged as version {v}, which holds write {held}",
                        w(op)
                    ),
                    vec![op.id],
                ),
                None => push(
                    "lost-write",
                    name,
                    format!(
                        "write {} was acknowledged as version {v}; the dataset ends at {}",
                        w(op),
                        fin.latest
                    ),
                    vec![op.id],
                ),
            }
            let expected = match op.cond {
                Cond::IfAbsent => Some(1),
                Cond::IfVersion(n) => Some(n + 1),
                Cond::None => None,
            };
            if let Some(e) = expected.filter(|e| e != v) {
                push(
                    "condition-violated",
                    name,
                    format!(
                        "write {} under {:?} was acknowledged as version {v}, not {e}",
                        w(op),
                        op.cond
                    ),
                    vec![op.id],
                );
            }
        }

        // Real time: a write acknowledged before another started has the smaller version.
        let mut by_end = acked.clone();
        by_end.sort_by_key(|(o, _)| o.end_us);
        for (a, va) in &by_end {
            if let Some((b, vb)) = acked
                .iter()
                .filter(|(b, vb)| b.start_us > a.end_us && vb <= va)
                .min_by_key(|(b, _)| b.start_us)
            {
                push(
                    "real-time-order",
                    name,
                    format!(
                        "write {} (version {va}) was acknowledged before write {} started, which got version {vb}",
                        w(a),
                        w(b)
                    ),
                    vec![a.id, b.id],
                );
            }
        }

        // Loads: never older than a write acknowledged before they started, and the version
        // they report holds what they returned.
        for l in &here {
            let Outcome::Loaded { version, read } = &l.outcome else {
                continue;
            };
            if let Some((a, va)) = acked
                .iter()
                .filter(|(a, va)| a.end_us < l.start_us && va > version)
                .max_by_key(|(_, va)| *va)
            {
                push(
                    "stale-read",
                    name,
                    format!(
                        "a load returned version {version} after write {} had been acknowledged as version {va}",
                        w(a)
                    ),
                    vec![a.id, l.id],
                );
            }
            let at_end = fin.versions.get(version).and_then(|r| r.as_ref().ok());
            if !read.complete
                || read.write.is_none()
                || at_end.is_some_and(|f| f.write != read.write)
            {
                push(
                    "read-mismatch",
                    name,
                    format!(
                        "a load returned version {version} as {read:?}; read back at the end it is {at_end:?}"
                    ),
                    vec![l.id],
                );
            }
        }
    }
    found
}

fn w(op: &Op) -> String {
    op.write
        .map(|w| w.to_string())
        .unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(id: usize, write: u64, cond: Cond, span: (u64, u64), outcome: Outcome) -> Op {
        Op {
            id,
            client: 0,
            dataset: "d".into(),
            write: Some(write),
            cond,
            start_us: span.0,
            end_us: span.1,
            outcome,
        }
    }

    fn load(id: usize, span: (u64, u64), version: u64, write: u64) -> Op {
        Op {
            id,
            client: 1,
            dataset: "d".into(),
            write: None,
            cond: Cond::None,
            start_us: span.0,
            end_us: span.1,
            outcome: Outcome::Loaded {
                version,
                read: Read {
                    write: Some(write),
                    complete: true,
                },
            },
        }
    }

    fn stored(version: u64) -> Outcome {
        Outcome::Stored { version }
    }

    fn finals(versions: &[(u64, u64)]) -> BTreeMap<String, Final> {
        let mut f = Final::default();
        for (v, w) in versions {
            f.latest = f.latest.max(*v);
            f.versions.insert(
                *v,
                Ok(Read {
                    write: Some(*w),
                    complete: true,
                }),
            );
        }
        BTreeMap::from([("d".to_string(), f)])
    }

    fn kinds(ops: &[Op], fin: &BTreeMap<String, Final>) -> Vec<&'static str> {
        check(ops, fin).into_iter().map(|a| a.kind).collect()
    }

    /// A clean history, with an unacknowledged write that took effect and one that did not.
    fn clean() -> Vec<Op> {
        vec![
            store(0, 10, Cond::IfAbsent, (0, 10), stored(1)),
            store(1, 11, Cond::IfVersion(1), (20, 30), stored(2)),
            store(
                2,
                12,
                Cond::None,
                (25, 40),
                Outcome::Unknown {
                    code: "UNAVAILABLE".into(),
                },
            ),
            store(
                3,
                13,
                Cond::IfVersion(1),
                (35, 45),
                Outcome::Refused {
                    code: "ABORTED".into(),
                },
            ),
            store(
                4,
                14,
                Cond::None,
                (50, 60),
                Outcome::Unknown {
                    code: "DEADLINE_EXCEEDED".into(),
                },
            ),
            load(5, (32, 34), 2, 11),
            store(6, 15, Cond::None, (70, 80), stored(4)),
            load(7, (85, 90), 4, 15),
        ]
    }

    #[test]
    fn a_linearizable_history_passes() {
        assert_eq!(
            kinds(&clean(), &finals(&[(1, 10), (2, 11), (3, 12), (4, 15)])),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn each_kind_of_anomaly_is_found() {
        let ok = [(1, 10), (2, 11), (3, 12), (4, 15)];
        // A version missing in the middle.
        let mut gap = finals(&ok);
        gap.get_mut("d")
            .unwrap()
            .versions
            .insert(3, Err("NOT_FOUND".into()));
        assert_eq!(kinds(&clean(), &gap), ["gap"]);
        // The refused write became a version.
        assert!(
            kinds(&clean(), &finals(&[(1, 10), (2, 11), (3, 13), (4, 15)]))
                .contains(&"refused-write-visible")
        );
        // An acknowledged write is not where it was acknowledged.
        assert!(
            kinds(&clean(), &finals(&[(1, 10), (2, 12), (3, 11), (4, 15)])).contains(&"lost-write")
        );
        // One write stored twice (a retried commit).
        assert!(kinds(
            &clean(),
            &finals(&[(1, 10), (2, 11), (3, 12), (4, 15), (5, 15)])
        )
        .contains(&"written-twice"));
        // Half a write.
        let mut partial = finals(&ok);
        partial.get_mut("d").unwrap().versions.insert(
            3,
            Ok(Read {
                write: Some(12),
                complete: false,
            }),
        );
        assert_eq!(kinds(&clean(), &partial), ["partial-version"]);
        // Rows nobody wrote.
        assert!(
            kinds(&clean(), &finals(&[(1, 10), (2, 11), (3, 99), (4, 15)]))
                .contains(&"phantom-write")
        );

        // Two acknowledgements of one version, and the condition that did not hold.
        let mut h = clean();
        h.push(store(8, 16, Cond::IfVersion(3), (100, 110), stored(4)));
        let k = kinds(&h, &finals(&ok));
        assert!(
            k.contains(&"duplicate-version") && k.contains(&"real-time-order"),
            "{k:?}"
        );
        let mut h = clean();
        h.push(store(8, 16, Cond::IfAbsent, (100, 110), stored(5)));
        assert_eq!(
            kinds(&h, &finals(&[(1, 10), (2, 11), (3, 12), (4, 15), (5, 16)])),
            ["condition-violated"]
        );

        // A load that went back in time, and one whose rows are not its version's.
        let mut h = clean();
        h.push(load(8, (95, 99), 2, 11));
        assert_eq!(kinds(&h, &finals(&ok)), ["stale-read"]);
        let mut h = clean();
        h.push(load(8, (95, 99), 4, 12));
        assert_eq!(kinds(&h, &finals(&ok)), ["read-mismatch"]);
    }

    #[test]
    fn the_witness_is_the_operations_involved() {
        let mut h = clean();
        h.push(load(8, (95, 99), 2, 11));
        let a = check(&h, &finals(&[(1, 10), (2, 11), (3, 12), (4, 15)]));
        assert_eq!(a.len(), 1);
        assert_eq!(
            a[0].ops,
            vec![6, 8],
            "the write acknowledged before, and the stale load"
        );
    }
}
