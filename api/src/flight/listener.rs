//! Accepting Flight SQL connections under the same caps as HTTP's
//! (`http/listener.rs`): at most `max_connections` open at once in all and
//! `max_connections_per_peer` from one address; a connection past either is
//! closed at once. An accept that fails (out of descriptors) waits a moment
//! instead of spinning.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Open connections, in all and by peer address.
#[derive(Default)]
struct Open {
    total: usize,
    by_peer: HashMap<IpAddr, usize>,
}

/// A connection counted in [`Open`] until it is dropped.
pub struct Admitted {
    stream: TcpStream,
    peer: IpAddr,
    open: Arc<Mutex<Open>>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                open.by_peer.remove(&self.peer);
            }
        }
    }
}

impl Connected for Admitted {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Admitted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Admitted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The connections `listener` accepts within the caps, as a stream for
/// tonic's `serve_with_incoming_shutdown`.
pub fn admitted(
    listener: TcpListener,
    max_connections: usize,
    max_per_peer: usize,
) -> impl futures::Stream<Item = std::io::Result<Admitted>> {
    let open = Arc::new(Mutex::new(Open::default()));
    futures::stream::unfold((listener, open), move |(listener, open)| async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "a Flight SQL connection could not be accepted");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let peer = peer.ip();
            {
                let mut o = open.lock().unwrap_or_else(|e| e.into_inner());
                let from_peer = o.by_peer.get(&peer).copied().unwrap_or(0);
                if o.total >= max_connections || from_peer >= max_per_peer {
                    continue; // dropped: closed at once
                }
                o.total += 1;
                *o.by_peer.entry(peer).or_insert(0) += 1;
            }
            let _ = stream.set_nodelay(true);
            let admitted = Admitted {
                stream,
                peer,
                open: open.clone(),
            };
            return Some((Ok(admitted), (listener, open)));
        }
    })
}
