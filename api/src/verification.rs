//! Verification in the service (Art. 29, 32): the keyed subject digests the audit log records, the
//! per-principal quotas, and the request and answer JSON, shared by
//! `POST /v1/verify` and `veil verify`.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::{Value, json};
use veil_engine::Engine;
use veil_engine::verification::{Checked, Claimed, VerifyItem};
use veil_policies::verification::Answer;
use veil_policies::{Principal, Product};

use crate::error::ServiceError;
use crate::store::{AuditEntry, Store, StoreError};

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

/// The limits of each product ([`Caps`] and the per-minute rate): what a
/// principal and its institution verified today, by product.
///
/// Admission happens twice. Before the answer is computed, [`Quotas::admit`]
/// takes the request as a whole (rate, times per subject, distinct subjects,
/// mismatches already received) and reserves its counts or refuses all of
/// it. After, [`Quotas::release`] walks the items in order and withholds an
/// item once a mismatch cap is reached. Whether an item is withheld depends
/// only on answers released before it, so a withheld item says nothing
/// about its own answer.
#[derive(Default)]
pub struct Quotas {
    inner: Mutex<QuotaState>,
}

#[derive(Default)]
struct QuotaState {
    day: Option<NaiveDate>,
    /// By principal, then product.
    principals: HashMap<String, HashMap<String, Quota>>,
    /// By institution (or `principal:NAME` for one without), then product.
    institutions: HashMap<String, HashMap<String, InstitutionDay>>,
}

struct Quota {
    tokens: f64,
    updated: Instant,
    /// Today's verifications per subject digest: its length is the number
    /// of distinct subjects.
    today: HashMap<u128, u32>,
    mismatches: u32,
}

#[derive(Default)]
struct InstitutionDay {
    subjects: HashSet<u128>,
    mismatches: u32,
    /// Mismatching answers per subject digest.
    per_subject: HashMap<u128, u32>,
}

/// Whether every answer about a subject counts toward its per-subject cap,
/// not only mismatches: so for a product with a threshold claim, where
/// `true` tells as much as `false` (a search upwards meets one `false`
/// only at the end).
fn counts_every_answer(product: &Product) -> bool {
    product
        .claims
        .iter()
        .any(|c| c.test != veil_policies::verification::Test::Equals)
}

/// The institution a principal's counts add up to.
fn institution_of(principal: &Principal) -> String {
    match &principal.org {
        Some(org) => format!("org:{org}"),
        None => format!("principal:{}", principal.name),
    }
}

fn entry<'m, V>(
    map: &'m mut HashMap<String, HashMap<String, V>>,
    outer: &str,
    inner: &str,
    new: impl FnOnce() -> V,
) -> &'m mut V {
    if !map.contains_key(outer) {
        map.insert(outer.to_owned(), HashMap::new());
    }
    let inners = map.get_mut(outer).expect("inserted");
    if !inners.contains_key(inner) {
        inners.insert(inner.to_owned(), new());
    }
    inners.get_mut(inner).expect("inserted")
}

/// Seconds until the next service day begins, for `Retry-After`.
pub fn seconds_to_tomorrow(now: DateTime<Utc>) -> u64 {
    use veil_policies::calendar::{service_day, service_day_start};
    let tomorrow = service_day(now).succ_opt().unwrap_or(service_day(now));
    let start = service_day_start(tomorrow);
    u64::try_from((start - now).num_seconds())
        .unwrap_or(0)
        .max(1)
}

fn capped(what: String, now: DateTime<Utc>) -> ServiceError {
    ServiceError::rate_limited(
        format!("{what}; the counts start again at midnight China Standard Time"),
        seconds_to_tomorrow(now),
    )
}

impl QuotaState {
    /// Clears the counts when the service day changed.
    fn roll(&mut self, now: DateTime<Utc>) {
        let today = veil_policies::calendar::service_day(now);
        if self.day != Some(today) {
            self.day = Some(today);
            for products in self.principals.values_mut() {
                for quota in products.values_mut() {
                    quota.today.clear();
                    quota.mismatches = 0;
                }
            }
            self.institutions.clear();
        }
    }

    fn both(
        &mut self,
        principal: &str,
        institution: &str,
        product: &Product,
    ) -> (&mut Quota, &mut InstitutionDay) {
        let quota = entry(&mut self.principals, principal, &product.name, || Quota {
            tokens: f64::from(product.per_minute),
            updated: Instant::now(),
            today: HashMap::new(),
            mismatches: 0,
        });
        let day = entry(
            &mut self.institutions,
            institution,
            &product.name,
            InstitutionDay::default,
        );
        (quota, day)
    }
}

impl Quotas {
    /// Admits `digests` (one per item of a request, in order) for
    /// `principal`, reserving their counts, or refuses the whole request
    /// without counting any of it.
    pub fn admit(
        &self,
        principal: &Principal,
        product: &Product,
        digests: &[u128],
        now: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        let caps = product.caps;
        let institution = institution_of(principal);
        let mut state = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        state.roll(now);
        let (quota, day) = state.both(&principal.name, &institution, product);
        let rate = f64::from(product.per_minute);
        let clock = Instant::now();
        let tokens = (quota.tokens
            + clock.duration_since(quota.updated).as_secs_f64() * rate / 60.0)
            .min(rate);
        let wanted = digests.len() as f64;
        if tokens < wanted {
            let short = (wanted - tokens) * 60.0 / rate;
            return Err(ServiceError::rate_limited(
                format!(
                    "product `{}` allows {} subjects a minute per principal; {} are available now",
                    product.name,
                    product.per_minute,
                    tokens.floor()
                ),
                short.ceil().max(1.0) as u64,
            ));
        }
        if quota.mismatches >= caps.daily_mismatches {
            return Err(capped(
                format!(
                    "{} answers through `{}` were mismatches today, this principal's daily limit",
                    caps.daily_mismatches, product.name
                ),
                now,
            ));
        }
        if day.mismatches >= caps.institution_daily_mismatches {
            return Err(capped(
                format!(
                    "{} answers through `{}` to this institution were mismatches today, its daily limit",
                    caps.institution_daily_mismatches, product.name
                ),
                now,
            ));
        }
        let cap = product.daily_per_subject;
        let mut counts: HashMap<u128, u32> = HashMap::with_capacity(digests.len());
        let mut new_for_principal = 0u32;
        let mut new_for_institution = 0u32;
        for (n, d) in digests.iter().enumerate() {
            let count = counts.entry(*d).or_insert_with(|| {
                let seen = quota.today.get(d).copied().unwrap_or(0);
                new_for_principal += u32::from(seen == 0);
                new_for_institution += u32::from(!day.subjects.contains(d));
                seen
            });
            *count += 1;
            if *count > cap {
                let which = if digests.len() > 1 {
                    format!("the subject of items[{n}]")
                } else {
                    "this subject".to_owned()
                };
                return Err(capped(
                    format!(
                        "{which} was verified {cap} times today through `{}`, its daily limit per principal",
                        product.name
                    ),
                    now,
                ));
            }
        }
        let distinct = quota.today.len() as u64 + u64::from(new_for_principal);
        if distinct > u64::from(caps.daily_subjects) {
            return Err(capped(
                format!(
                    "`{}` answers about {} distinct subjects a day per principal; this request would make {distinct}",
                    product.name, caps.daily_subjects
                ),
                now,
            ));
        }
        let distinct = day.subjects.len() as u64 + u64::from(new_for_institution);
        if distinct > u64::from(caps.institution_daily_subjects) {
            return Err(capped(
                format!(
                    "`{}` answers about {} distinct subjects a day per institution; this request would make {distinct}",
                    product.name, caps.institution_daily_subjects
                ),
                now,
            ));
        }
        quota.tokens = tokens - wanted;
        quota.updated = clock;
        for (d, count) in counts {
            quota.today.insert(d, count);
            day.subjects.insert(d);
        }
        Ok(())
    }

    /// Decides, item by item in order, which answers leave: an item whose
    /// subject, principal or institution reached its mismatch cap is
    /// withheld; each released mismatch counts. `matched[i]` is whether
    /// every claim of item `i` held. Returns the withheld items' indices.
    pub fn release(
        &self,
        principal: &Principal,
        product: &Product,
        digests: &[u128],
        matched: &[bool],
        now: DateTime<Utc>,
    ) -> Vec<usize> {
        let caps = product.caps;
        let every_answer = counts_every_answer(product);
        let institution = institution_of(principal);
        let mut state = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        state.roll(now);
        let (quota, day) = state.both(&principal.name, &institution, product);
        let mut withheld = Vec::new();
        for (n, (d, matched)) in digests.iter().zip(matched).enumerate() {
            let on_subject = day.per_subject.get(d).copied().unwrap_or(0);
            if quota.mismatches >= caps.daily_mismatches
                || day.mismatches >= caps.institution_daily_mismatches
                || on_subject >= caps.daily_mismatches_per_subject
            {
                withheld.push(n);
                continue;
            }
            if !matched {
                quota.mismatches += 1;
                day.mismatches += 1;
            }
            if !matched || every_answer {
                *day.per_subject.entry(*d).or_insert(0) += 1;
            }
        }
        withheld
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
        let mut institutions: HashMap<String, String> = HashMap::new();
        let mut state = quotas.inner.lock().unwrap_or_else(|e| e.into_inner());
        state.roll(now);
        for (principal, request) in store.successes_since(&since, &[HTTP_ENDPOINT, CLI_ENDPOINT])? {
            let Some(audited) = parse_audit_request(&request) else {
                continue;
            };
            let Some(product) = policy.product(&audited.product) else {
                continue;
            };
            if !institutions.contains_key(&principal) {
                let institution = match store.principal(&principal)? {
                    Some(record) => institution_of(&record.principal),
                    None => format!("principal:{principal}"),
                };
                institutions.insert(principal.clone(), institution);
            }
            let institution = &institutions[&principal];
            let (quota, day) = state.both(&principal, institution, product);
            for d in &audited.subjects {
                *quota.today.entry(*d).or_insert(0) += 1;
                day.subjects.insert(*d);
            }
            let every_answer = counts_every_answer(product);
            for d in audited
                .mismatched
                .iter()
                .filter_map(|&i| audited.subjects.get(i))
            {
                quota.mismatches += 1;
                day.mismatches += 1;
                if !every_answer {
                    *day.per_subject.entry(*d).or_insert(0) += 1;
                }
            }
            if every_answer {
                for (i, d) in audited.subjects.iter().enumerate() {
                    if !audited.withheld.contains(&i) {
                        *day.per_subject.entry(*d).or_insert(0) += 1;
                    }
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
/// asked, each subject's digest (never the identifier or a claimed value),
/// and by index the items whose answer was a mismatch and those withheld by
/// a cap (what the daily caps are counted from after a restart).
pub fn audit_request(
    product: &str,
    claims: &[&str],
    digests: &[u128],
    outcome: &Outcome,
) -> String {
    use std::fmt::Write;
    let mut text = String::with_capacity(96 + 35 * digests.len());
    text.push_str("{\"product\":");
    text.push_str(&Value::from(product).to_string());
    text.push_str(",\"claims\":");
    text.push_str(&json!(claims).to_string());
    text.push_str(",\"subjects\":[");
    for (i, d) in digests.iter().enumerate() {
        let comma = if i == 0 { "" } else { "," };
        let _ = write!(text, "{comma}\"{d:032x}\"");
    }
    text.push(']');
    for (key, list) in [
        ("mismatched", &outcome.mismatched),
        ("withheld", &outcome.withheld),
    ] {
        if !list.is_empty() {
            let _ = write!(text, ",\"{key}\":{}", json!(list));
        }
    }
    text.push('}');
    text
}

/// Which items of a verification were mismatches and which were withheld.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub mismatched: Vec<usize>,
    pub withheld: Vec<usize>,
}

/// A verification's audit `request`, read back.
#[derive(Debug, PartialEq, Eq)]
pub struct AuditedVerification {
    pub product: String,
    pub subjects: Vec<u128>,
    pub mismatched: Vec<usize>,
    pub withheld: Vec<usize>,
}

/// Reads an audit `request` written by [`audit_request`] back.
pub fn parse_audit_request(text: &str) -> Option<AuditedVerification> {
    let value: Value = serde_json::from_str(text).ok()?;
    let product = value.get("product")?.as_str()?.to_owned();
    let subjects = value
        .get("subjects")?
        .as_array()?
        .iter()
        .map(|s| s.as_str().and_then(|s| u128::from_str_radix(s, 16).ok()))
        .collect::<Option<Vec<_>>>()?;
    let indices = |key: &str| -> Option<Vec<usize>> {
        match value.get(key) {
            None => Some(Vec::new()),
            Some(list) => list
                .as_array()?
                .iter()
                .map(|i| i.as_u64().and_then(|i| usize::try_from(i).ok()))
                .collect(),
        }
    };
    Some(AuditedVerification {
        product,
        subjects,
        mismatched: indices("mismatched")?,
        withheld: indices("withheld")?,
    })
}

/// One item's answers: claim name to `match`/`mismatch` or true/false; or,
/// for a product that answers `all`, one `all` entry that is `match` only
/// when every claim matched; or, for an item a cap withheld, the string
/// `rate_limited`.
struct ClaimResults<'a> {
    claims: &'a [(&'a str, bool)],
    answer: Answer,
    withheld: bool,
}

impl Serialize for ClaimResults<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.withheld {
            return s.serialize_str("rate_limited");
        }
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

/// Why some items of a batch were not answered.
#[derive(Serialize)]
struct WithheldBody<'a> {
    items: &'a [usize],
    reason: &'static str,
    retry_after_seconds: u64,
}

/// Why an item is withheld; deliberately the same whichever cap it was, so
/// that one principal does not learn what another of its institution asked.
pub const WITHHELD: &str = "a daily limit on mismatching answers is reached for this subject, this principal or its institution; the counts start again at midnight China Standard Time";

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
    #[serde(skip_serializing_if = "Option::is_none")]
    withheld: Option<WithheldBody<'a>>,
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
        outcome: &'a Outcome,
        policy_version: &'a str,
        audit_seq: i64,
    ) -> Self {
        let answer = checked.product().answer;
        let mut withheld = outcome.withheld.iter().peekable();
        let mut result = |(n, claims): (usize, &'a Vec<(&'a str, bool)>)| ClaimResults {
            claims,
            answer,
            withheld: withheld.next_if_eq(&&n).is_some(),
        };
        let results = match (single, answers.first()) {
            (true, Some(first)) => Results::One(result((0, first))),
            _ => Results::Many(answers.iter().enumerate().map(result).collect()),
        };
        let withheld = (!outcome.withheld.is_empty()).then(|| WithheldBody {
            items: &outcome.withheld,
            reason: WITHHELD,
            retry_after_seconds: seconds_to_tomorrow(checked.provenance.retrieved_at),
        });
        let p = &checked.provenance;
        AnswerBody {
            results,
            withheld,
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
    verification: Option<(&Verification<'_>, &Outcome)>,
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
        request: audit_request(product, &[], &[], &Outcome::default()),
        privacy: "{}".into(),
        outcome,
        ..AuditEntry::default()
    };
    if let Some((v, released)) = verification {
        let p = v.checked.product();
        let claims = v.checked.claim_names();
        entry.request = audit_request(&p.name, &claims, &v.digests, released);
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
    use crate::wire::ErrorCode;

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

    fn product() -> Product {
        let policy = veil_policies::Policy::parse(
            r#"
            format = 1
            name = "p"
            [[grade]]
            name = "L1"
            approver = "provider"
            grant_days = 30
            k = 5
            epsilon = 1.0
            levels = { consumer = "plain" }
            [[product]]
            name = "identity"
            dataset = "d"
            subject = "s"
            per_minute = 1000000
            daily_per_subject = 100
            daily_subjects = 5
            institution_daily_subjects = 8
            daily_mismatches = 6
            institution_daily_mismatches = 9
            daily_mismatches_per_subject = 2
            [[product.claim]]
            field = "name"
            "#,
        )
        .unwrap();
        policy.products[0].clone()
    }

    fn principals() -> [Principal; 3] {
        let mut a = Principal::new("a", veil_policies::Role::Consumer);
        a.org = Some("bank".into());
        let mut b = Principal::new("b", veil_policies::Role::Consumer);
        b.org = Some("bank".into());
        [a, b, Principal::new("c", veil_policies::Role::Consumer)]
    }

    type Request = (usize, Vec<(u128, bool)>);

    /// Replays `requests`; per request, `None` when admission refused it,
    /// else the withheld items.
    fn replay(requests: &[Request]) -> Vec<Option<Vec<usize>>> {
        let (quotas, product, principals) = (Quotas::default(), product(), principals());
        let now = Utc::now();
        requests
            .iter()
            .map(|(who, items)| {
                let digests: Vec<u128> = items.iter().map(|i| i.0).collect();
                let matched: Vec<bool> = items.iter().map(|i| i.1).collect();
                let caller = &principals[*who];
                quotas.admit(caller, &product, &digests, now).ok()?;
                Some(quotas.release(caller, &product, &digests, &matched, now))
            })
            .collect()
    }

    proptest::proptest! {
        /// The caps hold whatever is asked, and whether an item is withheld
        /// never depends on its own answer (nor on any later one).
        #[test]
        fn caps_hold_and_withholding_says_nothing_of_the_answer(
            requests in proptest::collection::vec(
                (0usize..3, proptest::collection::vec((0u128..7, proptest::bool::ANY), 1..6)),
                1..40,
            ),
            flip in proptest::prelude::any::<proptest::sample::Index>(),
        ) {
            let caps = product().caps;
            let outcomes = replay(&requests);
            let institution = |who: usize| if who < 2 { 0 } else { 1 };
            let mut subjects = [HashSet::new(), HashSet::new(), HashSet::new()];
            let mut institution_subjects = [HashSet::new(), HashSet::new()];
            let mut mismatches = [0u32; 3];
            let mut institution_mismatches = [0u32; 2];
            let mut on_subject: HashMap<(usize, u128), u32> = HashMap::new();
            for ((who, items), outcome) in requests.iter().zip(&outcomes) {
                let Some(withheld) = outcome else { continue };
                for (n, (d, matched)) in items.iter().enumerate() {
                    subjects[*who].insert(*d);
                    institution_subjects[institution(*who)].insert(*d);
                    if !withheld.contains(&n) && !matched {
                        mismatches[*who] += 1;
                        institution_mismatches[institution(*who)] += 1;
                        *on_subject.entry((institution(*who), *d)).or_default() += 1;
                    }
                }
            }
            for who in 0..3 {
                proptest::prop_assert!(subjects[who].len() as u32 <= caps.daily_subjects);
                proptest::prop_assert!(mismatches[who] <= caps.daily_mismatches);
            }
            for i in 0..2 {
                proptest::prop_assert!(institution_subjects[i].len() as u32 <= caps.institution_daily_subjects);
                proptest::prop_assert!(institution_mismatches[i] <= caps.institution_daily_mismatches);
            }
            proptest::prop_assert!(on_subject.values().all(|&n| n <= caps.daily_mismatches_per_subject));

            // Flip one item's answer: the outcome of everything up to and
            // including it stays the same.
            let at = flip.index(requests.iter().map(|r| r.1.len()).sum());
            let mut flipped = requests.clone();
            let (mut r, mut j) = (0, at);
            while j >= flipped[r].1.len() {
                j -= flipped[r].1.len();
                r += 1;
            }
            flipped[r].1[j].1 = !flipped[r].1[j].1;
            let other = replay(&flipped);
            proptest::prop_assert_eq!(&outcomes[..r], &other[..r]);
            match (&outcomes[r], &other[r]) {
                (None, None) => {}
                (Some(x), Some(y)) => {
                    let upto = |w: &Vec<usize>| w.iter().copied().filter(|&n| n <= j).collect::<Vec<_>>();
                    proptest::prop_assert_eq!(upto(x), upto(y));
                }
                _ => proptest::prop_assert!(false, "admission depends on the answer"),
            }
        }
    }

    #[test]
    fn a_threshold_answer_counts_whichever_way_it_goes() {
        // A search upwards meets `false` only at its end: for a threshold
        // product every answer about the subject counts.
        let policy = veil_policies::Policy::parse(
            r#"
            format = 1
            name = "p"
            [[grade]]
            name = "L1"
            approver = "provider"
            grant_days = 30
            k = 5
            epsilon = 1.0
            levels = { consumer = "plain" }
            [[product]]
            name = "arrears"
            dataset = "d"
            subject = "s"
            answer = "boolean"
            [[product.claim]]
            name = "above"
            field = "arrears"
            test = "above"
            "#,
        )
        .unwrap();
        let product = &policy.products[0];
        let [a, b, _] = principals();
        let quotas = Quotas::default();
        let now = Utc::now();
        let mut released = 0;
        for caller in [&a, &b, &a, &b] {
            quotas.admit(caller, product, &[7], now).unwrap();
            if quotas
                .release(caller, product, &[7], &[true], now)
                .is_empty()
            {
                released += 1;
            }
        }
        assert_eq!(released, product.caps.daily_mismatches_per_subject);
    }

    #[test]
    fn the_audit_request_reads_back() {
        let outcome = Outcome {
            mismatched: vec![1],
            withheld: vec![2],
        };
        let text = audit_request("identity", &["name"], &[1, 2, 3], &outcome);
        let back = parse_audit_request(&text).unwrap();
        assert_eq!(
            back,
            AuditedVerification {
                product: "identity".into(),
                subjects: vec![1, 2, 3],
                mismatched: vec![1],
                withheld: vec![2],
            }
        );
        assert!(text.contains(r#""withheld":[2]"#), "{text}");
    }
}
