//! Panics the worker expects and answers as the caller's error: Arrow's IPC reader panics on some
//! malformed messages instead of returning an error. Inside `quietly` such a panic is logged as one
//! debug line rather than reported by the default hook, which with `RUST_BACKTRACE` set symbolizes
//! a backtrace (CPU and memory for each bad request a caller chooses to send). Every other panic is
//! reported as usual.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

thread_local! {
    static EXPECTED: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as inside `quietly` until dropped (also when a panic unwinds through it).
struct Expecting(bool);

impl Expecting {
    fn start() -> Self {
        Self(EXPECTED.with(|e| e.replace(true)))
    }
}

impl Drop for Expecting {
    fn drop(&mut self) {
        EXPECTED.with(|e| e.set(self.0));
    }
}

/// Install at start, once: panics inside `quietly` are logged at debug level only.
pub fn install_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if EXPECTED.with(Cell::get) {
            tracing::debug!("panic on malformed input, answered as the caller's error: {info}");
        } else {
            default(info);
        }
    }));
}

/// Run `f`; None if it panicked.
pub fn quietly<T>(f: impl FnOnce() -> T) -> Option<T> {
    let _expecting = Expecting::start();
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok()
}

/// `future`, each poll inside `quietly`: None if polling it panicked.
pub fn quietly_async<F: Future>(future: F) -> impl Future<Output = Option<F::Output>> {
    Quiet(Some(Box::pin(future)))
}

struct Quiet<F: Future>(Option<Pin<Box<F>>>);

impl<F: Future> Future for Quiet<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(inner) = self.0.as_mut() else {
            return Poll::Ready(None);
        };
        match quietly(|| inner.as_mut().poll(cx)) {
            Some(Poll::Pending) => Poll::Pending,
            Some(Poll::Ready(v)) => {
                self.0 = None;
                Poll::Ready(Some(v))
            }
            None => {
                self.0 = None;
                Poll::Ready(None)
            }
        }
    }
}
