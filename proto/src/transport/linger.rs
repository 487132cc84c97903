//! Closing a server's connections without losing the last bytes sent on them.
//!
//! An HTTP/2 server closes a connection right after it has written the last frame of its last
//! stream (a graceful shutdown does exactly that). The client, meanwhile, keeps sending
//! WINDOW_UPDATE and PING frames as it reads. If any of them has arrived and not been read when the
//! socket is closed, or arrives after, the kernel answers with a TCP reset instead of a FIN, and a
//! reset throws away what the client has not read yet: the end of a stream that was sent in full
//! fails with "broken pipe" on the client. So a server's socket is never closed straight away:
//! when the server drops it, the write side is shut down (the client sees the end after the
//! last byte) and whatever the client still sends is read and discarded until the client closes
//! its side, for at most [`LINGER`].

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_util::task::task_tracker::{TaskTracker, TaskTrackerToken};

/// How long a closed connection is read for, at most, waiting for the client to close its side.
pub const LINGER: Duration = Duration::from_secs(2);

/// The connections of one server: [`Linger::wrap`] each accepted connection, and await
/// [`Linger::closed`] before the process exits. A connection counts from its accept until it is
/// closed, so no connection dropped at the last moment is missed.
#[derive(Clone, Default)]
pub struct Linger {
    open: TaskTracker,
}

impl Linger {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn wrap<T>(&self, io: T) -> Lingering<T>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Lingering {
            io: Some(io),
            open: self.open.token(),
        }
    }

    /// Wait until every connection has been closed, or [`LINGER`] and a little more (connections
    /// still serving when the drain gave up are cut then).
    pub async fn closed(&self) {
        self.open.close();
        let _ = tokio::time::timeout(LINGER + Duration::from_millis(500), self.open.wait()).await;
    }
}

/// A connection that is closed by [`Linger`] when dropped.
pub struct Lingering<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    io: Option<T>,
    open: TaskTrackerToken,
}

impl<T> Lingering<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    pub fn get_ref(&self) -> &T {
        self.io
            .as_ref()
            .expect("a connection is taken only when dropped")
    }

    fn io(&mut self) -> Pin<&mut T> {
        Pin::new(
            self.io
                .as_mut()
                .expect("a connection is taken only when dropped"),
        )
    }
}

impl<T> Drop for Lingering<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn drop(&mut self) {
        let (Some(mut io), Ok(runtime)) = (self.io.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let open = self.open.clone();
        runtime.spawn(async move {
            let _ = tokio::time::timeout(LINGER, async {
                let _ = io.shutdown().await;
                let mut discard = [0u8; 4096];
                while let Ok(1..) = io.read(&mut discard).await {}
            })
            .await;
            drop(open);
        });
    }
}

impl<T> AsyncRead for Lingering<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().io().poll_read(cx, buf)
    }
}

impl<T> AsyncWrite for Lingering<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().io().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().io().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.get_ref().is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().io().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().io().poll_shutdown(cx)
    }
}

impl<T> tonic::transport::server::Connected for Lingering<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static + tonic::transport::server::Connected,
{
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.get_ref().connect_info()
    }
}
