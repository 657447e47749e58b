//! The signed heads: where the audit log and the privacy ledger end, kept
//! in `DIR/audit.head`, outside the store, so that cutting the store's end
//! shows.
//!
//! Both are hash chains inside the store, and a chain alone cannot tell a
//! log that ends at entry 90 from a log of 100 whose last ten entries were
//! deleted. So every writer, after its transaction commits and before it
//! acknowledges anything, signs the new head (the last entry's sequence
//! number and hash, the last ledger row's id and hash, and the deployment
//! id) and makes it durable here. The store then has to reach the head: a
//! start, or `veil audit verify`, over a log or ledger that ends before it
//! is refused, so sequence numbers are never handed out twice.
//!
//! The file has two fixed-size slots written in turn, each a JSON record
//! signed whole with a counter; both must verify and be one write apart,
//! and the newer is the head. A slot that does not is refused, never
//! skipped: falling back to the older slot would let the newest commit be
//! cut (a write torn by a crash, one 512-byte write, is refused the same
//! way). Readers take the file's shared lock. Writers take an exclusive lock on the file, so heads from several
//! processes (the server and a CLI command) only move forward.
//!
//! What this does not stop: someone holding the signing key, or someone who
//! puts back an older copy of both the store and this file. Receipts carry
//! their entry's sequence number and signed hash, and backups hold both
//! files, for that.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::signing::{Signer, hex, unhex, verify};

/// The file's name in the data directory.
pub const FILE: &str = "audit.head";

const SLOT: usize = 512;

/// What this process last wrote to a heads file: its bytes, the slot of
/// the newest head in them, and that head.
type Written = (Vec<u8>, usize, Heads);

/// Per heads file, what this process last wrote to it.
static KNOWN: std::sync::LazyLock<Mutex<HashMap<PathBuf, Written>>> =
    std::sync::LazyLock::new(Default::default);

/// Where the two chains end, as last signed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Heads {
    pub deployment: String,
    pub counter: u64,
    /// The last audit entry's sequence number (0: none) and hash.
    pub audit_seq: i64,
    pub audit_hash: Vec<u8>,
    /// The last ledger row's id (0: none) and hash.
    pub ledger_id: i64,
    pub ledger_hash: Vec<u8>,
}

/// One chain's new end.
#[derive(Debug, Clone, Copy)]
pub enum Advance<'a> {
    Audit { seq: i64, hash: &'a [u8] },
    Ledger { id: i64, hash: &'a [u8] },
}

#[derive(Serialize, Deserialize)]
struct Record {
    deployment: String,
    counter: u64,
    audit_seq: i64,
    audit_hash: String,
    ledger_id: i64,
    ledger_hash: String,
    signature: String,
}

fn message(h: &Heads) -> Vec<u8> {
    let mut m = b"veil heads v1".to_vec();
    for part in [h.deployment.as_bytes(), &h.audit_hash, &h.ledger_hash] {
        m.extend_from_slice(&(part.len() as u32).to_be_bytes());
        m.extend_from_slice(part);
    }
    m.extend_from_slice(&h.counter.to_be_bytes());
    m.extend_from_slice(&h.audit_seq.to_be_bytes());
    m.extend_from_slice(&h.ledger_id.to_be_bytes());
    m
}

/// Why the heads cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum HeadsError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(
        "{FILE} does not hold two heads signed by this deployment's key, one write apart: it was damaged or replaced (a crash while it was written would also do this)"
    )]
    Unsigned,
    #[error("the chain does not hold the head signed in {FILE}: it was cut below it")]
    Cut,
    #[error("{0}")]
    Check(String),
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// The head and the slot it is in. Both slots must verify and be one
/// write apart (or both the first heads): a slot that does not (damage, or
/// a newer head replaced by an older one) would let the newest commit go
/// unnoticed, so it is refused rather than skipped.
fn best(bytes: &[u8], public_key: &[u8]) -> Option<(usize, Heads)> {
    if bytes.len() != 2 * SLOT {
        return None;
    }
    let slots: Vec<Heads> = bytes
        .chunks(SLOT)
        .map(|slot| {
            let text = std::str::from_utf8(slot)
                .ok()?
                .trim_end_matches([' ', '\n', '\0']);
            let r: Record = serde_json::from_str(text).ok()?;
            let heads = Heads {
                deployment: r.deployment,
                counter: r.counter,
                audit_seq: r.audit_seq,
                audit_hash: unhex(&r.audit_hash)?,
                ledger_id: r.ledger_id,
                ledger_hash: unhex(&r.ledger_hash)?,
            };
            let signature = unhex(&r.signature)?;
            verify(public_key, &message(&heads), &signature).then_some(heads)
        })
        .collect::<Option<_>>()?;
    let (a, b) = (&slots[0], &slots[1]);
    let apart = a.counter.abs_diff(b.counter) == 1 || (a.counter == 1 && b.counter == 1);
    if !apart || a.deployment != b.deployment {
        return None;
    }
    let newer = usize::from(b.counter > a.counter);
    let (n, o) = (&slots[newer], &slots[1 - newer]);
    if n.audit_seq < o.audit_seq || n.ledger_id < o.ledger_id {
        return None;
    }
    Some((newer, n.clone()))
}

/// The heads as last signed, or `None` when the file does not exist.
pub fn read(dir: &Path, public_key: &[u8]) -> Result<Option<Heads>, HeadsError> {
    Ok(read_with_bytes(dir, public_key)?.map(|(h, _)| h))
}

/// [`read`], with the file's bytes the heads were read from. The read
/// takes the file's shared lock, so it never sees a slot half written.
pub fn read_with_bytes(
    dir: &Path,
    public_key: &[u8],
) -> Result<Option<(Heads, Vec<u8>)>, HeadsError> {
    let mut bytes = Vec::new();
    match File::open(path(dir)) {
        Ok(mut f) => {
            f.lock_shared()?;
            f.read_to_end(&mut bytes)?;
            f.unlock()?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    match best(&bytes, public_key) {
        Some((_, h)) => Ok(Some((h, bytes))),
        None => Err(HeadsError::Unsigned),
    }
}

fn slot_bytes(heads: &Heads, signer: &Signer) -> Vec<u8> {
    let record = Record {
        deployment: heads.deployment.clone(),
        counter: heads.counter,
        audit_seq: heads.audit_seq,
        audit_hash: hex(&heads.audit_hash),
        ledger_id: heads.ledger_id,
        ledger_hash: hex(&heads.ledger_hash),
        signature: hex(&signer.sign(&message(heads))),
    };
    let mut bytes = serde_json::to_vec(&record).expect("a record serialises");
    debug_assert!(bytes.len() < SLOT);
    bytes.resize(SLOT - 1, b' ');
    bytes.push(b'\n');
    bytes
}

/// Writes the first heads of a deployment (at creation, or when a store
/// from before heads existed is first opened), replacing any file there.
pub fn create(dir: &Path, signer: &Signer, heads: &Heads) -> std::io::Result<()> {
    let heads = Heads {
        counter: 1,
        ..heads.clone()
    };
    let mut bytes = slot_bytes(&heads, signer);
    bytes.extend(slot_bytes(&heads, signer));
    crate::datadir::write_private(&path(dir), &bytes)?;
    crate::datadir::sync_dir(dir)
}

/// Moves one chain's head forward and makes it durable before returning.
/// Under the file's lock, before anything is written, `holds` is asked
/// whether the caller's chain still holds the head signed now: a chain cut
/// below it (entries removed, numbers given out again) is
/// [`HeadsError::Cut`], and nothing is signed over it. A head that is not
/// beyond the signed one (another process went first) changes nothing.
pub fn advance(
    dir: &Path,
    signer: &Signer,
    to: Advance<'_>,
    holds: &dyn Fn(&Heads) -> Result<bool, String>,
) -> Result<Heads, HeadsError> {
    let file_path = path(dir);
    let mut file = OpenOptions::new().read(true).write(true).open(&file_path)?;
    file.lock()?;
    let mut bytes = Vec::with_capacity(2 * SLOT);
    file.read_to_end(&mut bytes)?;
    // Bytes this process wrote itself were signed by it: their signatures
    // need no second check (two verifications are most of an advance).
    let known = KNOWN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&file_path)
        .filter(|(written, _, _)| *written == bytes)
        .map(|(_, slot, heads)| (*slot, heads.clone()));
    let (slot, mut heads) = match known {
        Some(k) => k,
        None => best(&bytes, &signer.public_key()).ok_or(HeadsError::Unsigned)?,
    };
    if !holds(&heads).map_err(HeadsError::Check)? {
        file.unlock()?;
        return Err(HeadsError::Cut);
    }
    let moved = match to {
        Advance::Audit { seq, hash } if seq > heads.audit_seq => {
            heads.audit_seq = seq;
            heads.audit_hash = hash.to_vec();
            true
        }
        Advance::Ledger { id, hash } if id > heads.ledger_id => {
            heads.ledger_id = id;
            heads.ledger_hash = hash.to_vec();
            true
        }
        _ => false,
    };
    if moved {
        heads.counter += 1;
        // The other slot: the current head stays whole until this one is.
        let written = slot_bytes(&heads, signer);
        file.seek(SeekFrom::Start(((1 - slot) * SLOT) as u64))?;
        file.write_all(&written)?;
        file.sync_data()?;
        bytes[(1 - slot) * SLOT..(2 - slot) * SLOT].copy_from_slice(&written);
        KNOWN
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(file_path, (bytes, 1 - slot, heads.clone()));
    }
    file.unlock()?;
    Ok(heads)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer::from_pkcs8(&Signer::generate_pkcs8().unwrap()).unwrap()
    }

    fn first() -> Heads {
        Heads {
            deployment: "d1".into(),
            audit_hash: vec![0; 32],
            ledger_hash: vec![0; 32],
            ..Heads::default()
        }
    }

    #[test]
    fn heads_only_move_forward_over_a_chain_that_holds_them() {
        let tmp = tempfile::tempdir().unwrap();
        let (s, dir) = (signer(), tmp.path());
        assert!(read(dir, &s.public_key()).unwrap().is_none());
        create(dir, &s, &first()).unwrap();
        let yes = |_: &Heads| Ok(true);
        for seq in 1..=5 {
            let hash = [seq as u8; 32];
            advance(dir, &s, Advance::Audit { seq, hash: &hash }, &yes).unwrap();
        }
        let three = Advance::Audit {
            seq: 3,
            hash: &[9; 32],
        };
        advance(dir, &s, three, &yes).unwrap();
        let seven = Advance::Ledger {
            id: 7,
            hash: &[7; 32],
        };
        advance(dir, &s, seven, &yes).unwrap();
        // A chain that no longer holds the signed head signs nothing.
        let cut = Advance::Audit {
            seq: 9,
            hash: &[1; 32],
        };
        let no = |h: &Heads| Ok(h.audit_seq < 5);
        assert!(matches!(advance(dir, &s, cut, &no), Err(HeadsError::Cut)));
        let h = read(dir, &s.public_key()).unwrap().unwrap();
        assert_eq!((h.audit_seq, h.audit_hash.clone()), (5, vec![5; 32]));
        assert_eq!((h.ledger_id, h.deployment.as_str()), (7, "d1"));

        // A damaged slot, or the newest replaced by the one before it, is
        // no head: falling back would let the newest commit be cut.
        let whole = std::fs::read(path(dir)).unwrap();
        let newest = best(&whole, &s.public_key()).unwrap().0;
        let mut bytes = whole.clone();
        bytes[newest * SLOT + 20] ^= 1;
        std::fs::write(path(dir), &bytes).unwrap();
        assert!(matches!(
            read(dir, &s.public_key()),
            Err(HeadsError::Unsigned)
        ));
        let mut bytes = whole.clone();
        bytes.copy_within((1 - newest) * SLOT..(2 - newest) * SLOT, newest * SLOT);
        std::fs::write(path(dir), &bytes).unwrap();
        assert!(matches!(
            read(dir, &s.public_key()),
            Err(HeadsError::Unsigned)
        ));
        std::fs::write(path(dir), &whole[..SLOT]).unwrap();
        assert!(matches!(
            read(dir, &s.public_key()),
            Err(HeadsError::Unsigned)
        ));
        std::fs::write(path(dir), &whole).unwrap();
        assert_eq!(read(dir, &s.public_key()).unwrap().unwrap().audit_seq, 5);

        // Another key's heads, or garbage, are no heads at all.
        assert!(matches!(
            read(dir, &signer().public_key()),
            Err(HeadsError::Unsigned)
        ));
        std::fs::write(path(dir), b"{}").unwrap();
        assert!(matches!(
            read(dir, &s.public_key()),
            Err(HeadsError::Unsigned)
        ));
    }
}
