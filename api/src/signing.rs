//! The service's Ed25519 key: it signs audit checkpoints and receipts. The
//! private key stays in `secrets/signing.key`; the public key is published in
//! `public.key` (hex) so anyone can check signatures offline.

use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

pub struct Signer {
    pair: Ed25519KeyPair,
}

impl Signer {
    pub fn from_pkcs8(bytes: &[u8]) -> Result<Signer, String> {
        Ed25519KeyPair::from_pkcs8(bytes)
            .map(|pair| Signer { pair })
            .map_err(|_| "the signing key is not a valid Ed25519 PKCS#8 key".into())
    }

    pub fn generate_pkcs8() -> Result<Vec<u8>, String> {
        let rng = ring::rand::SystemRandom::new();
        Ed25519KeyPair::generate_pkcs8(&rng)
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| "the system random source failed".into())
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }

    pub fn public_key(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    /// A short identifier of the key: the first 8 bytes of its SHA-256, hex.
    pub fn key_id(&self) -> String {
        key_id(&self.public_key())
    }
}

pub fn key_id(public_key: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(public_key)[..8])
}

pub fn verify(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(message, signature)
        .is_ok()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_the_message_and_key() {
        let signer = Signer::from_pkcs8(&Signer::generate_pkcs8().unwrap()).unwrap();
        let other = Signer::from_pkcs8(&Signer::generate_pkcs8().unwrap()).unwrap();
        let sig = signer.sign(b"hello");
        assert!(verify(&signer.public_key(), b"hello", &sig));
        assert!(!verify(&signer.public_key(), b"hellO", &sig));
        assert!(!verify(&other.public_key(), b"hello", &sig));
        assert_eq!(unhex(&hex(&sig)).unwrap(), sig);
        assert_eq!(signer.key_id().len(), 16);
        assert!(unhex("zz").is_none() && unhex("abc").is_none());
    }
}
