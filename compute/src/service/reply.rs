//! Response streams fed by a blocking producer (Load, Query), and the bounds on what one caller
//! may hold: a stream whose caller stops reading is ended after the stall timeout (so it cannot
//! hold a request slot until its deadline), and with a policy each identity may have
//! `limits.max_in_flight` calls in progress.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc::error::SendTimeoutError;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::ResponseStream;
use crate::error::{Error, Result};

/// Messages buffered ahead of a slow client: with 1 MiB chunks, a few MiB per stream.
const IN_FLIGHT_MESSAGES: usize = 4;

/// The producing end of a response stream.
pub struct Reply<T> {
    tx: mpsc::Sender<Result<T, Status>>,
    /// The error to end the stream with, when the buffer was full as it failed.
    failure: Arc<Mutex<Option<Status>>>,
    stall: Duration,
    stalled: Counter,
    handle: tokio::runtime::Handle,
}

/// A response stream and its producing end; `stalled` counts streams ended for not being read.
/// Call inside the runtime.
pub fn channel<T: Send + 'static>(
    stall: Duration,
    stalled: Counter,
) -> (Reply<T>, ResponseStream<T>) {
    let (tx, rx) = mpsc::channel(IN_FLIGHT_MESSAGES);
    let failure: Arc<Mutex<Option<Status>>> = Default::default();
    let last = failure.clone();
    // After the producer's messages, the failure it could not queue (if any).
    let tail =
        futures::stream::once(async move { last.lock().unwrap_or_else(|e| e.into_inner()).take() })
            .filter_map(|f| async move { f.map(Err) });
    let stream = ReceiverStream::new(rx).chain(tail);
    (
        Reply {
            tx,
            failure,
            stall,
            stalled,
            handle: tokio::runtime::Handle::current(),
        },
        Box::pin(stream),
    )
}

impl<T: Send + 'static> Reply<T> {
    /// Send one message, blocking (call from a blocking thread). Fails when the caller went away
    /// or has not read anything for the stall timeout.
    pub fn send(&self, msg: T) -> Result<()> {
        match self
            .handle
            .block_on(self.tx.send_timeout(Ok(msg), self.stall))
        {
            Ok(()) => Ok(()),
            Err(SendTimeoutError::Closed(_)) => {
                Err(Error::Unavailable("the client went away".into()))
            }
            Err(SendTimeoutError::Timeout(_)) => {
                self.stalled.inc();
                Err(Error::Status(Status::cancelled(format!(
                    "the response was not read for {:?}; the stream was ended (read streams as they arrive)",
                    self.stall
                ))))
            }
        }
    }

    /// End the stream with `status` after what was sent.
    pub fn fail(&self, status: Status) {
        if let Err(e) = self.tx.try_send(Err(status)) {
            let status = match e {
                mpsc::error::TrySendError::Full(Err(s))
                | mpsc::error::TrySendError::Closed(Err(s)) => s,
                _ => return,
            };
            *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
        }
    }

    /// Whether nobody reads this stream any more.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// Calls in progress per identity (a worker with a policy).
#[derive(Default)]
pub struct IdentitySlots {
    slots: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl IdentitySlots {
    pub fn acquire(&self, who: &str, max: usize) -> Result<OwnedSemaphorePermit> {
        let semaphore = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            if slots.len() > 10_000 {
                slots.retain(|_, s| s.available_permits() < max);
            }
            // Keyed with the bound too: a policy reload that changes it starts counting afresh.
            slots
                .entry(format!("{who}\u{0}{max}"))
                .or_insert_with(|| Arc::new(Semaphore::new(max)))
                .clone()
        };
        semaphore.try_acquire_owned().map_err(|_| {
            Error::ResourceExhausted(format!(
                "{who} already has {max} calls in progress (limits.max_in_flight); wait for some to finish, and read response streams to their end"
            ))
        })
    }
}
