//! Reload on SIGHUP or when watched files change (polled): the policy (worker and gateway) and
//! the gateway's TLS certificate follow their files this way.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// What identifies a file's content cheaply: modification time and size (`None`: unreadable).
fn stamp(paths: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    paths
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
        })
        .collect()
}

/// Call `reload` on SIGHUP, and when a file of `files()` changes (checked every `poll`, then
/// `settle` is waited for a writer to finish related files). `what` names it in logs. A refused
/// reload is not retried until the files change again.
pub async fn on_change(
    what: &str,
    poll: Duration,
    settle: Duration,
    files: impl Fn() -> Vec<PathBuf>,
    mut reload: impl FnMut(),
) {
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(
                "cannot listen for SIGHUP (the {what} reloads only when its files change): {e}"
            );
            None
        }
    };
    let mut seen = stamp(&files());
    loop {
        let hup_fired = async {
            match hup.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = hup_fired => {
                tracing::info!("SIGHUP: reloading the {what}");
                reload();
            }
            _ = tokio::time::sleep(poll) => {
                if stamp(&files()) == seen {
                    continue;
                }
                tokio::time::sleep(settle).await;
                reload();
            }
        }
        seen = stamp(&files());
    }
}
