//! Signed receipts: every answer carries one, and anyone with the service's
//! public key can check offline that the answer is the one the service gave,
//! under which policy, at what privacy cost.
//!
//! Format: `veil1.<payload>.<signature>`, both base64url without padding; the
//! payload is JSON ([`Claims`]); the signature is Ed25519 over
//! `"veil receipt v1." || payload` as it appears in the receipt.
//!
//! For a JSON answer the result digest is the SHA-256 of the response body up
//! to, not including, its final `,"receipt":` member; for CSV and Arrow
//! answers, of the whole body.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::signing::{Signer, hex, key_id, verify};

const PREFIX: &str = "veil1.";
const CONTEXT: &[u8] = b"veil receipt v1.";
/// What separates a JSON answer's body from its receipt.
pub const JSON_RECEIPT_MARKER: &[u8] = b",\"receipt\":\"";

/// What a receipt attests.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    pub request_id: String,
    pub request_sha256: String,
    pub result_sha256: String,
    pub policy_version: String,
    /// mode, epsilon_spent, delta_spent and k, as in the answer.
    pub privacy: Value,
    pub time: String,
    pub audit_seq: Option<i64>,
    pub key_id: String,
}

impl Claims {
    fn to_json(&self) -> Value {
        json!({
            "v": 1,
            "request_id": self.request_id,
            "request_sha256": self.request_sha256,
            "result_sha256": self.result_sha256,
            "policy_version": self.policy_version,
            "privacy": self.privacy,
            "time": self.time,
            "audit_seq": self.audit_seq,
            "key_id": self.key_id,
        })
    }

    fn from_json(v: &Value) -> Option<Claims> {
        let text = |k: &str| v.get(k)?.as_str().map(str::to_owned);
        (v.get("v")?.as_i64()? == 1).then_some(())?;
        Some(Claims {
            request_id: text("request_id")?,
            request_sha256: text("request_sha256")?,
            result_sha256: text("result_sha256")?,
            policy_version: text("policy_version")?,
            privacy: v.get("privacy")?.clone(),
            time: text("time")?,
            audit_seq: v.get("audit_seq").and_then(Value::as_i64),
            key_id: text("key_id")?,
        })
    }
}

/// The digest of a request: what was asked, by whom, for what.
pub fn request_digest(principal: &str, endpoint: &str, body: &Value) -> String {
    let canonical = json!({"principal": principal, "endpoint": endpoint, "body": body});
    hex(&Sha256::digest(canonical.to_string().as_bytes()))
}

pub fn issue(signer: &Signer, claims: &Claims) -> String {
    let payload = B64.encode(claims.to_json().to_string());
    let mut message = CONTEXT.to_vec();
    message.extend_from_slice(payload.as_bytes());
    format!("{PREFIX}{payload}.{}", B64.encode(signer.sign(&message)))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("this is not a veil receipt")]
    Malformed,
    #[error("the signature does not verify with this public key")]
    BadSignature,
    #[error("the receipt was signed by key {receipt}, not by this key ({given})")]
    OtherKey { receipt: String, given: String },
    #[error("the answer does not match the receipt: its digest differs")]
    DigestMismatch,
}

/// Checks a receipt's signature and returns what it attests.
pub fn check(receipt: &str, public_key: &[u8]) -> Result<Claims, ReceiptError> {
    let rest = receipt
        .trim()
        .strip_prefix(PREFIX)
        .ok_or(ReceiptError::Malformed)?;
    let (payload, signature) = rest.split_once('.').ok_or(ReceiptError::Malformed)?;
    let signature = B64.decode(signature).map_err(|_| ReceiptError::Malformed)?;
    let json = B64.decode(payload).map_err(|_| ReceiptError::Malformed)?;
    let claims: Value = serde_json::from_slice(&json).map_err(|_| ReceiptError::Malformed)?;
    let claims = Claims::from_json(&claims).ok_or(ReceiptError::Malformed)?;
    let given = key_id(public_key);
    if claims.key_id != given {
        return Err(ReceiptError::OtherKey {
            receipt: claims.key_id,
            given,
        });
    }
    let mut message = CONTEXT.to_vec();
    message.extend_from_slice(payload.as_bytes());
    if !verify(public_key, &message, &signature) {
        return Err(ReceiptError::BadSignature);
    }
    Ok(claims)
}

/// Splits a JSON answer body into the digested part and its receipt.
pub fn split_json_answer(body: &[u8]) -> Option<(&[u8], String)> {
    let at = body
        .windows(JSON_RECEIPT_MARKER.len())
        .rposition(|w| w == JSON_RECEIPT_MARKER)?;
    let tail = &body[at + JSON_RECEIPT_MARKER.len()..];
    let end = tail.iter().position(|&b| b == b'"')?;
    Some((&body[..at], String::from_utf8(tail[..end].to_vec()).ok()?))
}

/// Checks a receipt against the answer it came with.
pub fn check_answer(
    receipt: &str,
    public_key: &[u8],
    digested: &[u8],
) -> Result<Claims, ReceiptError> {
    let claims = check(receipt, public_key)?;
    if hex(&Sha256::digest(digested)) != claims.result_sha256 {
        return Err(ReceiptError::DigestMismatch);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(signer: &Signer, body: &[u8]) -> Claims {
        Claims {
            request_id: "r1".into(),
            request_sha256: request_digest("alice", "POST /v1/query", &json!({"sql": "SELECT 1"})),
            result_sha256: hex(&Sha256::digest(body)),
            policy_version: "v1-abc".into(),
            privacy: json!({"mode": "plain", "epsilon_spent": 0.0}),
            time: "2026-11-27T00:00:00Z".into(),
            audit_seq: Some(7),
            key_id: signer.key_id(),
        }
    }

    #[test]
    fn receipts_verify_offline_and_detect_changes() {
        let signer = Signer::from_pkcs8(&Signer::generate_pkcs8().unwrap()).unwrap();
        let body = br#"{"columns":[],"rows":[[1]]"#;
        let receipt = issue(&signer, &claims(&signer, body));
        let full = [
            body.as_slice(),
            b",\"receipt\":\"",
            receipt.as_bytes(),
            b"\"}",
        ]
        .concat();
        let (digested, found) = split_json_answer(&full).unwrap();
        assert_eq!(found, receipt);
        let got = check_answer(&found, &signer.public_key(), digested).unwrap();
        assert_eq!(got, claims(&signer, body));

        let edited = [
            b"{\"columns\":[],\"rows\":[[2]]".as_slice(),
            b",\"receipt\":\"",
            receipt.as_bytes(),
            b"\"}",
        ]
        .concat();
        let (digested, found) = split_json_answer(&edited).unwrap();
        assert_eq!(
            check_answer(&found, &signer.public_key(), digested),
            Err(ReceiptError::DigestMismatch)
        );

        let other = Signer::from_pkcs8(&Signer::generate_pkcs8().unwrap()).unwrap();
        assert!(matches!(
            check(&receipt, &other.public_key()),
            Err(ReceiptError::OtherKey { .. })
        ));
        // A forged payload with the right key id fails the signature.
        let mut forged = claims(&signer, b"something else");
        forged.key_id = signer.key_id();
        let forged_payload = B64.encode(forged.to_json().to_string());
        let signature = receipt.rsplit('.').next().unwrap();
        assert_eq!(
            check(
                &format!("veil1.{forged_payload}.{signature}"),
                &signer.public_key()
            ),
            Err(ReceiptError::BadSignature)
        );
        assert_eq!(
            check("hello", &signer.public_key()),
            Err(ReceiptError::Malformed)
        );
    }
}
