//! Calls in progress per identity, and response streams nobody reads.
//!
//! A rate limit bounds how often an identity may call, not how many calls it keeps open: a tenant
//! could otherwise start hundreds of Loads, never read them, and hold every request slot of the
//! workers until the deadline cap ends them. So each identity may have `limits.max_in_flight`
//! calls in progress (beyond: RESOURCE_EXHAUSTED), a call counting until its response stream
//! ends, and all the JWT subjects of one issuer together `limits.max_in_flight_per_issuer` (an
//! issuer could otherwise mint subjects to multiply the bound); and a response stream whose caller
//! has not read for `limits.stall_timeout_secs` is ended, which cancels it on the worker and frees
//! its slot. A reload that changes a bound starts counting afresh.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use std::future::Future;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use polarway_access::PolicyHandle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;
use tower::ServiceExt;

use crate::call::{HttpService, Identity};
use crate::error::GatewayError;
use crate::layers::Step;

/// Defaults when a policy file does not set them (a gateway without a policy has no per-identity
/// bound: every caller is the same anonymous identity).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How often streams are looked at for stalls.
const STALL_TICK: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct InFlight {
    policy: PolicyHandle,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// Per identity: its semaphore and the bound it was made with.
    slots: Mutex<HashMap<String, (usize, Arc<Semaphore>)>>,
    /// Response streams being watched for stalls.
    streams: Mutex<HashMap<u64, Weak<StreamState>>>,
    next_id: AtomicU64,
}

impl InFlight {
    /// Also starts the stall watcher (so call it inside the runtime).
    pub fn new(policy: PolicyHandle) -> Self {
        let shared = Arc::new(Shared::default());
        let weak = Arc::downgrade(&shared);
        let watched = policy.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(STALL_TICK).await;
                let Some(shared) = weak.upgrade() else { return };
                let timeout = stall_timeout(&watched);
                shared.end_stalled(timeout);
            }
        });
        Self { policy, shared }
    }
}

fn stall_timeout(policy: &PolicyHandle) -> Duration {
    let secs = policy.current().limits.stall_timeout_secs;
    secs.and_then(|s| Duration::try_from_secs_f64(s).ok())
        .unwrap_or(DEFAULT_STALL_TIMEOUT)
}

/// The permits one call holds.
type Permits = Vec<OwnedSemaphorePermit>;

impl Shared {
    fn semaphore(&self, key: String, max: usize) -> Arc<Semaphore> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if slots.len() > 10_000 {
            // Forget keys with nothing in progress (bounded memory, whatever tokens come).
            slots.retain(|_, (n, s)| s.available_permits() < *n);
        }
        let entry = slots
            .entry(key)
            .or_insert_with(|| (max, Arc::new(Semaphore::new(max))));
        if entry.0 != max {
            *entry = (max, Arc::new(Semaphore::new(max)));
        }
        entry.1.clone()
    }

    fn acquire(
        &self,
        identity: &Identity,
        limits: &polarway_access::file::LimitsFile,
    ) -> Result<Permits, GatewayError> {
        let max = limits.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT);
        let busy = |who: &str, max: usize, setting: &str| {
            GatewayError::Busy(format!(
                "{who} already has {max} calls in progress ({setting}); wait for some to finish, and read response streams to their end"
            ))
        };
        let mut permits = Vec::with_capacity(2);
        if let Some(issuer) = &identity.issuer {
            let max = limits.max_in_flight_per_issuer.unwrap_or(4 * max);
            let issuer_slots = self.semaphore(format!("issuer {issuer:?}"), max);
            permits.push(issuer_slots.try_acquire_owned().map_err(|_| {
                busy(
                    &format!("issuer {issuer:?}"),
                    max,
                    "limits.max_in_flight_per_issuer",
                )
            })?);
        }
        let own = self.semaphore(format!("identity {:?}", identity.name), max);
        permits.push(
            own.try_acquire_owned()
                .map_err(|_| busy(&identity.name, max, "limits.max_in_flight"))?,
        );
        Ok(permits)
    }

    fn end_stalled(&self, timeout: Duration) {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        streams.retain(|_, weak| match weak.upgrade() {
            None => false,
            Some(state) => !state.end_if_stalled(timeout),
        });
    }
}

impl Step for InFlight {
    fn call(
        &self,
        req: Request<Body>,
        next: HttpService,
    ) -> impl Future<Output = Result<Response<Body>, GatewayError>> + Send + 'static + use<> {
        let shared = self.shared.clone();
        let policy = self.policy.current();
        let identity = req.extensions().get::<Arc<Identity>>().cloned();
        async move {
            // Without a policy file every caller is one anonymous identity: no per-identity bound.
            let permit = match (&identity, policy.path.is_some()) {
                (Some(id), true) => Some(shared.acquire(id, &policy.limits)?),
                _ => None,
            };
            let (parts, body) = next.oneshot(req).await?.into_parts();
            let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
            let state = Arc::new(StreamState {
                guarded: Mutex::new(Guarded {
                    body: Some(body),
                    permit,
                    waiting_since: None,
                    waker: None,
                    stalled: false,
                }),
            });
            shared
                .streams
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, Arc::downgrade(&state));
            Ok(Response::from_parts(parts, Body::new(Watched { state })))
        }
    }
}

struct Guarded {
    /// `None` once the stream ended or was cut for stalling (which also drops the permit).
    body: Option<Body>,
    permit: Option<Permits>,
    /// Since when a frame has been handed out and the server has not asked for the next one:
    /// the caller is not reading (HTTP/2 flow control keeps us from being polled).
    waiting_since: Option<Instant>,
    waker: Option<Waker>,
    stalled: bool,
}

struct StreamState {
    guarded: Mutex<Guarded>,
}

impl StreamState {
    /// End the stream if its caller has not read for `timeout`; true if it is over.
    fn end_if_stalled(&self, timeout: Duration) -> bool {
        let mut g = self.guarded.lock().unwrap_or_else(|e| e.into_inner());
        if g.body.is_none() {
            return true;
        }
        if g.waiting_since.is_some_and(|t| t.elapsed() >= timeout) {
            tracing::info!("ending a response stream its caller has not read for {timeout:?}");
            g.body = None; // cancels the call on the worker
            g.permit = None;
            g.stalled = true;
            if let Some(w) = g.waker.take() {
                w.wake();
            }
            return true;
        }
        false
    }
}

struct Watched {
    state: Arc<StreamState>,
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let mut g = self.state.guarded.lock().unwrap_or_else(|e| e.into_inner());
        g.waiting_since = None;
        if g.stalled {
            g.stalled = false;
            return Poll::Ready(Some(Err(tonic::Status::cancelled(
                "the response was not read for too long (limits.stall_timeout_secs)",
            ))));
        }
        let Some(body) = g.body.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if frame.is_data() {
                    g.waiting_since = Some(Instant::now());
                    g.waker = Some(cx.waker().clone());
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                g.body = None;
                g.permit = None;
                Poll::Ready(None)
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        let g = self.state.guarded.lock().unwrap_or_else(|e| e.into_inner());
        g.body.as_ref().is_none_or(|b| b.is_end_stream()) && !g.stalled
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let g = self.state.guarded.lock().unwrap_or_else(|e| e.into_inner());
        g.body.as_ref().map(|b| b.size_hint()).unwrap_or_default()
    }
}
