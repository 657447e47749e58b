//! Accepting connections, so that no client can hold the service: every
//! connection is HTTP/1.1 with a deadline for each request's head (which
//! also closes a kept-alive connection left idle), at most
//! [`ServerConfig::max_connections`] are open at once and at most
//! [`ServerConfig::max_connections_per_peer`] from one address, and a
//! connection past either cap is answered `503` in the contract's JSON and
//! closed before it can use up file descriptors. The errors hyper answers
//! itself (a request it cannot read) leave in the contract's JSON too
//! ([`super::wire_errors`]). Accept errors (such as
//! running out of descriptors anyway) pause accepting briefly instead of
//! spinning.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::ServerConfig;

/// Connections open now, in all and by peer address.
#[derive(Default)]
struct Open {
    total: usize,
    by_peer: HashMap<IpAddr, usize>,
}

/// One admitted connection's place, given back when it closes.
struct Slot {
    open: Arc<Mutex<Open>>,
    peer: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total -= 1;
        if let Some(n) = open.by_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                open.by_peer.remove(&self.peer);
            }
        }
    }
}

/// The caps in force: the configured ones, and never more connections
/// than the process's file descriptors leave room for (the store, the
/// data files and the indexes need theirs).
pub fn connection_cap(config: &ServerConfig) -> usize {
    let room = descriptor_limit().map_or(usize::MAX, |n| n.saturating_sub(256).max(16));
    config.max_connections.min(room)
}

#[cfg(unix)]
fn descriptor_limit() -> Option<usize> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we own and reads nothing else.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    (ok && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur as usize)
}

#[cfg(not(unix))]
fn descriptor_limit() -> Option<usize> {
    None
}

/// The answer to a connection over a cap: the contract's JSON, then close.
fn overloaded() -> Vec<u8> {
    let body = r#"{"error":{"code":"unavailable","message":"the service has as many connections as it takes; try again shortly","retry_after_seconds":1}}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets the
/// requests in flight finish (up to `grace`).
pub async fn run(
    listener: TcpListener,
    router: Router,
    config: &ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let cap = connection_cap(config);
    let per_peer = config.max_connections_per_peer.min(cap);
    let open = Arc::new(Mutex::new(Open::default()));
    let (stop, stopping) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors, or a connection reset before it was
                // taken: wait a little instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let admitted = {
            let mut o = open.lock().unwrap_or_else(|e| e.into_inner());
            let from_peer = o.by_peer.get(&peer.ip()).copied().unwrap_or(0);
            if o.total >= cap || from_peer >= per_peer {
                false
            } else {
                o.total += 1;
                *o.by_peer.entry(peer.ip()).or_insert(0) += 1;
                true
            }
        };
        if !admitted {
            tokio::spawn(refuse(stream));
            continue;
        }
        let slot = Slot {
            open: open.clone(),
            peer: peer.ip(),
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            stream,
            router.clone(),
            config.idle_timeout,
            stopping.clone(),
            slot,
        ));
    }
    drop(listener);
    let _ = stop.send(true);
    let deadline = tokio::time::Instant::now() + grace;
    while open.lock().unwrap_or_else(|e| e.into_inner()).total > 0
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Answers 503 and closes, within a second whatever the peer does.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(&overloaded()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

async fn connection(
    stream: TcpStream,
    router: Router,
    idle: Duration,
    mut stopping: watch::Receiver<bool>,
    slot: Slot,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // Runs from the moment the connection waits for a request's head:
        // a slow head and an idle kept-alive connection both end here.
        .header_read_timeout(idle)
        .max_buf_size(256 << 10);
    let conn = builder.serve_connection(
        TokioIo::new(super::wire_errors::ContractErrors::new(stream)),
        TowerToHyperService::new(router),
    );
    let mut conn = std::pin::pin!(conn);
    let stop = async move {
        // The guard `wait_for` returns is not kept across an await.
        let _ = stopping.wait_for(|stop| *stop).await.map(|_| ());
    };
    tokio::select! {
        _ = conn.as_mut() => {}
        () = stop => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
    drop(slot);
}
