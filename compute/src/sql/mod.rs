//! SQL with embedded DuckDB, sandboxed.
//!
//! A query first passes the gate (`gate.rs`): one read-only statement, judged on DuckDB's parse
//! tree, whose every table and file the caller may read. What it reads is pinned (`reads.rs`):
//! each file is hard-linked into a directory private to the query and handed to DuckDB as an
//! open descriptor, so no path of the store is named and no version changes underneath. It then
//! runs on a sandboxed in-memory DuckDB instance (`pool.rs`: long-lived, one query at a time)
//! that can read nothing but the query's directory and its spill directory: external access is
//! off but for those, extensions can be neither installed nor loaded, and the configuration is
//! locked. Datasets named as tables become temporary views over their files. A timer interrupts
//! queries that run past their deadline; DuckDB's memory limit bounds each query.

pub mod gate;
mod pool;
pub mod reads;

pub use pool::Pool;

use std::path::Path;
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

/// What a running query produces: its schema once, then batches.
pub enum Output {
    Schema(SchemaRef),
    Batch(RecordBatch),
}

/// A query ready to run: a sandboxed connection with the views it needs, on a pooled instance
/// (`pool.rs`) or, when a file of the query lies outside its pinned directory, on an instance
/// of its own whose allowed paths are exactly the query's files.
pub struct Sandbox {
    conn: Conn,
}

enum Conn {
    Pooled(Box<pool::Lease>),
    /// An instance for this query alone, and its spill directory (its own: no query can see
    /// another's temporary files).
    Single {
        conn: Option<Connection>,
        spill: std::path::PathBuf,
    },
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Conn::Single { conn, spill } = &mut self.conn {
            drop(conn.take());
            let _ = std::fs::remove_dir_all(spill);
        }
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Let `conn` read nothing but `spill` (also its temporary directory), the directories `dirs` and
/// the files `files`. Allowed paths can only be set while external access is on: set them, then
/// turn it off.
fn confine(conn: &Connection, spill: &Path, dirs: &[&Path], files: &[String]) -> Result<()> {
    let dir = |d: &Path| quote(&d.join("").display().to_string());
    let spill = dir(spill);
    let dirs: Vec<String> = std::iter::once(spill.clone())
        .chain(dirs.iter().map(|d| dir(d)))
        .collect();
    let allowed = match files.is_empty() {
        true => String::new(),
        false => format!(
            "SET allowed_paths = [{}];",
            files
                .iter()
                .map(|f| quote(f))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    conn.execute_batch(&format!(
        "SET temp_directory = {spill};
         SET allowed_directories = [{}];
         {allowed}
         SET enable_external_access = false;",
        dirs.join(", ")
    ))
    .map_err(|e| Error::internal("preparing the SQL sandbox", e))
}

impl Sandbox {
    /// `tables`: (dataset name, its file) pairs to expose as views; `files`: every file the query
    /// may read (the views' files among them), each `/proc/self/fd/N`, normally in `pins`, the
    /// query's directory of pinned files.
    pub fn open(
        pool: &Arc<Pool>,
        pins: &Path,
        tables: &[(String, String)],
        files: &[String],
    ) -> Result<Self> {
        let sandbox = match pool.lease(pins, files)? {
            Some(lease) => Self {
                conn: Conn::Pooled(Box::new(lease)),
            },
            None => Self::single(pool, files)?,
        };
        let temp = matches!(sandbox.conn, Conn::Pooled(_));
        for (name, file) in tables {
            sandbox
                .conn()
                .execute_batch(&format!(
                    "CREATE {} VIEW \"{}\" AS SELECT * FROM read_parquet({});",
                    if temp { "TEMP" } else { "" },
                    name.replace('"', "\"\""),
                    quote(file)
                ))
                .map_err(|e| {
                    sandbox.spoil();
                    classify(e)
                })?;
        }
        if !temp {
            sandbox
                .conn()
                .execute_batch("SET lock_configuration = true;")
                .map_err(|e| Error::internal("preparing the SQL sandbox", e))?;
        }
        Ok(sandbox)
    }

    /// An instance for one query, allowed to read exactly `files` (locked once its views exist).
    fn single(pool: &Pool, files: &[String]) -> Result<Self> {
        let conn = base(pool.limits())?;
        let spill = pool
            .spill_root()
            .join(crate::scratch::staging_name("spill"));
        std::fs::create_dir_all(&spill)?;
        // Removes the spill directory again if setting up fails.
        let mut sandbox = Self {
            conn: Conn::Single {
                conn: None,
                spill: spill.clone(),
            },
        };
        confine(&conn, &spill, &[], files)?;
        if let Conn::Single { conn: slot, .. } = &mut sandbox.conn {
            *slot = Some(conn);
        }
        Ok(sandbox)
    }

    /// The query was interrupted or failed: its pooled instance is closed, not reused.
    fn spoil(&self) {
        if let Conn::Pooled(lease) = &self.conn {
            lease.spoiled.set(true);
        }
    }

    fn conn(&self) -> &Connection {
        match &self.conn {
            Conn::Pooled(lease) => lease.conn.as_ref(),
            Conn::Single { conn, .. } => conn.as_ref(),
        }
        .expect("an open sandbox has its connection")
    }

    /// Run `sql` with `params` bound to its placeholders, handing the result's schema and then each batch to `sink`. A watchdog
    /// interrupts the query after `timeout`, or as soon as `abandoned()` says nobody waits for
    /// the result any more (so a cancelled call stops burning CPU). `sink` returns false to stop.
    pub fn run(
        &self,
        sql: &str,
        params: &[duckdb::types::Value],
        timeout: Duration,
        abandoned: &(dyn Fn() -> bool + Sync),
        mut sink: impl FnMut(Output) -> Result<bool>,
    ) -> Result<()> {
        let conn = self.conn();
        let interrupt = conn.interrupt_handle();
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
                        tracing::debug!("the caller went away: stopping its query");
                        Stop::Abandoned
                    } else {
                        continue;
                    };
                    // Again every tick until the query ends: an interrupt that lands before DuckDB
                    // starts executing (while the statement is prepared) is reset by the execution.
                    loop {
                        interrupt.interrupt();
                        match done_rx.recv_timeout(WATCHDOG_TICK) {
                            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                            _ => return Some(stop),
                        }
                    }
                }
            });
            let result = (|| {
                let mut stmt = conn.prepare(sql).map_err(classify)?;
                let mut stream = stmt
                    .stream_arrow(duckdb::params_from_iter(params))
                    .map_err(classify)?;
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
            let stopped = watchdog.join().unwrap_or(None);
            // An interrupted instance, or one that failed other than on the query's own terms,
            // is closed rather than trusted with another query.
            let own_terms = matches!(
                &result,
                Ok(())
                    | Err(Error::InvalidArgument(_)
                        | Error::NotFound(_)
                        | Error::PermissionDenied { .. })
            );
            if stopped.is_some() || !own_terms {
                self.spoil();
            }
            match (result, stopped) {
                (Err(_), Some(Stop::Deadline)) => Err(Error::DeadlineExceeded(format!(
                    "the query ran longer than its {timeout:?} limit and was stopped; narrow it or allow more time"
                ))),
                (Err(_), Some(Stop::Abandoned)) => Err(Error::Status(tonic::Status::cancelled("the client went away"))),
                (result, _) => result,
            }
        })
    }
}

/// An instance with the sandbox's limits, before its files, views and lock.
fn base(limits: &SqlLimits) -> Result<Connection> {
    let setup = |e: duckdb::Error| Error::internal("preparing the SQL sandbox", e);
    let config = Config::default()
        .enable_autoload_extension(false)
        .and_then(|c| c.threads(limits.threads.max(1) as i64))
        .and_then(|c| c.max_memory(&limits.memory_limit))
        .and_then(|c| c.with("autoinstall_known_extensions", "false"))
        .and_then(|c| c.with("allow_community_extensions", "false"))
        .map_err(setup)?;
    Connection::open_in_memory_with_flags(config).map_err(setup)
}

impl Sandbox {
    /// The schema of what `sql` returns with `params` bound, without running it: no row is wanted.
    pub fn describe(
        &self,
        sql: &str,
        params: &[duckdb::types::Value],
        timeout: Duration,
    ) -> Result<SchemaRef> {
        let mut schema = None;
        self.run(
            &format!("SELECT * FROM ({sql}) AS described LIMIT 0"),
            params,
            timeout,
            &|| false,
            |out| {
                if let Output::Schema(s) = out {
                    schema = Some(s);
                }
                Ok(false)
            },
        )?;
        schema.ok_or_else(|| Error::internal("describing a query", "no schema"))
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
    if lower.contains("permission error")
        || lower.contains("disabled by configuration")
        || lower.contains("cannot be changed")
    {
        Error::denied("sandbox", format!("{msg}; queries may read only the stored datasets they name (and their cold/ Parquet files)"))
    } else if lower.contains("out of memory") {
        Error::ResourceExhausted(format!(
            "{msg}; the query needs more than the per-query memory limit (--query-memory-limit)"
        ))
    } else if lower.contains("no files found") {
        Error::NotFound(msg)
    } else if lower.contains("catalog error") && lower.contains("does not exist") {
        Error::NotFound(format!(
            "{msg}; stored datasets are tables by name (`list` shows them)"
        ))
    } else {
        Error::InvalidArgument(msg)
    }
}
