//! Where use cases write their audit entries. Every use case writes its
//! entry through an [`AuditSink`] and waits until it is durable before its
//! answer leaves: the HTTP server's sink commits in groups on its own
//! thread; the CLI's writes each entry at once.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::signing::Signer;
use crate::store::{AuditEntry, Store, StoreError};

/// A future an [`AuditSink`] returns: the entry's sequence number once it
/// is durable.
pub type Appending<'a> = Pin<Box<dyn Future<Output = Result<i64, StoreError>> + Send + 'a>>;

pub trait AuditSink: Send + Sync {
    /// Appends `entry`; resolves once it is on disk.
    fn append(&self, entry: AuditEntry) -> Appending<'_>;
    /// Stops taking entries and signs the head of the log, waiting at most
    /// `wait`.
    fn close(&self, wait: Duration);
}

/// Writes each entry in its own transaction, at once: for one command.
pub struct Direct {
    store: Mutex<Store>,
    signer: Arc<Signer>,
}

impl Direct {
    pub fn new(store: Store, signer: Arc<Signer>) -> Direct {
        Direct {
            store: Mutex::new(store),
            signer,
        }
    }
}

impl AuditSink for Direct {
    fn append(&self, entry: AuditEntry) -> Appending<'_> {
        let written = self
            .store
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .append_audit(&[entry], &self.signer)
            .map(|seqs| seqs.first().copied().unwrap_or_default());
        Box::pin(std::future::ready(written))
    }

    fn close(&self, _wait: Duration) {}
}

impl AuditSink for GroupCommit {
    fn append(&self, entry: AuditEntry) -> Appending<'_> {
        Box::pin(GroupCommit::append(self, entry))
    }

    fn close(&self, wait: Duration) {
        GroupCommit::close(self, wait);
    }
}

type Reply = oneshot::Sender<Result<i64, String>>;
type Pending = (AuditEntry, Reply);

/// A committed batch waiting for its head to be signed.
struct Signing {
    seq: i64,
    hash: [u8; 32],
    replies: Vec<(Reply, i64)>,
}

/// Appends audit entries on its own thread with group commit: entries that
/// arrive while a transaction commits go into the next one, so one fsync
/// covers many requests and each request still waits for its own durability.
///
/// The writer's own commits do not copy the write-ahead log back into the
/// database (a copy can take milliseconds and every waiting request would
/// wait for it); a second thread does that every 250 ms, passively.
pub struct GroupCommit {
    sender: Mutex<Option<mpsc::Sender<Pending>>>,
    done: Mutex<Option<mpsc::Receiver<()>>>,
    /// Dropped to stop the checkpointer.
    stop_checkpoints: Mutex<Option<mpsc::Sender<()>>>,
}

impl GroupCommit {
    pub fn start(
        mut store: Store,
        checkpoints: Store,
        mut heads: Store,
        signer: Arc<Signer>,
    ) -> GroupCommit {
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("wal-checkpoint".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(Duration::from_millis(250))
                {
                    if let Err(e) = checkpoints.checkpoint() {
                        tracing::warn!(error = %e, "the write-ahead log could not be checkpointed");
                    }
                }
                let _ = checkpoints.checkpoint();
            })
            .expect("the checkpoint thread starts");
        let (sender, receiver) = mpsc::channel::<Pending>();
        let (done_tx, done_rx) = mpsc::channel();
        // Committed batches wait here for their head to be signed. The
        // signer takes every batch waiting, signs the last one's head
        // once, and only then answers them: the store's commit of the next
        // batch and the signing of this one overlap, and each entry is
        // acknowledged only once a head at or past it is durable.
        let (committed, to_sign) = mpsc::channel::<Signing>();
        let cut = Arc::new(AtomicBool::new(false));
        let signing = {
            let (signer, cut) = (signer.clone(), cut.clone());
            std::thread::Builder::new()
                .name("audit-head".into())
                .spawn(move || {
                    while let Ok(first) = to_sign.recv() {
                        let mut batches = vec![first];
                        batches.extend(to_sign.try_iter());
                        let (seq, hash) = {
                            let last = batches.last().expect("one batch at least");
                            (last.seq, last.hash)
                        };
                        let signed = heads
                            .sign_head(crate::heads::Advance::Audit { seq, hash: &hash }, &signer);
                        if let Err(StoreError::Integrity(_)) = &signed {
                            cut.store(true, Ordering::SeqCst);
                        }
                        for batch in batches {
                            for (reply, seq) in batch.replies {
                                let _ = reply.send(match &signed {
                                    Ok(()) => Ok(seq),
                                    Err(e) => Err(e.to_string()),
                                });
                            }
                        }
                    }
                })
                .expect("the audit head thread starts")
        };
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                while let Ok(first) = receiver.recv() {
                    let (mut entries, mut replies) = (vec![first.0], vec![first.1]);
                    while entries.len() < 1024 {
                        match receiver.try_recv() {
                            Ok((entry, reply)) => {
                                entries.push(entry);
                                replies.push(reply);
                            }
                            Err(_) => break,
                        }
                    }
                    if cut.load(Ordering::SeqCst) {
                        for reply in replies {
                            let _ = reply.send(Err(
                                "the audit log was cut below its signed head: nothing more is acknowledged".into(),
                            ));
                        }
                        continue;
                    }
                    match store.append_audit_unsigned(&entries, &signer) {
                        Ok((seqs, hash)) => {
                            let seq = seqs.last().copied().unwrap_or_default();
                            let replies = replies.into_iter().zip(seqs).collect();
                            let _ = committed.send(Signing { seq, hash, replies });
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "the audit log could not be written");
                            for reply in replies {
                                let _ = reply.send(Err(e.to_string()));
                            }
                        }
                    }
                }
                drop(committed);
                let _ = signing.join();
                if let Err(e) = store.checkpoint_audit(&signer) {
                    tracing::error!(error = %e, "the audit head could not be signed at shutdown");
                }
                let _ = done_tx.send(());
            })
            .expect("the audit writer thread starts");
        GroupCommit {
            sender: Mutex::new(Some(sender)),
            done: Mutex::new(Some(done_rx)),
            stop_checkpoints: Mutex::new(Some(stop)),
        }
    }

    async fn append(&self, entry: AuditEntry) -> Result<i64, StoreError> {
        let (reply, wait) = oneshot::channel();
        let sent = match self
            .sender
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            Some(sender) => sender.send((entry, reply)).is_ok(),
            None => false,
        };
        if !sent {
            return Err(StoreError::Conflict("the service is shutting down".into()));
        }
        match wait.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(e)) => Err(StoreError::Conflict(format!(
                "the audit log could not be written: {e}"
            ))),
            Err(_) => Err(StoreError::Conflict("the audit writer stopped".into())),
        }
    }

    fn close(&self, wait: Duration) {
        self.sender.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(done) = self.done.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = done.recv_timeout(wait);
        }
        self.stop_checkpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
}
