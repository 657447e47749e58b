//! What Flight SQL keeps between calls, in memory and bounded: sessions
//! (a handshake's bearer token, bound to the key it was made from), tickets
//! (a checked statement waiting for its `DoGet`: opaque, single-use, bound
//! to the principal, expiring) and prepared statements (a checked
//! statement a client may execute more than once, until it closes it).
//!
//! Every handle is 128 random bits from the OS, in hex: it names an entry
//! and proves nothing by itself; the entry says whose it is, and each use
//! checks the caller again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::service::query::QueryInput;

/// How long a handshake's token stays valid.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// How long a ticket waits for its `DoGet`.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(300);
/// How long a prepared statement stays open without being used.
pub const PREPARED_LIFETIME: Duration = Duration::from_secs(3600);
/// Open sessions in all.
pub const MAX_SESSIONS: usize = 10_000;
/// Tickets and prepared statements one principal may hold open at once.
pub const MAX_OPEN_PER_PRINCIPAL: usize = 64;

/// A fresh handle: 128 random bits in hex.
pub fn handle() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the OS random source works");
    crate::signing::hex(&bytes)
}

struct Entry<T> {
    principal: String,
    value: T,
    expires: Instant,
}

/// Entries by handle, each owned by a principal, expiring, at most
/// `per_principal` per principal and `total` in all.
pub struct Handles<T> {
    lifetime: Duration,
    per_principal: usize,
    total: usize,
    entries: Mutex<HashMap<String, Entry<T>>>,
}

/// Why a handle was not accepted; the words say nothing of whose it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Unknown, expired, used, or another principal's: all look alike.
    Unknown,
    /// The principal holds as many as it may.
    Full,
}

impl<T: Clone> Handles<T> {
    pub fn new(lifetime: Duration, per_principal: usize, total: usize) -> Self {
        Handles {
            lifetime,
            per_principal,
            total,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry<T>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `value` for `principal` under a fresh handle.
    pub fn insert(&self, principal: &str, value: T) -> Result<String, Refused> {
        let now = Instant::now();
        let mut entries = self.lock();
        entries.retain(|_, e| e.expires > now);
        let held = entries
            .values()
            .filter(|e| e.principal == principal)
            .count();
        if held >= self.per_principal || entries.len() >= self.total {
            return Err(Refused::Full);
        }
        let id = handle();
        entries.insert(
            id.clone(),
            Entry {
                principal: principal.to_owned(),
                value,
                expires: now + self.lifetime,
            },
        );
        Ok(id)
    }

    /// Keeps `value` for `principal` under a fresh handle; when the
    /// principal holds as many as it may, its oldest goes. Refused only
    /// when all principals together hold as many as there may be.
    pub fn insert_evicting(&self, principal: &str, value: T) -> Result<String, Refused> {
        {
            let now = Instant::now();
            let mut entries = self.lock();
            entries.retain(|_, e| e.expires > now);
            let mut own: Vec<(Instant, String)> = entries
                .iter()
                .filter(|(_, e)| e.principal == principal)
                .map(|(id, e)| (e.expires, id.clone()))
                .collect();
            own.sort();
            let excess = (own.len() + 1).saturating_sub(self.per_principal);
            for (_, id) in own.into_iter().take(excess) {
                entries.remove(&id);
            }
        }
        self.insert(principal, value)
    }

    /// Removes and returns `principal`'s entry `id` (single use). Another
    /// principal's entry stays where it is.
    pub fn take(&self, principal: &str, id: &str) -> Result<T, Refused> {
        let now = Instant::now();
        let mut entries = self.lock();
        match entries.get(id) {
            Some(e) if e.principal == principal && e.expires > now => {}
            Some(e) if e.expires <= now => {
                entries.remove(id);
                return Err(Refused::Unknown);
            }
            _ => return Err(Refused::Unknown),
        }
        entries.remove(id).map(|e| e.value).ok_or(Refused::Unknown)
    }

    /// Entry `id`, whoever's it is (a session token names its principal
    /// only through the key it holds).
    pub fn find(&self, id: &str) -> Option<T> {
        let now = Instant::now();
        self.lock()
            .get(id)
            .filter(|e| e.expires > now)
            .map(|e| e.value.clone())
    }

    /// `principal`'s entry `id`, left in place, its lifetime renewed.
    pub fn get(&self, principal: &str, id: &str) -> Result<T, Refused> {
        let now = Instant::now();
        let mut entries = self.lock();
        match entries.get_mut(id) {
            Some(e) if e.principal == principal && e.expires > now => {
                e.expires = now + self.lifetime;
                Ok(e.value.clone())
            }
            _ => Err(Refused::Unknown),
        }
    }

    /// Removes `principal`'s entry `id`, if it has one.
    pub fn remove(&self, principal: &str, id: &str) {
        let mut entries = self.lock();
        if entries.get(id).is_some_and(|e| e.principal == principal) {
            entries.remove(id);
        }
    }

    #[cfg(test)]
    fn expire_all(&self) {
        let past = Instant::now() - Duration::from_secs(1);
        for e in self.lock().values_mut() {
            e.expires = past;
        }
    }
}

/// A statement checked at `GetFlightInfo` or `CreatePreparedStatement`:
/// what the caller asked, re-checked in full when it runs.
pub type Statement = QueryInput;

/// A handshake's session: the hash of the key it was made from, so that
/// revoking the key ends it at once.
pub type Session = [u8; 32];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_are_single_use_bound_to_their_principal_and_expire() {
        let tickets: Handles<u32> = Handles::new(TICKET_LIFETIME, 2, 100);
        let t = tickets.insert("carol", 7).unwrap();
        assert_eq!(t.len(), 32);
        assert_eq!(tickets.take("mallory", &t), Err(Refused::Unknown));
        assert_eq!(tickets.take("carol", &t), Ok(7));
        assert_eq!(tickets.take("carol", &t), Err(Refused::Unknown), "used");
        let a = tickets.insert("carol", 1).unwrap();
        let _b = tickets.insert("carol", 2).unwrap();
        assert_eq!(tickets.insert("carol", 3), Err(Refused::Full));
        assert!(tickets.insert("dave", 4).is_ok(), "per principal");
        tickets.expire_all();
        assert_eq!(tickets.take("carol", &a), Err(Refused::Unknown), "expired");
        assert!(tickets.insert("carol", 5).is_ok(), "expired ones are gone");
        let p = tickets.insert("carol", 6).unwrap();
        assert_eq!(tickets.get("carol", &p), Ok(6));
        assert_eq!(tickets.get("carol", &p), Ok(6), "prepared: reusable");
        tickets.remove("mallory", &p);
        assert_eq!(tickets.get("carol", &p), Ok(6), "not theirs to close");
        tickets.remove("carol", &p);
        assert_eq!(tickets.get("carol", &p), Err(Refused::Unknown));
        // Sessions: the oldest of a principal's gives way.
        let sessions: Handles<u32> = Handles::new(SESSION_LIFETIME, 2, 100);
        let first = sessions.insert_evicting("carol", 1).unwrap();
        let _second = sessions.insert_evicting("carol", 2).unwrap();
        let third = sessions.insert_evicting("carol", 3).unwrap();
        assert_eq!(sessions.find(&first), None);
        assert_eq!(sessions.find(&third), Some(3));
    }
}
