//! Console sessions: an API key exchanged at sign-in for a random session
//! token carried in a cookie.
//!
//! - The token is 32 random bytes; the server keeps only its SHA-256, with
//!   the hash of the key it stands for (never the key), the session's CSRF
//!   token and its times. A session ends after [`IDLE`] without a request,
//!   after [`LIFETIME`] in all, at sign-out, and when the service restarts.
//! - The principal is looked up by the key's hash on every request, as the
//!   API does, so a revoked key or a suspended principal ends the session
//!   at its next request.
//! - Every form carries the session's CSRF token; a post without it, or
//!   with another, is refused ([`same`] compares in constant time). The
//!   cookie is `HttpOnly`, `SameSite=Strict`, `Path=/console`, and `Secure`
//!   when the service is reached over TLS.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

/// A session ends after this long without a request.
pub const IDLE: Duration = Duration::from_secs(15 * 60);
/// And after this long in all, however busy.
pub const LIFETIME: Duration = Duration::from_secs(8 * 60 * 60);
/// Sessions open at once; past it, signing in ends the oldest.
const MAX_SESSIONS: usize = 10_000;

/// The session cookie's name.
pub const COOKIE: &str = "veil_console";
/// The sign-in form's own CSRF cookie (double submit: no session yet).
pub const SIGN_IN_COOKIE: &str = "veil_console_signin";

struct Session {
    key_hash: [u8; 32],
    csrf: String,
    started: Instant,
    seen: Instant,
}

/// What a live session stands for.
#[derive(Debug, Clone)]
pub struct Live {
    pub key_hash: [u8; 32],
    pub csrf: String,
}

pub struct Sessions {
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    random: SystemRandom,
    idle: Duration,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::with_idle(IDLE)
    }
}

impl Sessions {
    /// Sessions that end after `idle` without a request.
    pub fn with_idle(idle: Duration) -> Self {
        Sessions {
            sessions: Mutex::new(HashMap::new()),
            random: SystemRandom::new(),
            idle,
        }
    }

    /// A fresh random token, URL-safe.
    pub fn token(&self) -> String {
        let mut bytes = [0u8; 32];
        // The system's generator does not fail on the platforms we build
        // for; if it ever did, the zero token below matches no session.
        if self.random.fill(&mut bytes).is_err() {
            tracing::error!("the system random number generator failed");
        }
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Starts a session for the key with `key_hash`: its token (for the
    /// cookie) and its CSRF token (for the forms).
    pub fn start(&self, key_hash: [u8; 32]) -> (String, String) {
        let token = self.token();
        let csrf = self.token();
        let now = Instant::now();
        let mut sessions = self.lock();
        sessions.retain(|_, s| self.alive(s, now));
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.seen)
                .map(|(id, _)| *id)
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            digest(&token),
            Session {
                key_hash,
                csrf: csrf.clone(),
                started: now,
                seen: now,
            },
        );
        (token, csrf)
    }

    /// The live session with `token`, touched; `None` when there is none
    /// or it timed out (and is then gone).
    pub fn get(&self, token: &str) -> Option<Live> {
        let id = digest(token);
        let now = Instant::now();
        let mut sessions = self.lock();
        let alive = sessions.get(&id).is_some_and(|s| self.alive(s, now));
        if !alive {
            sessions.remove(&id);
            return None;
        }
        let s = sessions.get_mut(&id)?;
        s.seen = now;
        Some(Live {
            key_hash: s.key_hash,
            csrf: s.csrf.clone(),
        })
    }

    /// Ends the session with `token`, if any.
    pub fn end(&self, token: &str) {
        self.lock().remove(&digest(token));
    }

    /// Ends every session of the key with `key_hash`.
    pub fn end_all(&self, key_hash: &[u8; 32]) {
        self.lock().retain(|_, s| s.key_hash != *key_hash);
    }

    /// Sessions open now.
    pub fn len(&self) -> usize {
        let now = Instant::now();
        self.lock().values().filter(|s| self.alive(s, now)).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn alive(&self, s: &Session, now: Instant) -> bool {
        now.duration_since(s.seen) < self.idle && now.duration_since(s.started) < LIFETIME
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Whether two tokens are equal, in time that depends on their lengths
/// only. An empty token equals nothing.
pub fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.is_empty() || a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// A `Set-Cookie` value for `name`, scoped to the console; `max_age` 0
/// deletes it.
pub fn set_cookie(name: &str, value: &str, secure: bool, max_age: Option<u64>) -> String {
    let mut out = format!("{name}={value}; Path=/console; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        out.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        out.push_str("; Secure");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_token_only_and_ends_at_sign_out() {
        let sessions = Sessions::default();
        let (token, csrf) = sessions.start([7; 32]);
        let live = sessions.get(&token).unwrap();
        assert_eq!(
            (live.key_hash, live.csrf.as_str()),
            ([7; 32], csrf.as_str())
        );
        assert_ne!(token, csrf);
        assert!(sessions.get(&csrf).is_none());
        assert!(sessions.get("").is_none());
        sessions.end(&token);
        assert!(sessions.get(&token).is_none());
    }

    #[test]
    fn an_idle_session_ends() {
        let sessions = Sessions::with_idle(Duration::from_millis(30));
        let (token, _) = sessions.start([1; 32]);
        assert!(sessions.get(&token).is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert!(sessions.get(&token).is_none());
        assert!(sessions.is_empty());
    }

    #[test]
    fn tokens_are_fresh_and_long() {
        let sessions = Sessions::default();
        let tokens: std::collections::HashSet<String> =
            (0..1000).map(|_| sessions.token()).collect();
        assert_eq!(tokens.len(), 1000);
        assert!(tokens.iter().all(|t| t.len() == 43));
    }

    #[test]
    fn ending_a_keys_sessions_ends_them_all() {
        let sessions = Sessions::default();
        let (a, _) = sessions.start([1; 32]);
        let (b, _) = sessions.start([1; 32]);
        let (c, _) = sessions.start([2; 32]);
        sessions.end_all(&[1; 32]);
        assert!(sessions.get(&a).is_none() && sessions.get(&b).is_none());
        assert!(sessions.get(&c).is_some());
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
        assert!(!same("", ""));
    }

    #[test]
    fn cookies_are_read_by_exact_name() {
        let h = "a=1; veil_console=xyz; veil_console_signin=q";
        assert_eq!(cookie(h, COOKIE), Some("xyz"));
        assert_eq!(cookie(h, SIGN_IN_COOKIE), Some("q"));
        assert_eq!(cookie(h, "veil"), None);
        let set = set_cookie(COOKIE, "t", true, None);
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Secure")
        );
        assert!(!set_cookie(COOKIE, "t", false, Some(0)).contains("Secure"));
    }
}
