//! What a checked query reads, resolved against the catalog and the caller's grants, and pinned.
//!
//! Every dataset the query names as a table, and every cold-directory path or glob it reads, is
//! resolved here to files the caller may Query: a name the caller may not read is refused with
//! PERMISSION_DENIED whether or not it exists, and a glob silently leaves out what the caller may
//! not read (so neither reveals another tenant's datasets). Each file is pinned now — hard-linked
//! into a directory private to the query (or, where that cannot be, held open), then opened — and
//! handed to DuckDB as `/proc/self/fd/N`: the query reads exactly the versions resolved here, even
//! if newer ones are committed or these are pruned or evicted meanwhile, and no path of the store
//! appears in its SQL, its results or its errors. The private directory goes when the query ends;
//! while the query runs it is the only directory (with its spill directory) that the query's
//! DuckDB may read (`pool.rs`), and the gate admits no statement that writes.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Component, Path, PathBuf};

use polarway_access::{glob_match, Access};

use super::gate::Reads;
use crate::error::{Error, Result};
use crate::store::{validate_name, Catalog, ObjectData};

/// Where a query may find its files.
pub struct Places<'a> {
    pub catalog: &'a Catalog,
    /// The cold directory as configured, made absolute, and its canonical form.
    pub cold_dirs: &'a [PathBuf],
    /// Where each query's private directory of pinned files is made.
    pub pins_root: &'a Path,
}

/// Dataset versions a query must read (a Flight ticket's snapshot); datasets not named here are
/// read at their latest version.
pub type Snapshot = BTreeMap<String, u64>;

/// The pinned files of one query.
pub struct Pinned {
    /// This query's directory of hard links (removed with it).
    dir: PathBuf,
    files: Vec<File>,
    by_name: HashMap<String, String>,
    /// Datasets named as tables: (name as written, its file).
    pub tables: Vec<(String, String)>,
    /// For each path use of the query, in order, the files it reads.
    pub path_files: Vec<Vec<String>>,
    /// The version of every dataset pinned: the query's snapshot.
    pub versions: Snapshot,
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Pinned {
    fn new(pins_root: &Path) -> Self {
        let dir = pins_root.join(crate::scratch::staging_name("pins"));
        Pinned {
            dir,
            files: vec![],
            by_name: HashMap::new(),
            tables: vec![],
            path_files: vec![],
            versions: Snapshot::new(),
        }
    }

    /// This query's directory of pinned files (made with its first file).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every file the query may read.
    pub fn allowed(&self) -> Vec<String> {
        self.files.iter().map(fd_path).collect()
    }

    fn hold(&mut self, file: File) -> String {
        let path = fd_path(&file);
        self.files.push(file);
        path
    }
}

fn fd_path(f: &File) -> String {
    format!("/proc/self/fd/{}", f.as_raw_fd())
}

const QUERY: &str = "Query";

/// Pin what `reads` names: the versions in `snapshot` where it names them, the latest otherwise.
pub async fn resolve(
    places: &Places<'_>,
    reads: &Reads,
    access: &Access,
    snapshot: &Snapshot,
) -> Result<Pinned> {
    let mut pinned = Pinned::new(places.pins_root);
    pinned.versions = snapshot.clone();
    for name in &reads.tables {
        access.check(QUERY, name)?;
        if validate_name(name).is_err() {
            return Err(Error::NotFound(format!(
                "there is no dataset {name:?}; `list` shows the stored datasets"
            )));
        }
        let file = pin_dataset(places, &mut pinned, name).await?;
        pinned.tables.push((name.clone(), file));
    }
    for use_ in &reads.paths {
        let mut files = Vec::new();
        for literal in &use_.patterns {
            files.extend(resolve_path(places, &mut pinned, literal, access).await?);
        }
        pinned.path_files.push(files);
    }
    Ok(pinned)
}

/// One path literal: a cold-directory file or glob, by dataset (or file) name.
async fn resolve_path(
    places: &Places<'_>,
    pinned: &mut Pinned,
    literal: &str,
    access: &Access,
) -> Result<Vec<String>> {
    let (dir, stem) = cold_stem(literal, places.cold_dirs).ok_or_else(|| {
        Error::denied("path", format!(
            "{literal:?} is not readable: queries read Parquet files of the cold directory only (<cold>/NAME.parquet, globs allowed)"
        ))
    })?;
    if !stem.contains(['*', '?']) {
        access.check(QUERY, &stem)?;
        return Ok(vec![pin_name(places, pinned, &dir, &stem).await?]);
    }
    let mut names: Vec<String> = places.catalog.names().await?;
    names.extend(user_files(&dir).await?);
    names.sort();
    names.dedup();
    names.retain(|n| glob_match(&stem, n) && access.allows(QUERY, n));
    let mut files = Vec::new();
    for name in names {
        match pin_name(places, pinned, &dir, &name).await {
            Ok(f) => files.push(f),
            Err(Error::NotFound(_)) => {} // deleted since it was listed
            Err(e) => return Err(e),
        }
    }
    if files.is_empty() {
        return Err(Error::NotFound(format!(
            "no dataset you may read matches {literal:?}"
        )));
    }
    Ok(files)
}

/// A dataset of that name, else a Parquet file of that name that a user put in the cold directory.
async fn pin_name(
    places: &Places<'_>,
    pinned: &mut Pinned,
    dir: &Path,
    name: &str,
) -> Result<String> {
    match pin_dataset(places, pinned, name).await {
        Err(Error::NotFound(_)) | Err(Error::InvalidArgument(_)) => {
            let path = dir.join(format!("{name}.parquet"));
            let pins = pinned.dir.clone();
            let file = tokio::task::spawn_blocking(move || pin_file(&path, &pins)).await?.map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    Error::NotFound(format!("there is no dataset {name:?} (nor a cold/{name}.parquet file); `list` shows the stored datasets"))
                }
                _ => e.into(),
            })?;
            Ok(pinned.hold(file))
        }
        other => other,
    }
}

async fn pin_dataset(places: &Places<'_>, pinned: &mut Pinned, name: &str) -> Result<String> {
    if let Some(path) = pinned.by_name.get(name) {
        return Ok(path.clone());
    }
    validate_name(name)?;
    // A version can be pruned between finding and opening it: look again then.
    let mut last = None;
    let wanted = pinned.versions.get(name).copied();
    for _ in 0..3 {
        let manifest = match wanted {
            Some(v) => places.catalog.get(name, Some(v)).await?,
            None => places.catalog.latest(name).await?,
        };
        let data = places.catalog.open(&manifest).await?;
        let pins = pinned.dir.clone();
        match tokio::task::spawn_blocking(move || open_object(data, &pins)).await? {
            Ok(file) => {
                let path = pinned.hold(file);
                pinned.by_name.insert(name.to_string(), path.clone());
                pinned.versions.insert(name.to_string(), manifest.version);
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => last = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.map_or_else(
        || Error::internal("opening a dataset", "no attempt"),
        Error::from,
    ))
}

/// An open, read-only handle on an object's bytes that stays valid for the query, in the
/// query's directory where that can be (so that a pooled sandbox may read it, `sql/pool.rs`).
fn open_object(data: ObjectData, pins: &Path) -> std::io::Result<File> {
    use std::io::Write;
    match data {
        ObjectData::File(path) => pin_file(&path, pins),
        // A private copy: linked into the query's directory, its own name dropped.
        ObjectData::Temp(path) => {
            let file = pin_file(&path, pins);
            let _ = std::fs::remove_file(&path);
            file
        }
        ObjectData::Bytes(bytes) => {
            std::fs::create_dir_all(pins)?;
            let path = pins.join(format!("{}.parquet", uuid::Uuid::new_v4().simple()));
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?;
            out.write_all(&bytes)?;
            File::open(&path)
        }
    }
}

/// Hard-link `path` into the query's directory and open the link, so that the file DuckDB is
/// given keeps existing under one name until the query ends whatever happens to `path` (DuckDB
/// checks a file's real path against the allowed ones each time it opens it). Across file
/// systems the file is opened where it is.
fn pin_file(path: &Path, pins: &Path) -> std::io::Result<File> {
    std::fs::create_dir_all(pins)?;
    let link = pins.join(format!("{}.parquet", uuid::Uuid::new_v4().simple()));
    match std::fs::hard_link(path, &link) {
        Ok(()) => File::open(&link),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(e),
        Err(_) => File::open(path),
    }
}

/// Names of Parquet files in the cold directory (datasets' own files among them).
async fn user_files(dir: &Path) -> Result<Vec<String>> {
    let dir = dir.to_path_buf();
    let names = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name
                .strip_suffix(".parquet")
                .filter(|s| !s.starts_with('.'))
            {
                out.push(stem.to_string());
            }
        }
        Ok(out)
    })
    .await?;
    match names {
        Ok(n) => Ok(n),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
        Err(e) => Err(e.into()),
    }
}

/// `<cold>/NAME.parquet` (NAME may hold `*` and `?`) -> (the cold directory, NAME). Relative paths
/// are taken from the working directory, as DuckDB would; `..` is refused outright.
fn cold_stem(literal: &str, cold_dirs: &[PathBuf]) -> Option<(PathBuf, String)> {
    let path = Path::new(literal);
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(path)
    };
    let mut clean = PathBuf::new();
    for c in absolute.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => return None,
            other => clean.push(other),
        }
    }
    let file = clean.file_name()?.to_str()?;
    let stem = file.strip_suffix(".parquet")?;
    let parent = clean.parent()?;
    let dir = cold_dirs.iter().find(|d| d.as_path() == parent)?;
    (!stem.is_empty()).then(|| (dir.clone(), stem.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cold_paths() {
        let dirs = [PathBuf::from("/data/cold")];
        assert_eq!(
            cold_stem("/data/cold/x_*.parquet", &dirs),
            Some((dirs[0].clone(), "x_*".into()))
        );
        assert_eq!(
            cold_stem("/data/./cold/x.parquet", &dirs).map(|s| s.1),
            Some("x".into())
        );
        for bad in [
            "/data/cold/../state/x.parquet",
            "/data/cold/sub/x.parquet",
            "/data/cold/x.csv",
            "/etc/x.parquet",
            "/data/cold/.parquet",
        ] {
            assert_eq!(cold_stem(bad, &dirs), None, "{bad}");
        }
    }
}
