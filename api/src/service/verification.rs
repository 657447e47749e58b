//! Verification products (Art. 29): `match`/`mismatch` (or true/false) per
//! claim about one subject or a batch, for every front end.
//!
//! Order of events: the body is read and the request checked (product,
//! role, purpose, levels, every identifier and claim) before any lookup;
//! the product's quotas admit it; the answer is computed; the audit entry
//! (principal, purpose, claims, a keyed digest per subject) is on disk
//! before the answer leaves. Refusals are audited too.

use chrono::Utc;
use serde_json::Value;
use veil_policies::Principal;

use super::{Service, ServiceError};
use crate::verification::{self as products, AnswerBody, Outcome, VerifyBody};

/// A verification's answer as JSON text, serialised once: the hot path
/// sends it as it is.
pub struct Verified(pub String);

impl Service {
    /// Answers one verification request, `body` as the caller sent it (or
    /// why it could not be read).
    pub async fn verify(
        &self,
        caller: &Principal,
        endpoint: &str,
        body: Result<Value, ServiceError>,
    ) -> Result<Verified, ServiceError> {
        let body = match body.and_then(|v| VerifyBody::parse(&v)) {
            Ok(b) => b,
            Err(e) => {
                let entry = products::audit_entry(caller, endpoint, None, None, e.outcome());
                return Err(self.refuse(entry, e).await);
            }
        };
        let engine = self.engine();
        let now = Utc::now();
        let checked = products::check(&engine, caller, &body, &self.digest, now).and_then(|v| {
            self.quotas
                .admit(caller, v.checked.product(), &v.digests, now)
                .map(|()| v)
        });
        let verification = match checked {
            Ok(v) => v,
            Err(e) => {
                let entry = products::audit_entry(caller, endpoint, Some(&body), None, e.outcome());
                return Err(self.refuse(entry, e).await);
            }
        };
        let answers = verification.checked.answer();
        let matched: Vec<bool> = answers
            .iter()
            .map(|claims| claims.iter().all(|(_, held)| *held))
            .collect();
        let product = verification.checked.product();
        let withheld = self
            .quotas
            .release(caller, product, &verification.digests, &matched, now);
        if body.single && !withheld.is_empty() {
            let e =
                ServiceError::rate_limited(products::WITHHELD, products::seconds_to_tomorrow(now));
            let entry = products::audit_entry(caller, endpoint, Some(&body), None, e.outcome());
            return Err(self.refuse(entry, e).await);
        }
        let mut withheld_items = withheld.iter().copied().peekable();
        let mismatched = matched
            .iter()
            .enumerate()
            .filter(|&(n, matched)| withheld_items.next_if_eq(&n).is_none() && !matched)
            .map(|(n, _)| n)
            .collect();
        let outcome = Outcome {
            mismatched,
            withheld,
        };
        let entry = products::audit_entry(
            caller,
            endpoint,
            Some(&body),
            Some((&verification, &outcome)),
            "ok".into(),
        );
        let seq = self.audit(entry).await?;
        let answer = AnswerBody::new(
            &verification.checked,
            &answers,
            body.single,
            &outcome,
            engine.policy_version(),
            seq,
        );
        serde_json::to_string(&answer)
            .map(Verified)
            .map_err(ServiceError::internal)
    }

    /// The published products and whether `caller` may use each.
    pub fn products(&self, caller: &Principal) -> Value {
        products::products_json(&self.engine(), caller.role)
    }
}
