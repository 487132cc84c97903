//! The policy in force: read once per call, replaced whole by a reload.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::policy::{Policy, PolicyError};

/// The policy in force; cheap to clone.
#[derive(Clone)]
pub struct PolicyHandle(Arc<watch::Sender<Arc<Policy>>>);

impl PolicyHandle {
    pub fn new(policy: Policy) -> Self {
        Self(Arc::new(watch::Sender::new(Arc::new(policy))))
    }

    pub fn current(&self) -> Arc<Policy> {
        self.0.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Policy>> {
        self.0.subscribe()
    }

    /// Load the file again; on error keep the policy in force and say why.
    pub fn reload(&self) -> Result<(), PolicyError> {
        let Some(path) = self.current().path.clone() else {
            return Ok(());
        };
        match Policy::load(&path) {
            Ok(p) => {
                tracing::info!(policy = %path.display(), "policy reloaded");
                self.0.send_replace(Arc::new(p));
                Ok(())
            }
            Err(e) => {
                tracing::error!(policy = %path.display(), "policy refused, the previous one stays in force: {e}");
                Err(e)
            }
        }
    }

    /// Reload on SIGHUP and when a watched file (the policy, its JWKS files) changes, telling
    /// `reloaded` whether each reload was accepted.
    pub async fn watch(self, poll: Duration, mut reloaded: impl FnMut(bool)) {
        let watched = self.clone();
        crate::reload::on_change(
            "policy",
            poll,
            Duration::ZERO,
            move || watched.current().watched.clone(),
            move || reloaded(self.reload().is_ok()),
        )
        .await
    }
}
