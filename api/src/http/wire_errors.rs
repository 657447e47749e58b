//! The errors hyper answers by itself, before a request reaches the router
//! (a request line or target that is not HTTP, headers past the size
//! limit, an unsupported version), put in the contract's JSON.
//!
//! hyper writes those as a bare status line with `content-length: 0` and
//! no `content-type`, and closes the connection. Every response the router
//! makes has a `content-type`, so a 4xx or 5xx head without one, and with
//! an empty body, is one of hyper's: [`ContractErrors`] rewrites exactly
//! that as it is written. The message is fixed per status and never says
//! what the client sent.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection whose hyper-made error heads leave in the contract's JSON.
pub struct ContractErrors<S> {
    inner: S,
    /// A rewritten response still being written, and how much of it went.
    pending: Option<(Vec<u8>, usize)>,
    /// The length of the buffer the rewritten response stands for, until
    /// it is all written: hyper retries that buffer after `Pending`, and the
    /// retry must finish the rewrite, not start another.
    owed: Option<usize>,
}

impl<S> ContractErrors<S> {
    pub fn new(inner: S) -> Self {
        ContractErrors {
            inner,
            pending: None,
            owed: None,
        }
    }
}

/// The contract's version of a response head hyper made, or `None` when
/// `head` is not one.
pub fn rewrite(head: &[u8]) -> Option<Vec<u8>> {
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    if end != head.len() {
        return None;
    }
    let text = std::str::from_utf8(head).ok()?;
    let status: u16 = text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    let lower = text.to_ascii_lowercase();
    if !(400..600).contains(&status)
        || lower.contains("\r\ncontent-type:")
        || !lower.contains("\r\ncontent-length: 0\r\n")
    {
        return None;
    }
    let (code, message) = match status {
        431 => (
            "bad_request",
            "the request's headers are larger than this service reads (256 KiB in all)",
        ),
        414 => (
            "bad_request",
            "the request's target is longer than this service reads",
        ),
        505 => ("bad_request", "this service speaks HTTP/1.1"),
        s if s < 500 => (
            "bad_request",
            "the request is not valid HTTP/1.1: its request line, target or headers could not be read",
        ),
        _ => ("internal", "the request could not be served"),
    };
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    let reason = text.lines().next()?.get(13..).unwrap_or("").trim();
    Some(
        format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl<S: AsyncWrite + Unpin> ContractErrors<S> {
    fn drive(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while let Some((bytes, written)) = &mut self.pending {
            if *written == bytes.len() {
                self.pending = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ContractErrors<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ContractErrors<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.owed.is_none()
            && let Some(contract) = rewrite(buf)
        {
            this.pending = Some((contract, 0));
            this.owed = Some(buf.len());
        }
        ready!(this.drive(cx))?;
        if let Some(n) = this.owed.take() {
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        // Not vectored (see below): one buffer at a time.
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &**b);
        self.as_mut().poll_write(cx, first)
    }

    /// hyper then gathers each response head into one buffer, which is what
    /// [`rewrite`] reads.
    fn is_write_vectored(&self) -> bool {
        false
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.drive(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.drive(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes a few bytes at a time and is often not ready.
    struct Trickle {
        out: Vec<u8>,
        turn: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.turn += 1;
            if self.turn.is_multiple_of(2) {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let n = buf.len().min(7);
            self.out.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn a_rewrite_is_written_once_however_the_writes_are_cut() {
        use tokio::io::AsyncWriteExt;
        let bare = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        let mut w = ContractErrors::new(Trickle {
            out: Vec::new(),
            turn: 0,
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            w.write_all(bare).await.unwrap();
            w.write_all(b"after").await.unwrap();
            w.flush().await.unwrap();
        });
        let out = String::from_utf8(w.inner.out).unwrap();
        assert_eq!(out.matches("HTTP/1.1 400").count(), 1, "{out}");
        assert!(out.ends_with("}after"), "{out}");
    }

    #[test]
    fn only_hypers_own_bare_error_heads_are_rewritten() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 13:29:03 GMT\r\n\r\n";
        let out = String::from_utf8(rewrite(bare).unwrap()).unwrap();
        assert!(
            out.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{out}"
        );
        let body: serde_json::Value =
            serde_json::from_str(out.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["error"]["code"], "bad_request");
        let bad = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        assert!(rewrite(bad).is_some());
        // The router's answers, successes, and anything with a body stay.
        for kept in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
            b"{\"rows\":[]}",
        ] {
            assert!(rewrite(kept).is_none(), "{}", String::from_utf8_lossy(kept));
        }
    }
}
