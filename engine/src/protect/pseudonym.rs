//! Keyed pseudonyms: HMAC-SHA256 tokens. The key is derived from the
//! deployment's master secret, the principal and the purpose, so tokens are
//! stable across the queries of one grant (and join across its datasets) and
//! unrelated across grants.

use ring::hmac;

pub struct PseudonymKey {
    key: hmac::Key,
    /// Identifies the key in comparisons; derived from it, never the key.
    fingerprint: [u8; 8],
}

impl PseudonymKey {
    pub fn derive(master: &[u8; 32], principal: &str, purpose: &str) -> Self {
        let root = hmac::Key::new(hmac::HMAC_SHA256, master);
        let mut context = b"veil pseudonym v1\0".to_vec();
        context.extend_from_slice(principal.as_bytes());
        context.push(0);
        context.extend_from_slice(purpose.as_bytes());
        let derived = hmac::sign(&root, &context);
        let key = hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref());
        let check = hmac::sign(&key, b"veil fingerprint");
        let mut fingerprint = [0u8; 8];
        fingerprint.copy_from_slice(&check.as_ref()[..8]);
        PseudonymKey { key, fingerprint }
    }

    /// `ps_` and 128 bits of the HMAC, in hex.
    pub fn token(&self, value: &str) -> String {
        let tag = hmac::sign(&self.key, value.as_bytes());
        let mut out = String::with_capacity(35);
        out.push_str("ps_");
        for b in &tag.as_ref()[..16] {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }
}

impl std::fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PseudonymKey(..)")
    }
}

impl PartialEq for PseudonymKey {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
    }
}
