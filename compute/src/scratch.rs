//! Names for the files and directories a worker makes for itself in places other workers may
//! share (staging, spill, pinned query inputs, disk cache): `<host>-<pid>-<uuid>.<ext>`, so a
//! worker that starts can tell what a dead process of its host left behind and remove it.

use std::path::Path;

/// Remove staging files left by dead processes of this host: several workers may share the
/// directory, so only files whose writer is gone are removed (other hosts' files are theirs).
pub fn remove_orphaned_staging_files(staging: &Path) {
    let Ok(entries) = std::fs::read_dir(staging) else {
        return;
    };
    for entry in entries.flatten() {
        if left_by_a_dead_process(&entry.file_name().to_string_lossy()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Whether `name` (`<host>-<pid>...`, see `process_tag`) was made by a process of this host that
/// is no longer running, or by an earlier life of this process id (a restarted container).
pub fn left_by_a_dead_process(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(&format!("{}-", hostname())) else {
        return false;
    };
    let Some(pid) = rest
        .split(['-', '.'])
        .next()
        .and_then(|p| p.parse::<u32>().ok())
    else {
        return false;
    };
    pid == std::process::id() || !Path::new(&format!("/proc/{pid}")).exists()
}

/// `<host>-<pid>`: names local files and directories of this process in places several
/// workers may share.
pub fn process_tag() -> String {
    format!("{}-{}", hostname(), std::process::id())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// A unique staging file name for this process.
pub fn staging_name(ext: &str) -> String {
    format!("{}-{}.{ext}", process_tag(), uuid::Uuid::new_v4().simple())
}
