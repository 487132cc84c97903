//! SQL with embedded DuckDB, sandboxed.
//!
//! Each query gets a fresh in-memory DuckDB instance that can read only the cold directory
//! (`<data-dir>/cold`, where the latest version of every dataset `X` appears as `X.parquet`):
//! external access is off except for that directory, extensions can be neither installed nor
//! loaded, the configuration is locked before the user's SQL runs, and only read-only statements
//! are accepted. Stored datasets referenced by name become views over their cold files. A timer
//! interrupts queries that run past their deadline; DuckDB's memory limit bounds each query.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use duckdb::{Config, Connection};

use crate::error::{Error, Result};

#[derive(Clone, Debug)]
pub struct SqlLimits {
    pub timeout: Duration,
    pub memory_limit: String,
    pub threads: usize,
}

/// Statements a query may start with: everything else (COPY, ATTACH, INSTALL, LOAD, SET, PRAGMA,
/// CREATE, INSERT, EXPORT, CALL, ...) is refused before DuckDB sees it.
const READ_ONLY_KEYWORDS: &[&str] =
    &["select", "with", "from", "values", "table", "describe", "show", "summarize", "pivot", "unpivot", "explain"];

/// Statements DuckDB knows that are not read-only: refused with PERMISSION_DENIED. Any other
/// first word is not SQL DuckDB could run: INVALID_ARGUMENT. Neither reaches DuckDB.
const REFUSED_KEYWORDS: &[&str] = &[
    "abort", "alter", "analyze", "attach", "begin", "call", "checkpoint", "comment", "commit", "copy", "create",
    "deallocate", "delete", "detach", "drop", "end", "execute", "export", "force", "import", "insert", "install",
    "load", "merge", "pragma", "prepare", "reset", "rollback", "set", "start", "truncate", "uninstall", "update",
    "upsert", "use", "vacuum",
];

/// Reject anything but a single read-only statement: PERMISSION_DENIED for statements that are
/// not read-only, INVALID_ARGUMENT for what is not a statement at all.
pub fn check_read_only(sql: &str) -> Result<()> {
    let body = strip_leading_comments(sql);
    let body = body.trim_start_matches(|c: char| c == '(' || c.is_whitespace());
    let word: String = body.chars().take_while(|c| c.is_ascii_alphabetic()).collect::<String>().to_ascii_lowercase();
    if word.is_empty() {
        return Err(Error::InvalidArgument("empty SQL: send a SELECT statement".into()));
    }
    if !READ_ONLY_KEYWORDS.contains(&word.as_str()) && !REFUSED_KEYWORDS.contains(&word.as_str()) {
        return Err(Error::InvalidArgument(format!(
            "syntax error at {word:?}: a query is one read-only SQL statement (SELECT, WITH, FROM, ...)"
        )));
    }
    if !READ_ONLY_KEYWORDS.contains(&word.as_str()) {
        return Err(Error::PermissionDenied(format!(
            "{} statements are not allowed: queries are read-only (SELECT, WITH, FROM, VALUES, DESCRIBE, SHOW, SUMMARIZE, PIVOT, EXPLAIN)",
            word.to_ascii_uppercase()
        )));
    }
    if word == "explain" {
        let rest = body[word.len()..].trim_start().to_ascii_lowercase();
        if rest.starts_with("analyze") || rest.starts_with("analyse") {
            return Err(Error::PermissionDenied("EXPLAIN ANALYZE is not allowed: it executes the statement".into()));
        }
    }
    Ok(())
}

fn strip_leading_comments(mut s: &str) -> &str {
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix("--") {
            s = rest.split_once('\n').map_or("", |(_, r)| r);
        } else if let Some(rest) = s.strip_prefix("/*") {
            s = rest.split_once("*/").map_or("", |(_, r)| r);
        } else {
            return s;
        }
    }
}

/// Identifiers in the SQL that could name datasets: bare words and "quoted" names.
pub fn referenced_identifiers(sql: &str) -> Vec<String> {
    let re = regex::Regex::new(r#""([^"]+)"|([A-Za-z0-9_][A-Za-z0-9_]*)"#).expect("static regex");
    let mut out: Vec<String> = re
        .captures_iter(sql)
        .filter_map(|c| c.get(1).or_else(|| c.get(2)).map(|m| m.as_str().to_string()))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// String literals in the SQL that address files in `cold_dir`, turned into name patterns over
/// dataset names (`/data/cold/trades_*.parquet` -> `trades_*`).
pub fn cold_path_patterns(sql: &str, cold_dir: &Path) -> Vec<regex::Regex> {
    let prefix = format!("{}/", cold_dir.display());
    let re = regex::Regex::new(r"'((?:[^']|'')*)'").expect("static regex");
    re.captures_iter(sql)
        .filter_map(|c| c.get(1).map(|m| m.as_str().replace("''", "'")))
        .filter_map(|lit| lit.strip_prefix(&prefix).map(str::to_string))
        .filter_map(|file| file.strip_suffix(".parquet").map(str::to_string))
        .filter_map(|glob| {
            let pattern = regex::escape(&glob).replace(r"\*", ".*").replace(r"\?", ".");
            regex::Regex::new(&format!("^{pattern}$")).ok()
        })
        .collect()
}

/// What a running query produces: its schema once, then batches.
pub enum Output {
    Schema(SchemaRef),
    Batch(RecordBatch),
}

/// A query ready to run: the sandboxed connection and the views it needs.
pub struct Sandbox {
    conn: Connection,
}

/// A DuckDB instance opened ahead of the next query: opening one takes 10-15 ms, most of a small
/// query's time. Each instance serves one query and is closed with it, so queries stay isolated;
/// taking the spare starts opening the next one in the background.
#[derive(Default)]
pub struct Spare(std::sync::Mutex<Option<Connection>>);

impl Spare {
    fn take(&self) -> Option<Connection> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn refill(self: &Arc<Self>, cold_dir: &Path, spill_dir: &Path, limits: &SqlLimits) {
        let (spare, cold, spill, limits) = (self.clone(), cold_dir.to_path_buf(), spill_dir.to_path_buf(), limits.clone());
        std::thread::spawn(move || {
            if let Ok(conn) = Sandbox::base(&cold, &spill, &limits) {
                *spare.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn);
            }
        });
    }
}

impl Sandbox {
    /// `tables`: (dataset name, its cold file) pairs to expose as views.
    pub fn open(
        cold_dir: &Path,
        spill_dir: &Path,
        tables: &[(String, PathBuf)],
        limits: &SqlLimits,
        spare: &Arc<Spare>,
    ) -> Result<Self> {
        let conn = match spare.take() {
            Some(conn) => conn,
            None => Self::base(cold_dir, spill_dir, limits)?,
        };
        spare.refill(cold_dir, spill_dir, limits);
        let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', "''"));
        for (name, file) in tables {
            conn.execute_batch(&format!(
                "CREATE VIEW \"{}\" AS SELECT * FROM read_parquet({});",
                name.replace('"', "\"\""),
                quote(file)
            ))
            .map_err(classify)?;
        }
        conn.execute_batch("SET lock_configuration = true;")
            .map_err(|e| Error::internal("preparing the SQL sandbox", e))?;
        Ok(Self { conn })
    }

    /// An instance with the sandbox's limits and file access, before its views and lock.
    fn base(cold_dir: &Path, spill_dir: &Path, limits: &SqlLimits) -> Result<Connection> {
        let setup = |e: duckdb::Error| Error::internal("preparing the SQL sandbox", e);
        let config = Config::default()
            .enable_autoload_extension(false)
            .and_then(|c| c.threads(limits.threads.max(1) as i64))
            .and_then(|c| c.max_memory(&limits.memory_limit))
            .and_then(|c| c.with("autoinstall_known_extensions", "false"))
            .and_then(|c| c.with("allow_community_extensions", "false"))
            .map_err(setup)?;
        let conn = Connection::open_in_memory_with_flags(config).map_err(setup)?;
        let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', "''"));
        std::fs::create_dir_all(spill_dir)?;
        conn.execute_batch(&format!(
            "SET temp_directory = {spill};
             SET allowed_directories = [{cold}, {spill}];
             SET enable_external_access = false;",
            cold = quote(&cold_dir.join("")),
            spill = quote(&spill_dir.join("")),
        ))
        .map_err(setup)?;
        Ok(conn)
    }

    /// Run `sql`, handing the result's schema and then each batch to `sink`. A watchdog
    /// interrupts the query after `timeout`, or as soon as `abandoned()` says nobody waits for
    /// the result any more (so a cancelled call stops burning CPU). `sink` returns false to stop.
    pub fn run(
        &self,
        sql: &str,
        timeout: Duration,
        abandoned: &(dyn Fn() -> bool + Sync),
        mut sink: impl FnMut(Output) -> Result<bool>,
    ) -> Result<()> {
        let interrupt = self.conn.interrupt_handle();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let deadline = std::time::Instant::now() + timeout;
        std::thread::scope(|scope| {
            let watchdog = scope.spawn(move || -> Option<Stop> {
                loop {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    match done_rx.recv_timeout(left.min(WATCHDOG_TICK)) {
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                        _ => return None,
                    }
                    let stop = if left <= WATCHDOG_TICK {
                        Stop::Deadline
                    } else if abandoned() {
                        Stop::Abandoned
                    } else {
                        continue;
                    };
                    interrupt.interrupt();
                    return Some(stop);
                }
            });
            let result = (|| {
                let mut stmt = self.conn.prepare(sql).map_err(classify)?;
                let mut stream = stmt.stream_arrow([]).map_err(classify)?;
                if !sink(Output::Schema(stream.get_schema()))? {
                    return Ok(());
                }
                for batch in &mut stream {
                    if !sink(Output::Batch(batch.map_err(classify)?))? {
                        break;
                    }
                }
                Ok(())
            })();
            let _ = done_tx.send(());
            match (result, watchdog.join().unwrap_or(None)) {
                (Err(_), Some(Stop::Deadline)) => Err(Error::DeadlineExceeded(format!(
                    "the query ran longer than its {timeout:?} limit and was stopped; narrow it or allow more time"
                ))),
                (Err(_), Some(Stop::Abandoned)) => Err(Error::Status(tonic::Status::cancelled("the client went away"))),
                (result, _) => result,
            }
        })
    }
}

/// How often the watchdog looks at the deadline and the caller.
const WATCHDOG_TICK: Duration = Duration::from_millis(100);

enum Stop {
    Deadline,
    Abandoned,
}

/// Map a DuckDB error to our error by its kind.
fn classify(e: duckdb::Error) -> Error {
    let msg = e.to_string();
    let lower = msg.to_ascii_lowercase();
    if lower.contains("permission error") || lower.contains("disabled by configuration") || lower.contains("cannot be changed") {
        Error::PermissionDenied(format!("{msg}; queries may read only stored datasets and the data directory's cold/ Parquet files"))
    } else if lower.contains("out of memory") {
        Error::ResourceExhausted(format!("{msg}; the query needs more than the per-query memory limit (--query-memory-limit)"))
    } else if lower.contains("no files found") {
        Error::NotFound(msg)
    } else if lower.contains("catalog error") && lower.contains("does not exist") {
        Error::NotFound(format!("{msg}; stored datasets are tables by name (`list` shows them)"))
    } else {
        Error::InvalidArgument(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_statements() {
        for ok in ["SELECT 1", " (select 1)", "-- c\nWITH a AS (SELECT 1) SELECT * FROM a", "/* x */ from t", "EXPLAIN SELECT 1"] {
            assert!(check_read_only(ok).is_ok(), "{ok}");
        }
        assert!(matches!(check_read_only("SELEC 1"), Err(Error::InvalidArgument(_))));
        for bad in ["COPY t TO '/tmp/x'", "ATTACH 'x.db'", "INSTALL httpfs", "LOAD httpfs", "SET x=1", "PRAGMA version", "EXPLAIN ANALYZE SELECT 1", "create table x(a int)"] {
            assert!(matches!(check_read_only(bad), Err(Error::PermissionDenied(_))), "{bad}");
        }
    }

    #[test]
    fn cold_patterns() {
        let pats = cold_path_patterns("SELECT * FROM parquet_scan('/data/cold/trades_*.parquet')", Path::new("/data/cold"));
        assert_eq!(pats.len(), 1);
        assert!(pats[0].is_match("trades_20260203"));
        assert!(!pats[0].is_match("quotes_20260203"));
    }
}
