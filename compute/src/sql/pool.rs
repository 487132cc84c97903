//! Long-lived sandboxed DuckDB instances, each serving one query at a time.
//!
//! Opening a DuckDB instance costs 10-15 ms of CPU (its catalog of built-in functions), most of a
//! small query's time, and closing one costs more. An instance here is opened once, sandboxed and
//! locked (external access off, extensions off, no external file cache) with one *room*: the only
//! directory besides its spill directory that it may read. DuckDB judges a file by its real path,
//! so for each query the query's own directory of pinned files (`reads.rs`) is renamed onto the
//! room, the query runs on a fresh connection whose views are temporary (they go with the
//! connection), and the directory is renamed back when the query ends. Between queries the room is
//! empty: an instance can reach no file of an earlier query, and no view or setting of one.
//!
//! An instance is closed instead of reused after an interrupted or failed query (its state is not
//! trusted), when its spill directory is not empty, after `MAX_QUERIES` queries, or when enough
//! instances are idle already.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use duckdb::Connection;

use super::{base, confine, SqlLimits};
use crate::error::{Error, Result};
use crate::scratch::staging_name;

/// Queries one instance serves before it is closed and a new one opened.
const MAX_QUERIES: usize = 500;

pub struct Pool {
    idle: Mutex<Vec<Instance>>,
    /// Where instances' homes are made: the pins root, so that a query's pinned directory (made
    /// there too) can be renamed onto a room.
    homes: PathBuf,
    spill_root: PathBuf,
    limits: SqlLimits,
    /// Idle instances kept.
    keep: usize,
}

impl Pool {
    pub fn new(homes: &Path, spill_root: &Path, limits: SqlLimits) -> Arc<Self> {
        // Enough for the queries that run at once on this many cores (an idle instance holds
        // about 15 MiB); a burst beyond it opens instances that close after their query.
        let keep = std::thread::available_parallelism().map_or(4, |n| (2 * n.get()).clamp(4, 16));
        Arc::new(Self {
            idle: Mutex::new(Vec::new()),
            homes: homes.to_path_buf(),
            spill_root: spill_root.to_path_buf(),
            limits,
            keep,
        })
    }

    pub fn limits(&self) -> &SqlLimits {
        &self.limits
    }

    pub fn spill_root(&self) -> &Path {
        &self.spill_root
    }

    /// Open one instance in the background, so that the first query does not wait for it.
    pub fn warm(self: &Arc<Self>) {
        let pool = self.clone();
        std::thread::spawn(move || {
            if let Ok(instance) = Instance::open(&pool) {
                pool.put(instance);
            }
        });
    }

    /// Idle instances (for tests and metrics).
    pub fn idle(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Instance>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self) -> Result<Instance> {
        match self.lock().pop() {
            Some(instance) => Ok(instance),
            None => Instance::open(self),
        }
    }

    fn put(&self, instance: Instance) {
        let mut idle = self.lock();
        if idle.len() < self.keep {
            idle.push(instance);
        } else {
            drop(idle);
            instance.close_in_background();
        }
    }

    /// An instance for a query whose every file in `files` (`/proc/self/fd/N`) lies in `pins`,
    /// its pinned directory, which is moved onto the instance's room until the lease ends. None
    /// when a file lies elsewhere (then the query needs an instance of its own).
    pub(super) fn lease(self: &Arc<Self>, pins: &Path, files: &[String]) -> Result<Option<Lease>> {
        let pins_real = std::fs::canonicalize(pins).ok();
        for f in files {
            let inside = std::fs::read_link(f)
                .ok()
                .zip(pins_real.as_ref())
                .is_some_and(|(real, pins)| real.starts_with(pins));
            if !inside {
                return Ok(None);
            }
        }
        let instance = self.take()?;
        let moved = match pins_real {
            Some(_) => match std::fs::rename(pins, &instance.room) {
                Ok(()) => Some(pins.to_path_buf()),
                Err(e) => {
                    self.put(instance);
                    return Err(Error::internal("preparing the SQL sandbox", e));
                }
            },
            None => None,
        };
        let mut lease = Lease {
            pool: self.clone(),
            instance: Some(instance),
            moved,
            spoiled: Default::default(),
            conn: None,
        };
        match lease.instance().db().try_clone() {
            Ok(conn) => lease.conn = Some(conn),
            Err(e) => {
                lease.spoiled.set(true);
                return Err(Error::internal("preparing the SQL sandbox", e));
            }
        }
        lease.instance_mut().served += 1;
        Ok(Some(lease))
    }
}

struct Instance {
    /// The root connection; each query runs on a clone of it.
    db: Option<Connection>,
    /// Its directory under the pins root; `home/q` is the room.
    home: PathBuf,
    /// The room, by its real path (as DuckDB compares them).
    room: PathBuf,
    spill: PathBuf,
    served: usize,
}

impl Instance {
    fn open(pool: &Pool) -> Result<Self> {
        let setup = |e: duckdb::Error| Error::internal("preparing the SQL sandbox", e);
        let home = pool.homes.join(staging_name("sandbox"));
        let spill = pool.spill_root.join(staging_name("spill"));
        std::fs::create_dir_all(home.join("q"))?;
        std::fs::create_dir_all(&spill)?;
        let mut instance = Instance {
            db: None,
            room: std::fs::canonicalize(home.join("q"))?,
            home,
            spill,
            served: 0,
        };
        let db = base(&pool.limits)?;
        // No external file cache: it would keep data of files after their query.
        db.execute_batch("SET enable_external_file_cache = false;")
            .map_err(setup)?;
        confine(&db, &instance.spill, &[&instance.room], &[])?;
        db.execute_batch("SET lock_configuration = true;")
            .map_err(setup)?;
        instance.db = Some(db);
        Ok(instance)
    }

    fn db(&self) -> &Connection {
        self.db
            .as_ref()
            .expect("an open instance has its connection")
    }

    fn close_in_background(self) {
        std::thread::spawn(move || drop(self));
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        drop(self.db.take());
        let _ = std::fs::remove_dir_all(&self.home);
        let _ = std::fs::remove_dir_all(&self.spill);
    }
}

/// One query's use of a pooled instance: its connection, and the pinned directory moved onto
/// the instance's room. Ending it moves the directory back and returns (or closes) the instance.
pub struct Lease {
    pool: Arc<Pool>,
    instance: Option<Instance>,
    /// The pinned directory's own path, while it sits on the room.
    moved: Option<PathBuf>,
    /// The instance is not to be reused.
    pub(super) spoiled: std::cell::Cell<bool>,
    pub(super) conn: Option<Connection>,
}

impl Lease {
    fn instance(&self) -> &Instance {
        self.instance.as_ref().expect("a lease holds its instance")
    }

    fn instance_mut(&mut self) -> &mut Instance {
        self.instance.as_mut().expect("a lease holds its instance")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // The query's temporary views go with its connection.
        drop(self.conn.take());
        let Some(instance) = self.instance.take() else {
            return;
        };
        let mut reusable = !self.spoiled.get() && instance.served < MAX_QUERIES;
        if let Some(pins) = self.moved.take() {
            let back = std::fs::rename(&instance.room, &pins)
                .and_then(|()| std::fs::create_dir(&instance.room));
            reusable &= back.is_ok();
        }
        // What DuckDB spilled stays until its database closes: no later query may see it.
        reusable &= std::fs::read_dir(&instance.spill).is_ok_and(|mut d| d.next().is_none());
        if reusable {
            self.pool.put(instance);
        } else {
            instance.close_in_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    use arrow::array::{Array, Int64Array};

    use super::*;
    use crate::sql::{Output, Sandbox};

    fn pool(root: &Path) -> Arc<Pool> {
        let limits = SqlLimits {
            timeout: Duration::from_secs(10),
            memory_limit: "256MB".into(),
            threads: 1,
        };
        std::fs::create_dir_all(root.join("pins")).unwrap();
        std::fs::create_dir_all(root.join("spill")).unwrap();
        Pool::new(&root.join("pins"), &root.join("spill"), limits)
    }

    /// A Parquet file holding `x = value` in `dir`, opened: the file and its `/proc/self/fd/N`.
    fn parquet(dir: &Path, value: i64) -> (File, String) {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join(format!("{value}.parquet"));
        Connection::open_in_memory()
            .unwrap()
            .execute_batch(&format!(
                "COPY (SELECT {value}::BIGINT AS x) TO '{}' (FORMAT parquet)",
                path.display()
            ))
            .unwrap();
        let file = File::open(&path).unwrap();
        let fd = format!("/proc/self/fd/{}", file.as_raw_fd());
        (file, fd)
    }

    fn values(sandbox: &Sandbox, sql: &str, timeout: Duration) -> Result<Vec<i64>> {
        let mut out = Vec::new();
        sandbox.run(sql, &[], timeout, &|| false, |o| {
            if let Output::Batch(b) = o {
                let col = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                out.extend((0..col.len()).map(|i| col.value(i)));
            }
            Ok(true)
        })?;
        Ok(out)
    }

    fn homes(root: &Path) -> usize {
        std::fs::read_dir(root.join("pins"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "sandbox")
            })
            .count()
    }

    const SECS: Duration = Duration::from_secs(10);

    #[test]
    fn one_instance_serves_query_after_query_and_keeps_nothing_of_them() {
        let root = tempfile::tempdir().unwrap();
        let pool = pool(root.path());
        let first = root.path().join("pins/q1");
        let (_file, fd) = parquet(&first, 42);
        let sandbox = Sandbox::open(
            &pool,
            &first,
            &[("t".into(), fd.clone())],
            std::slice::from_ref(&fd),
        )
        .unwrap();
        assert!(!first.exists(), "the pinned directory sits on the room");
        assert_eq!(values(&sandbox, "SELECT x FROM t", SECS).unwrap(), [42]);
        drop(sandbox);
        assert!(
            first.join("42.parquet").exists(),
            "moved back when the query ended"
        );
        assert_eq!(pool.idle(), 1);

        // The next query on the same instance sees neither the view nor the files of the first.
        let second = root.path().join("pins/q2");
        let sandbox = Sandbox::open(&pool, &second, &[], &[]).unwrap();
        assert!(matches!(
            values(&sandbox, "SELECT x FROM t", SECS),
            Err(Error::NotFound(_))
        ));
        for path in [fd.clone(), first.join("42.parquet").display().to_string()] {
            let read = values(
                &sandbox,
                &format!("SELECT x FROM read_parquet('{path}')"),
                SECS,
            );
            assert!(
                matches!(read, Err(Error::PermissionDenied { .. })),
                "{path}: {read:?}"
            );
        }
        drop(sandbox);
        assert_eq!(homes(root.path()), 1, "one instance served both queries");
        assert_eq!(pool.idle(), 1);
    }

    #[test]
    fn an_interrupted_instance_is_closed_not_reused() {
        let root = tempfile::tempdir().unwrap();
        let pool = pool(root.path());
        let sandbox = Sandbox::open(&pool, &root.path().join("pins/q"), &[], &[]).unwrap();
        let slow = "SELECT count(*)::BIGINT FROM range(1000000000000) a";
        assert!(matches!(
            values(&sandbox, slow, Duration::from_millis(300)),
            Err(Error::DeadlineExceeded(_))
        ));
        drop(sandbox);
        assert_eq!(pool.idle(), 0);
        let gone = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            homes(root.path()) == 0
        });
        assert!(gone, "the interrupted instance's directory was removed");
    }

    #[test]
    fn a_file_outside_the_pinned_directory_gets_an_instance_of_its_own() {
        let root = tempfile::tempdir().unwrap();
        let pool = pool(root.path());
        let (_file, fd) = parquet(&root.path().join("elsewhere"), 7);
        let pins = root.path().join("pins/q");
        let sandbox = Sandbox::open(&pool, &pins, &[("t".into(), fd.clone())], &[fd]).unwrap();
        assert_eq!(values(&sandbox, "SELECT x FROM t", SECS).unwrap(), [7]);
        drop(sandbox);
        assert_eq!((pool.idle(), homes(root.path())), (0, 0));
    }
}
