//! Verification in the service (Art. 29, 32): the keyed subject digests the audit log records, the
//! per-principal quotas, and the request and answer JSON, shared by
//! `POST /v1/verify` and `veil verify`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::{Value, json};
use veil_engine::Engine;
use veil_engine::verification::{Checked, Claimed, VerifyItem};
use veil_policies::Product;
use veil_policies::verification::Answer;

use crate::error::ServiceError;
use crate::store::{AuditEntry, Store, StoreError};
use crate::wire::ErrorCode;

/// The audit log's endpoint names for verifications.
pub const HTTP_ENDPOINT: &str = "POST /v1/verify";
pub const CLI_ENDPOINT: &str = "veil verify";

/// Keyed digests of subjects for the audit log and the daily quota: the
/// same subject always has the same digest, and without the service's
/// master key a digest cannot be tested against a guessed identifier.
pub struct SubjectDigest(ring::hmac::Key);

impl SubjectDigest {
    pub fn new(master: &[u8; 32]) -> Self {
        let root = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, master);
        let derived = ring::hmac::sign(&root, b"veil verification subject digest v1");
        SubjectDigest(ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            derived.as_ref(),
        ))
    }

    /// 128 bits of HMAC-SHA256 over the canonical identifier.
    pub fn digest(&self, canonical: &str) -> u128 {
        let tag = ring::hmac::sign(&self.0, canonical.as_bytes());
        u128::from_be_bytes(tag.as_ref()[..16].try_into().expect("32-byte tag"))
    }
}

/// Per-principal limits of each product: subjects per minute (a token
/// bucket) and verifications of one subject per day.
#[derive(Default)]
pub struct Quotas {
    inner: Mutex<QuotaState>,
}

#[derive(Default)]
struct QuotaState {
    day: Option<NaiveDate>,
    /// By principal, then product.
    principals: HashMap<String, HashMap<String, Quota>>,
}

struct Quota {
    tokens: f64,
    updated: Instant,
    /// Today's verifications per subject digest.
    today: HashMap<u128, u32>,
}

impl QuotaState {
    /// The quota of `principal` for `product`, today's counts cleared when
    /// the day changed.
    fn quota(&mut self, principal: &str, product: &Product, now: DateTime<Utc>) -> &mut Quota {
        let today = veil_policies::calendar::service_day(now);
        if self.day != Some(today) {
            self.day = Some(today);
            for products in self.principals.values_mut() {
                for quota in products.values_mut() {
                    quota.today.clear();
                }
            }
        }
        if !self.principals.contains_key(principal) {
            self.principals.insert(principal.to_owned(), HashMap::new());
        }
        let products = self.principals.get_mut(principal).expect("inserted");
        if !products.contains_key(&product.name) {
            products.insert(
                product.name.clone(),
                Quota {
                    tokens: f64::from(product.per_minute),
                    updated: Instant::now(),
                    today: HashMap::new(),
                },
            );
        }
        products.get_mut(&product.name).expect("inserted")
    }
}

impl Quotas {
    /// Admits `digests` (one per subject of a request) for `principal`, or
    /// refuses the whole request without counting any of it.
    pub fn admit(
        &self,
        principal: &str,
        product: &Product,
        digests: &[u128],
        now: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        let mut state = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let quota = state.quota(principal, product, now);
        let rate = f64::from(product.per_minute);
        let clock = Instant::now();
        let tokens = (quota.tokens
            + clock.duration_since(quota.updated).as_secs_f64() * rate / 60.0)
            .min(rate);
        let wanted = digests.len() as f64;
        if tokens < wanted {
            return Err(ServiceError::new(
                ErrorCode::RateLimited,
                format!(
                    "product `{}` allows {} subjects a minute per principal; {} are available now",
                    product.name,
                    product.per_minute,
                    tokens.floor()
                ),
            ));
        }
        let cap = product.daily_per_subject;
        let over = if digests.len() == 1 {
            let seen = quota.today.get(&digests[0]).copied().unwrap_or(0);
            (seen >= cap).then_some(0)
        } else {
            let mut counts: HashMap<u128, u32> = HashMap::with_capacity(digests.len());
            digests.iter().position(|d| {
                let count = counts
                    .entry(*d)
                    .or_insert_with(|| quota.today.get(d).copied().unwrap_or(0));
                *count += 1;
                *count > cap
            })
        };
        if let Some(n) = over {
            let which = if digests.len() > 1 {
                format!("the subject of items[{n}]")
            } else {
                "this subject".to_owned()
            };
            return Err(ServiceError::new(
                ErrorCode::RateLimited,
                format!(
                    "{which} was verified {cap} times today through `{}`, its daily limit per principal",
                    product.name
                ),
            ));
        }
        quota.tokens = tokens - wanted;
        quota.updated = clock;
        for d in digests {
            *quota.today.entry(*d).or_insert(0) += 1;
        }
        Ok(())
    }

    /// The quotas with today's verifications counted, read back from the
    /// audit log, so a restart (or the CLI) does not reset the daily caps.
    pub fn from_audit(
        store: &Store,
        policy: &veil_policies::Policy,
        now: DateTime<Utc>,
    ) -> Result<Quotas, StoreError> {
        use veil_policies::calendar::{service_day, service_day_start};
        let quotas = Quotas::default();
        let since = service_day_start(service_day(now))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut state = quotas.inner.lock().unwrap_or_else(|e| e.into_inner());
        for (principal, request) in store.successes_since(&since, &[HTTP_ENDPOINT, CLI_ENDPOINT])? {
            if let Some((name, digests)) = parse_audit_request(&request)
                && let Some(product) = policy.product(&name)
            {
                let quota = state.quota(&principal, product, now);
                for d in digests {
                    *quota.today.entry(d).or_insert(0) += 1;
                }
            }
        }
        drop(state);
        Ok(quotas)
    }
}

/// A verification request as JSON: one subject, or up to 10,000 `items`.
#[derive(Debug)]
pub struct VerifyBody {
    pub product: String,
    pub purpose: Option<String>,
    pub items: Vec<VerifyItem>,
    /// Whether the request was a single subject (answered as one object).
    pub single: bool,
}

fn claims_of(value: Option<&Value>, at: &str) -> Result<Vec<(String, Claimed)>, ServiceError> {
    let Some(Value::Object(map)) = value else {
        return Err(ServiceError::bad_request(format!(
            "`{at}claims` must be an object of claim name to value"
        )));
    };
    map.iter()
        .map(|(name, v)| {
            let claimed = match v {
                Value::String(s) => Claimed::Text(s.clone()),
                Value::Number(n) => Claimed::Number(n.as_f64().unwrap_or(f64::NAN)),
                Value::Bool(b) => Claimed::Bool(*b),
                _ => {
                    return Err(ServiceError::bad_request(format!(
                        "`{at}claims.{name}` must be a string, a number or a boolean"
                    )));
                }
            };
            Ok((name.clone(), claimed))
        })
        .collect()
}

fn subject_of(value: Option<&Value>, at: &str) -> Result<String, ServiceError> {
    match value {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(ServiceError::bad_request(format!(
            "`{at}subject` must be the subject's identifier as a string"
        ))),
    }
}

const BODY_KEYS: &[&str] = &["product", "purpose", "subject", "claims", "items"];

impl VerifyBody {
    /// Reads the body by hand, so no parser message can repeat a value.
    pub fn parse(body: &Value) -> Result<VerifyBody, ServiceError> {
        let Value::Object(map) = body else {
            return Err(ServiceError::bad_request("the body must be a JSON object"));
        };
        // An unknown key is not repeated: it could be anyone's identifier.
        if map.keys().any(|k| !BODY_KEYS.contains(&k.as_str())) {
            return Err(ServiceError::bad_request(format!(
                "a key a verification does not take; it takes {}",
                BODY_KEYS.join(", ")
            )));
        }
        let product = match map.get("product") {
            Some(Value::String(p)) => p.clone(),
            _ => {
                return Err(ServiceError::bad_request(
                    "`product` must name a verification product",
                ));
            }
        };
        let purpose = match map.get("purpose") {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) => Some(p.clone()),
            _ => return Err(ServiceError::bad_request("`purpose` must be a string")),
        };
        let (items, single) = match (map.get("items"), map.contains_key("subject")) {
            (Some(Value::Array(items)), false) if !map.contains_key("claims") => {
                let items = items
                    .iter()
                    .enumerate()
                    .map(|(n, item)| {
                        let at = format!("items[{n}].");
                        let Value::Object(item) = item else {
                            return Err(ServiceError::bad_request(format!(
                                "`items[{n}]` must be an object with `subject` and `claims`"
                            )));
                        };
                        if item.keys().any(|k| k != "subject" && k != "claims") {
                            return Err(ServiceError::bad_request(format!(
                                "`{at}` has a key other than `subject` and `claims`"
                            )));
                        }
                        Ok(VerifyItem {
                            subject: subject_of(item.get("subject"), &at)?,
                            claims: claims_of(item.get("claims"), &at)?,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                (items, false)
            }
            (None, true) => (
                vec![VerifyItem {
                    subject: subject_of(map.get("subject"), "")?,
                    claims: claims_of(map.get("claims"), "")?,
                }],
                true,
            ),
            _ => {
                return Err(ServiceError::bad_request(
                    "send either `subject` and `claims`, or `items`: a list of up to 10000 of them",
                ));
            }
        };
        Ok(VerifyBody {
            product,
            purpose,
            items,
            single,
        })
    }
}

/// The audit record's `request` for a verification: the product, the claims
/// asked, and each subject's digest (never the identifier or a claimed value).
pub fn audit_request(product: &str, claims: &[&str], digests: &[u128]) -> String {
    use std::fmt::Write;
    let mut text = String::with_capacity(64 + 35 * digests.len());
    text.push_str("{\"product\":");
    text.push_str(&Value::from(product).to_string());
    text.push_str(",\"claims\":");
    text.push_str(&json!(claims).to_string());
    text.push_str(",\"subjects\":[");
    for (i, d) in digests.iter().enumerate() {
        let comma = if i == 0 { "" } else { "," };
        let _ = write!(text, "{comma}\"{d:032x}\"");
    }
    text.push_str("]}");
    text
}

/// Reads an audit `request` written by [`audit_request`] back.
pub fn parse_audit_request(text: &str) -> Option<(String, Vec<u128>)> {
    let value: Value = serde_json::from_str(text).ok()?;
    let product = value.get("product")?.as_str()?.to_owned();
    let digests = value
        .get("subjects")?
        .as_array()?
        .iter()
        .map(|s| s.as_str().and_then(|s| u128::from_str_radix(s, 16).ok()))
        .collect::<Option<Vec<_>>>()?;
    Some((product, digests))
}

/// One item's answers: claim name to `match`/`mismatch` or true/false; or,
/// for a product that answers `all`, one `all` entry that is `match` only
/// when every claim matched.
struct ClaimResults<'a> {
    claims: &'a [(&'a str, bool)],
    answer: Answer,
}

impl Serialize for ClaimResults<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let word = |passed: bool| if passed { "match" } else { "mismatch" };
        if self.answer == Answer::All {
            let mut map = s.serialize_map(Some(1))?;
            map.serialize_entry("all", word(self.claims.iter().all(|(_, p)| *p)))?;
            return map.end();
        }
        let mut map = s.serialize_map(Some(self.claims.len()))?;
        for (name, passed) in self.claims {
            if self.answer == Answer::Boolean {
                map.serialize_entry(name, passed)?;
            } else {
                map.serialize_entry(name, word(*passed))?;
            }
        }
        map.end()
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum Results<'a> {
    One(ClaimResults<'a>),
    Many(Vec<ClaimResults<'a>>),
}

#[derive(Serialize)]
struct VersionBody<'a> {
    dataset: &'a str,
    version: i64,
}

#[derive(Serialize)]
struct ProvenanceBody<'a> {
    datasets: &'a [String],
    providers: &'a [String],
    versions: Vec<VersionBody<'a>>,
    retrieved_at: String,
}

#[derive(Serialize)]
struct PrivacyBody {
    mode: &'static str,
    bits_per_claim: u32,
}

/// The answer: per claim `match`/`mismatch` (or true/false), and what every
/// answer carries: provenance, the policy version, the audit entry.
#[derive(Serialize)]
pub struct AnswerBody<'a> {
    results: Results<'a>,
    product: &'a str,
    provenance: ProvenanceBody<'a>,
    privacy: PrivacyBody,
    policy_version: &'a str,
    audit_seq: i64,
}

impl<'a> AnswerBody<'a> {
    pub fn new(
        checked: &'a Checked<'_>,
        answers: &'a [Vec<(&'a str, bool)>],
        single: bool,
        policy_version: &'a str,
        audit_seq: i64,
    ) -> Self {
        let answer = checked.product().answer;
        let result = |claims: &'a Vec<(&'a str, bool)>| ClaimResults { claims, answer };
        let results = match (single, answers.first()) {
            (true, Some(first)) => Results::One(result(first)),
            _ => Results::Many(answers.iter().map(result).collect()),
        };
        let p = &checked.provenance;
        AnswerBody {
            results,
            product: &checked.product().name,
            provenance: ProvenanceBody {
                datasets: &p.datasets,
                providers: &p.providers,
                versions: p
                    .versions
                    .iter()
                    .map(|(dataset, version)| VersionBody {
                        dataset,
                        version: *version,
                    })
                    .collect(),
                retrieved_at: p
                    .retrieved_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            },
            privacy: PrivacyBody {
                mode: "verification",
                bits_per_claim: 1,
            },
            policy_version,
            audit_seq,
        }
    }
}

/// The products as a caller sees them: what each asks and answers, its
/// limits, and whether the caller may use it.
pub fn products_json(engine: &Engine, role: veil_policies::Role) -> Value {
    let products: Vec<Value> = engine
        .policy()
        .products
        .iter()
        .map(|p| {
            let available = engine.product_table(&p.name).is_some();
            json!({
                "name": p.name,
                "description": p.description,
                "dataset": p.dataset,
                "answer": p.answer.name(),
                "claims": p.claims.iter().map(|c| json!({
                    "name": c.name,
                    "test": c.test.name(),
                    "compare": c.compare.name(),
                    "over": c.over.name(),
                })).collect::<Vec<_>>(),
                "roles": p.roles.iter().map(|r| r.name()).collect::<Vec<_>>(),
                "purposes": p.purposes,
                "per_minute": p.per_minute,
                "daily_per_subject": p.daily_per_subject,
                "available": available,
                "usable_by_you": available && p.roles.contains(&role),
            })
        })
        .collect();
    json!({"products": products})
}

/// A verification that passed every check, with what the audit log keeps.
pub struct Verification<'e> {
    pub checked: Checked<'e>,
    pub digests: Vec<u128>,
}

/// Checks a request as `principal`: the engine's checks, then the digests
/// of its subjects.
pub fn check<'e>(
    engine: &'e Engine,
    principal: &veil_policies::Principal,
    body: &VerifyBody,
    digest: &SubjectDigest,
    now: DateTime<Utc>,
) -> Result<Verification<'e>, ServiceError> {
    let request = veil_engine::verification::VerifyRequest {
        principal,
        purpose: body.purpose.as_deref(),
        product: &body.product,
        items: &body.items,
        now,
    };
    let checked = engine
        .verify(&request)
        .map_err(|e| ServiceError::from(&e))?;
    let digests = checked.subjects().map(|s| digest.digest(s)).collect();
    Ok(Verification { checked, digests })
}

/// The audit entry of a verification; `verification` is `None` for a
/// refusal, which records the product asked for and nothing about subjects.
pub fn audit_entry(
    principal: &veil_policies::Principal,
    endpoint: &str,
    body: Option<&VerifyBody>,
    verification: Option<&Verification<'_>>,
    outcome: String,
) -> AuditEntry {
    // A product name is a plain word; anything else the caller put there is
    // not recorded (it could be anyone's identifier).
    let product = body
        .map(|b| b.product.as_str())
        .filter(|p| veil_policies::is_plain_name(p))
        .unwrap_or("");
    let mut entry = AuditEntry {
        principal: principal.name.clone(),
        role: principal.role.name().to_owned(),
        purpose: body.and_then(|b| b.purpose.clone()).unwrap_or_default(),
        endpoint: endpoint.to_owned(),
        request: audit_request(product, &[], &[]),
        privacy: "{}".into(),
        outcome,
        ..AuditEntry::default()
    };
    if let Some(v) = verification {
        let p = v.checked.product();
        let claims = v.checked.claim_names();
        entry.request = audit_request(&p.name, &claims, &v.digests);
        entry.datasets = vec![p.dataset.clone()];
        entry.fields = claims
            .iter()
            .filter_map(|c| p.claim(c))
            .map(|c| format!("{}.{}", p.dataset, c.field))
            .collect();
        entry.rows = Some(v.digests.len() as u64);
        entry.privacy = json!({"mode": "verification", "claims": claims.len()}).to_string();
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_key_the_caller_made_up_is_not_repeated() {
        let secret = "53010219900101001X";
        let bodies = [
            json!({"product": "person_identity", "subject": "x", "claims": {}, secret: 1}),
            json!({"product": "person_identity", "items": [{"subject": "x", "claims": {}, secret: 1}]}),
        ];
        for body in bodies {
            let e = VerifyBody::parse(&body).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadRequest);
            assert!(!e.message.contains("5301021990"), "{e}");
        }
    }
}
