//! Verification (Art. 29, 32): `match`/`mismatch` (or true/false) per claim
//! about one subject, computed from data the caller never sees.
//!
//! Two structures answer a verification without a scan:
//! - [`SubjectIndex`], built at registration and kept next to the store:
//!   every identifier of one field, in an exact 128-bit encoding, sorted,
//!   with the positions of the rows that carry it;
//! - [`ProductTable`], built when the engine loads: per row, what each claim
//!   of one product compares, reduced to a keyed 64-bit hash of the
//!   normalised value (equality), a number (threshold tests) or a rank (the
//!   `by` of `latest`), and the row's region.
//!
//! A lookup is a binary search in the index, then a look at the subject's
//! rows. No stored value is kept as text, and nothing but one bit per claim
//! leaves [`Checked::answer`].

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use veil_policies::catalog::{FieldType, IdentifierKind};
use veil_policies::verify::{
    Claim, Compare, MAX_BATCH, Over, Product, Test, canonical_identifier, check_identifier,
    normalize_text, parse_date,
};
use veil_policies::{Level, Principal, decide};

use crate::engine::Provenance;
use crate::tables::Dataset;

/// Why a verification was not answered. Messages name products, claims and
/// positions in the request, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Denied(String),
}

/// The exact key of an identifier in canonical form: base 37 over `0-9A-Z`
/// (0 is padding), so any identifier of up to 24 such characters has its own
/// key and no two collide. Other text has no key.
pub fn subject_key(canonical: &str) -> Option<u128> {
    if canonical.is_empty() || canonical.len() > 24 {
        return None;
    }
    let mut key: u128 = 0;
    for b in canonical.bytes() {
        let digit = match b {
            b'0'..=b'9' => b - b'0' + 1,
            b'A'..=b'Z' => b - b'A' + 11,
            b'a'..=b'z' => b - b'a' + 11,
            _ => return None,
        };
        key = key * 37 + u128::from(digit);
    }
    Some(key)
}

/// Finds (or builds) the subject index of a dataset's field.
pub type IndexSource<'a> = dyn Fn(&Dataset, &str) -> Result<Arc<SubjectIndex>, String> + 'a;

/// Identifier → row positions for one field of one dataset version.
#[derive(Debug, PartialEq)]
pub struct SubjectIndex {
    keys: Vec<u128>,
    /// `keys.len() + 1` offsets into `rows`.
    starts: Vec<u32>,
    rows: Vec<u32>,
    /// Rows in the file, with or without an identifier.
    row_count: u32,
}

const INDEX_MAGIC: &[u8; 8] = b"VEILIDX1";

impl SubjectIndex {
    /// Reads `field` of the dataset's file in file order.
    pub fn build(dataset: &Dataset, field: &str) -> Result<SubjectIndex, String> {
        let mut pairs: Vec<(u128, u32)> = Vec::new();
        let mut row: u64 = 0;
        crate::source::read_columns(&dataset.manifest, dataset.path(), &[field], |batch| {
            let text = arrow::compute::cast(batch.column(0), &DataType::Utf8)
                .map_err(|e| e.to_string())?;
            for value in text.as_string::<i32>().iter() {
                let position = u32::try_from(row)
                    .map_err(|_| "more than 4,294,967,295 rows cannot be indexed".to_string())?;
                if let Some(key) = value.and_then(|v| subject_key(v.trim())) {
                    pairs.push((key, position));
                }
                row += 1;
            }
            Ok(true)
        })?;
        pairs.sort_unstable();
        let mut keys = Vec::new();
        let mut starts = Vec::new();
        let mut rows = Vec::with_capacity(pairs.len());
        for (i, (key, position)) in pairs.iter().enumerate() {
            if i == 0 || pairs[i - 1].0 != *key {
                keys.push(*key);
                starts.push(i as u32);
            }
            rows.push(*position);
        }
        starts.push(rows.len() as u32);
        Ok(SubjectIndex {
            keys,
            starts,
            rows,
            row_count: row as u32,
        })
    }

    /// The rows of the subject with `key`, in file order.
    pub fn rows(&self, key: u128) -> &[u32] {
        match self.keys.binary_search(&key) {
            Ok(i) => &self.rows[self.starts[i] as usize..self.starts[i + 1] as usize],
            Err(_) => &[],
        }
    }

    pub fn subjects(&self) -> usize {
        self.keys.len()
    }

    /// Bytes held in memory.
    pub fn bytes(&self) -> usize {
        self.keys.len() * 16 + self.starts.len() * 4 + self.rows.len() * 4
    }

    /// Writes the index, labelled with `tag` (what it was built from), and
    /// a SHA-256 of everything before it. The file appears whole or not at
    /// all (written aside, then renamed).
    pub fn save(&self, path: &Path, tag: &str) -> std::io::Result<()> {
        let mut body = Vec::with_capacity(64 + self.bytes());
        body.extend_from_slice(INDEX_MAGIC);
        body.extend_from_slice(&(tag.len() as u64).to_le_bytes());
        body.extend_from_slice(tag.as_bytes());
        for n in [self.keys.len(), self.rows.len(), self.row_count as usize] {
            body.extend_from_slice(&(n as u64).to_le_bytes());
        }
        for k in &self.keys {
            body.extend_from_slice(&k.to_le_bytes());
        }
        for v in self.starts.iter().chain(&self.rows) {
            body.extend_from_slice(&v.to_le_bytes());
        }
        let digest = Sha256::digest(&body);
        let aside = path.with_extension("partial");
        {
            let mut file = std::fs::File::create(&aside)?;
            file.write_all(&body)?;
            file.write_all(&digest)?;
            file.sync_all()?;
        }
        std::fs::rename(&aside, path)
    }

    /// Reads an index written by [`SubjectIndex::save`] for `tag`; any
    /// other tag, a truncated or altered file is an error.
    pub fn load(path: &Path, tag: &str) -> Result<SubjectIndex, String> {
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| e.kind().to_string())?;
        if bytes.len() < 32 + 8 {
            return Err("the index file is truncated".into());
        }
        let (body, digest) = bytes.split_at(bytes.len() - 32);
        if Sha256::digest(body).as_slice() != digest {
            return Err("the index file does not match its checksum".into());
        }
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], String> {
            let slice = body
                .get(at..at + n)
                .ok_or_else(|| "the index file is truncated".to_string())?;
            at += n;
            Ok(slice)
        };
        if take(8)? != INDEX_MAGIC {
            return Err("not a veil index file".into());
        }
        let u64_at = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize;
        let tag_len = u64_at(take(8)?);
        if take(tag_len)? != tag.as_bytes() {
            return Err("the index was built from another version of the data".into());
        }
        let n_keys = u64_at(take(8)?);
        let n_rows = u64_at(take(8)?);
        let row_count = u64_at(take(8)?);
        let keys = take(n_keys.checked_mul(16).ok_or("bad index size")?)?
            .chunks_exact(16)
            .map(|c| u128::from_le_bytes(c.try_into().expect("16 bytes")))
            .collect();
        let u32s = |b: &[u8]| -> Vec<u32> {
            b.chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect()
        };
        let starts = u32s(take((n_keys + 1) * 4)?);
        let rows = u32s(take(n_rows.checked_mul(4).ok_or("bad index size")?)?);
        Ok(SubjectIndex {
            keys,
            starts,
            rows,
            row_count: u32::try_from(row_count).map_err(|_| "bad row count")?,
        })
    }
}

/// What one claim compares, per row of the dataset.
enum Values {
    /// Keyed hashes of the normalised values; 0 is NULL (or unreadable).
    Hashes(Vec<u64>),
    /// NaN is NULL.
    Numbers(Vec<f64>),
}

struct ClaimColumn {
    values: Values,
    /// For `latest`: each row's rank of `by`, 0 for NULL.
    by: Option<Vec<u32>>,
    /// For validating claimed identifiers.
    identifier: Option<IdentifierKind>,
    field_type: FieldType,
}

/// One product over one dataset version, ready to answer.
pub struct ProductTable {
    product: Product,
    dataset: Arc<Dataset>,
    index: Arc<SubjectIndex>,
    subject_kind: IdentifierKind,
    /// The region field's distinct values and each row's value among them.
    regions: Option<(Vec<String>, Vec<u16>)>,
    claims: Vec<ClaimColumn>,
    hasher: RandomState,
}

impl std::fmt::Debug for ProductTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ProductTable({} over {:?})",
            self.product.name, self.dataset
        )
    }
}

fn hash_of(hasher: &RandomState, text: &str) -> u64 {
    hasher.hash_one(text).max(1)
}

/// Assigns each distinct text a small number in first-seen order.
#[derive(Default)]
struct Interner {
    ids: HashMap<String, u32>,
}

impl Interner {
    fn id(&mut self, text: &str) -> u32 {
        if let Some(&id) = self.ids.get(text) {
            return id;
        }
        let id = self.ids.len() as u32;
        self.ids.insert(text.to_owned(), id);
        id
    }

    /// The texts sorted, and for each first-seen id its sorted position.
    fn sorted(self) -> (Vec<String>, Vec<u32>) {
        let mut texts: Vec<(String, u32)> = self.ids.into_iter().collect();
        texts.sort();
        let mut position = vec![0u32; texts.len()];
        for (i, (_, id)) in texts.iter().enumerate() {
            position[*id as usize] = i as u32;
        }
        (texts.into_iter().map(|(t, _)| t).collect(), position)
    }
}

/// Orders integers as text: offset into u64 and zero-padded.
fn sortable_integer(v: i64) -> String {
    format!("{:020}", (v as i128 - i64::MIN as i128) as u64)
}

impl ProductTable {
    /// Reads what `product` compares from the dataset's file. The product
    /// must have been checked against the manifest.
    pub fn build(
        product: &Product,
        dataset: Arc<Dataset>,
        index: Arc<SubjectIndex>,
    ) -> Result<ProductTable, String> {
        let manifest = &dataset.manifest;
        let problems = product.check_against(manifest);
        if let Some(p) = problems.first() {
            return Err(p.to_string());
        }
        let spec = |name: &str| manifest.field(name).expect("checked against the manifest");
        let subject_kind = spec(&product.subject)
            .identifier
            .expect("checked: the subject is an identifier");
        let hasher = RandomState::new();
        let rows = index.row_count as usize;
        let mut names: Vec<&str> = Vec::new();
        for c in &product.claims {
            names.extend(std::iter::once(c.field.as_str()).chain(c.by.as_deref()));
        }
        let region_field = manifest.region_field.as_deref();
        names.extend(region_field);
        names.sort_unstable();
        names.dedup();
        let position = |name: &str| names.iter().position(|n| *n == name).expect("listed");

        let mut values: Vec<Values> = product
            .claims
            .iter()
            .map(|c| match c.test {
                Test::Equals => Values::Hashes(Vec::with_capacity(rows)),
                _ => Values::Numbers(Vec::with_capacity(rows)),
            })
            .collect();
        let mut by_ids: Vec<Option<(Interner, Vec<u32>)>> = product
            .claims
            .iter()
            .map(|c| {
                c.by.as_ref()
                    .map(|_| (Interner::default(), Vec::with_capacity(rows)))
            })
            .collect();
        let mut regions =
            region_field.map(|_| (Interner::default(), Vec::<u32>::with_capacity(rows)));

        crate::source::read_columns(manifest, dataset.path(), &names, |batch: &RecordBatch| {
            let text_of = |name: &str| {
                arrow::compute::cast(batch.column(position(name)), &DataType::Utf8)
                    .map_err(|e| e.to_string())
            };
            for (i, claim) in product.claims.iter().enumerate() {
                match &mut values[i] {
                    Values::Hashes(out) => {
                        let text = text_of(&claim.field)?;
                        let kind = spec(&claim.field).identifier;
                        for v in text.as_string::<i32>().iter() {
                            let canonical = v.and_then(|v| stored_canonical(claim, kind, v));
                            out.push(canonical.map_or(0, |c| hash_of(&hasher, &c)));
                        }
                    }
                    Values::Numbers(out) => {
                        let numbers = arrow::compute::cast(
                            batch.column(position(&claim.field)),
                            &DataType::Float64,
                        )
                        .map_err(|e| e.to_string())?;
                        let numbers = numbers.as_primitive::<Float64Type>();
                        out.extend((0..numbers.len()).map(|r| {
                            if numbers.is_null(r) {
                                f64::NAN
                            } else {
                                numbers.value(r)
                            }
                        }));
                    }
                }
                if let (Some(by), Some((interner, out))) = (&claim.by, &mut by_ids[i]) {
                    let integer = spec(by).field_type == FieldType::Integer;
                    let column = batch.column(position(by));
                    if integer {
                        let ints = arrow::compute::cast(column, &DataType::Int64)
                            .map_err(|e| e.to_string())?;
                        let ints = ints.as_primitive::<arrow::datatypes::Int64Type>();
                        for r in 0..ints.len() {
                            out.push(if ints.is_null(r) {
                                u32::MAX
                            } else {
                                interner.id(&sortable_integer(ints.value(r)))
                            });
                        }
                    } else {
                        let text = text_of(by)?;
                        for v in text.as_string::<i32>().iter() {
                            out.push(v.map_or(u32::MAX, |v| interner.id(v)));
                        }
                    }
                }
            }
            if let (Some(field), Some((interner, out))) = (region_field, &mut regions) {
                let text = text_of(field)?;
                for v in text.as_string::<i32>().iter() {
                    out.push(v.map_or(u32::MAX, |v| interner.id(v)));
                }
            }
            Ok(true)
        })?;

        let claims = product
            .claims
            .iter()
            .zip(values)
            .zip(by_ids)
            .map(|((claim, values), by)| {
                let by = by.map(|(interner, ids)| {
                    // Rank 1 is the smallest value; 0 is NULL.
                    let (_, position) = interner.sorted();
                    ids.into_iter()
                        .map(|id| {
                            if id == u32::MAX {
                                0
                            } else {
                                position[id as usize] + 1
                            }
                        })
                        .collect()
                });
                let field = spec(&claim.field);
                ClaimColumn {
                    values,
                    by,
                    identifier: field.identifier,
                    field_type: field.field_type,
                }
            })
            .collect();
        let regions = match regions {
            None => None,
            Some((interner, ids)) => {
                let (codes, position) = interner.sorted();
                if codes.len() >= usize::from(u16::MAX) {
                    return Err("more than 65,534 distinct regions".into());
                }
                let rows = ids
                    .into_iter()
                    .map(|id| {
                        if id == u32::MAX {
                            u16::MAX
                        } else {
                            position[id as usize] as u16
                        }
                    })
                    .collect();
                Some((codes, rows))
            }
        };
        Ok(ProductTable {
            product: product.clone(),
            dataset,
            index,
            subject_kind,
            regions,
            claims,
            hasher,
        })
    }

    pub fn product(&self) -> &Product {
        &self.product
    }

    pub fn dataset(&self) -> &Dataset {
        &self.dataset
    }

    /// Bytes held in memory, the index included.
    pub fn bytes(&self) -> usize {
        let claims: usize = self
            .claims
            .iter()
            .map(|c| {
                let values = match &c.values {
                    Values::Hashes(v) => v.len() * 8,
                    Values::Numbers(v) => v.len() * 8,
                };
                values + c.by.as_ref().map_or(0, |b| b.len() * 4)
            })
            .sum();
        claims + self.regions.as_ref().map_or(0, |(_, r)| r.len() * 2) + self.index.bytes()
    }

    /// Whether the table was built from this product over this dataset
    /// version, so a reloaded engine can keep it.
    pub fn is_for(&self, product: &Product, dataset: &Dataset) -> bool {
        self.product == *product
            && self.dataset.manifest.name == dataset.manifest.name
            && self.dataset.version == dataset.version
    }
}

/// The canonical text a stored value is compared as, or `None` when it can
/// never match (a date that does not read as one).
fn stored_canonical(claim: &Claim, kind: Option<IdentifierKind>, value: &str) -> Option<String> {
    Some(match claim.compare {
        Compare::Exact if kind.is_some() => canonical_identifier(value),
        Compare::Exact => value.to_owned(),
        Compare::Normalized => normalize_text(value),
        Compare::Date => parse_date(value)?.format("%Y-%m-%d").to_string(),
    })
}

/// A value a caller claims.
#[derive(Debug, Clone, PartialEq)]
pub enum Claimed {
    Text(String),
    Number(f64),
    Bool(bool),
}

/// One subject and its claims, as the caller sent them.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyItem {
    pub subject: String,
    pub claims: Vec<(String, Claimed)>,
}

pub struct VerifyRequest<'a> {
    pub principal: &'a Principal,
    pub purpose: Option<&'a str>,
    pub product: &'a str,
    pub items: &'a [VerifyItem],
    pub now: DateTime<Utc>,
}

/// A claimed value made comparable.
#[derive(Debug, Clone, Copy)]
enum Target {
    Hash(u64),
    Number(f64),
}

/// A request that passed every check, ready to answer.
pub struct Checked<'a> {
    table: &'a ProductTable,
    /// Each item's subject in canonical form and its key.
    subjects: Vec<(String, u128)>,
    /// Each item's claims: (claim position, target).
    claims: Vec<Vec<(usize, Target)>>,
    /// Regions the caller may see, by the table's region number.
    in_scope: Option<Vec<bool>>,
    pub provenance: Provenance,
}

impl<'a> Checked<'a> {
    pub fn product(&self) -> &Product {
        &self.table.product
    }

    /// The subjects in canonical form, in request order.
    pub fn subjects(&self) -> impl Iterator<Item = &str> {
        self.subjects.iter().map(|(s, _)| s.as_str())
    }

    /// The claims asked, by name, once each.
    pub fn claim_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for item in &self.claims {
            for (i, _) in item {
                let name = self.table.product.claims[*i].name.as_str();
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        names
    }

    /// Per item, per claim in request order: (claim name, passed). This is
    /// the only place stored values are compared.
    pub fn answer(&self) -> Vec<Vec<(&str, bool)>> {
        let table = self.table;
        self.subjects
            .iter()
            .zip(&self.claims)
            .map(|((_, key), claims)| {
                let rows = table.index.rows(*key);
                let visible = |r: &&u32| match (&self.in_scope, &table.regions) {
                    (Some(scope), Some((_, regions))) => {
                        let region = regions[**r as usize];
                        region != u16::MAX && scope[usize::from(region)]
                    }
                    _ => true,
                };
                let rows: Vec<usize> = rows.iter().filter(visible).map(|&r| r as usize).collect();
                claims
                    .iter()
                    .map(|&(i, target)| {
                        let claim = &table.product.claims[i];
                        (
                            claim.name.as_str(),
                            evaluate(claim, &table.claims[i], &rows, target),
                        )
                    })
                    .collect()
            })
            .collect()
    }
}

/// The rows `over` looks at: all of them, or for `latest` those with the
/// greatest rank of `by`.
fn selected(column: &ClaimColumn, over: Over, rows: &[usize]) -> Vec<usize> {
    match (over, &column.by) {
        (Over::Latest, Some(by)) => {
            let top = rows.iter().map(|&r| by[r]).max().unwrap_or(0);
            if top == 0 {
                return Vec::new();
            }
            rows.iter().copied().filter(|&r| by[r] == top).collect()
        }
        _ => rows.to_vec(),
    }
}

fn passes(test: Test, value: f64, threshold: f64) -> bool {
    match test {
        Test::Above => value > threshold,
        Test::AtLeast => value >= threshold,
        Test::Below => value < threshold,
        Test::AtMost => value <= threshold,
        Test::Equals => value == threshold,
    }
}

fn evaluate(claim: &Claim, column: &ClaimColumn, rows: &[usize], target: Target) -> bool {
    let rows = selected(column, claim.over, rows);
    match (&column.values, target) {
        (Values::Hashes(hashes), Target::Hash(h)) => match claim.over {
            Over::All => !rows.is_empty() && rows.iter().all(|&r| hashes[r] == h),
            _ => rows.iter().any(|&r| hashes[r] == h),
        },
        (Values::Numbers(numbers), Target::Number(t)) => {
            let values: Vec<f64> = rows
                .iter()
                .map(|&r| numbers[r])
                .filter(|v| !v.is_nan())
                .collect();
            if values.is_empty() {
                return false;
            }
            let test = |v: f64| passes(claim.test, v, t);
            match claim.over {
                Over::Any => values.iter().any(|&v| test(v)),
                Over::All => values.iter().all(|&v| test(v)),
                Over::Sum | Over::Latest => test(values.iter().sum()),
                Over::Max => test(values.iter().copied().fold(f64::MIN, f64::max)),
                Over::Min => test(values.iter().copied().fold(f64::MAX, f64::min)),
            }
        }
        _ => false,
    }
}

impl ProductTable {
    /// Checks a request: the caller's role, purpose and grants, every field's
    /// level, then every subject and claim, before any lookup.
    pub fn check<'a>(
        &'a self,
        request: &VerifyRequest<'_>,
        policy: &veil_policies::Policy,
    ) -> Result<Checked<'a>, VerifyError> {
        let product = &self.product;
        let principal = request.principal;
        if !product.roles.contains(&principal.role) {
            let roles: Vec<&str> = product.roles.iter().map(|r| r.name()).collect();
            return Err(VerifyError::Forbidden(format!(
                "product `{}` is for {}; you are a {}",
                product.name,
                roles.join(" or "),
                principal.role
            )));
        }
        let manifest = &self.dataset.manifest;
        if !product.purposes.is_empty() {
            let Some(purpose) = request
                .purpose
                .filter(|p| product.purposes.iter().any(|q| q == p))
            else {
                return Err(VerifyError::Denied(format!(
                    "product `{}` needs a `purpose`, one of: {}",
                    product.name,
                    product.purposes.join(", ")
                )));
            };
            let granted = product.fields().iter().all(|f| {
                principal
                    .grants
                    .iter()
                    .any(|g| g.covers(&manifest.name, f, Some(purpose), request.now))
            });
            if !granted {
                return Err(VerifyError::Denied(format!(
                    "product `{}` needs a live grant on `{}` for purpose `{purpose}` covering its fields",
                    product.name, manifest.name
                )));
            }
        }
        for field in product.fields() {
            let spec = manifest.field(field).expect("checked against the manifest");
            let level = decide(
                policy,
                manifest,
                spec,
                principal,
                request.purpose,
                request.now,
            )
            .level;
            if level == Level::Deny {
                return Err(VerifyError::Denied(format!(
                    "`{}.{field}` is denied to you, so product `{}` cannot use it",
                    manifest.name, product.name
                )));
            }
        }
        if request.items.is_empty() {
            return Err(VerifyError::BadRequest("no subject to verify".into()));
        }
        if request.items.len() > MAX_BATCH {
            return Err(VerifyError::BadRequest(format!(
                "at most {MAX_BATCH} subjects per request; this one has {}",
                request.items.len()
            )));
        }
        let batch = request.items.len() > 1;
        let mut subjects = Vec::with_capacity(request.items.len());
        let mut claims = Vec::with_capacity(request.items.len());
        for (n, item) in request.items.iter().enumerate() {
            let at = |what: &str| {
                if batch {
                    format!("items[{n}].{what}")
                } else {
                    what.to_owned()
                }
            };
            let canonical = canonical_identifier(&item.subject);
            check_identifier(self.subject_kind, &canonical)
                .map_err(|e| VerifyError::BadRequest(format!("{}: {e}", at("subject"))))?;
            let key = subject_key(&canonical).ok_or_else(|| {
                VerifyError::BadRequest(format!("{}: not an identifier", at("subject")))
            })?;
            if item.claims.is_empty() {
                return Err(VerifyError::BadRequest(format!(
                    "{}: no claim",
                    at("claims")
                )));
            }
            let mut targets = Vec::with_capacity(item.claims.len());
            for (name, value) in &item.claims {
                let Some(i) = product.claims.iter().position(|c| &c.name == name) else {
                    let known: Vec<&str> = product.claims.iter().map(|c| c.name.as_str()).collect();
                    return Err(VerifyError::BadRequest(format!(
                        "{}: product `{}` has no such claim; its claims are {}",
                        at("claims"),
                        product.name,
                        known.join(", ")
                    )));
                };
                if targets.iter().any(|(j, _)| *j == i) {
                    return Err(VerifyError::BadRequest(format!(
                        "{}: claim `{name}` is given twice",
                        at("claims")
                    )));
                }
                let target = self.target(i, value).map_err(|why| {
                    VerifyError::BadRequest(format!("{}: {why}", at(&format!("claims.{name}"))))
                })?;
                targets.push((i, target));
            }
            subjects.push((canonical, key));
            claims.push(targets);
        }
        let in_scope = match (&principal.region, &self.regions) {
            (Some(scope), Some((codes, _))) => {
                Some(codes.iter().map(|c| scope.contains(c)).collect())
            }
            _ => None,
        };
        let provenance = Provenance {
            datasets: vec![manifest.name.clone()],
            providers: vec![manifest.institutions.providing.clone()],
            versions: vec![(manifest.name.clone(), self.dataset.version)],
            retrieved_at: request.now,
        };
        Ok(Checked {
            table: self,
            subjects,
            claims,
            in_scope,
            provenance,
        })
    }

    /// A claimed value in the form the claim's column holds. Errors say
    /// what form is expected and never repeat the value.
    fn target(&self, i: usize, value: &Claimed) -> Result<Target, String> {
        let claim = &self.product.claims[i];
        let column = &self.claims[i];
        if claim.test != Test::Equals {
            return match value {
                Claimed::Number(n) if n.is_finite() => Ok(Target::Number(*n)),
                Claimed::Text(t) => t
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite())
                    .map(Target::Number)
                    .ok_or_else(|| "expected a number".to_string()),
                _ => Err("expected a number".into()),
            };
        }
        let text = match (value, column.field_type) {
            (Claimed::Text(t), FieldType::Integer) => t
                .trim()
                .parse::<i64>()
                .map(|v| v.to_string())
                .map_err(|_| "expected an integer".to_string())?,
            (Claimed::Number(n), FieldType::Integer) if n.fract() == 0.0 && n.abs() < 9.0e15 => {
                (*n as i64).to_string()
            }
            (Claimed::Bool(b), FieldType::Boolean) => b.to_string(),
            (Claimed::Text(t), FieldType::Boolean) => match normalize_text(t).as_str() {
                "true" => "true".into(),
                "false" => "false".into(),
                _ => return Err("expected true or false".into()),
            },
            (Claimed::Text(t), _) => t.clone(),
            _ => {
                return Err(format!(
                    "expected {}",
                    match column.field_type {
                        FieldType::Integer => "an integer",
                        FieldType::Boolean => "true or false",
                        _ => "a string",
                    }
                ));
            }
        };
        if let Some(kind) = column.identifier {
            check_identifier(kind, &canonical_identifier(&text)).map_err(|e| e.to_string())?;
        }
        let canonical = match claim.compare {
            Compare::Date => parse_date(&text)
                .ok_or("expected a date such as 2026-01-31")?
                .format("%Y-%m-%d")
                .to_string(),
            _ => stored_canonical(claim, column.identifier, &text).unwrap_or_default(),
        };
        Ok(Target::Hash(hash_of(&self.hasher, &canonical)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_keys_are_exact_and_case_blind() {
        let a = subject_key("11010519491231002X").unwrap();
        assert_eq!(subject_key("11010519491231002x"), Some(a));
        assert_ne!(subject_key("11010519491231002"), Some(a));
        assert_ne!(
            subject_key("011010519491231002X"),
            Some(a),
            "leading zeros count"
        );
        assert_ne!(subject_key("0"), subject_key("00"));
        assert_eq!(subject_key(""), None);
        assert_eq!(subject_key("1101-05"), None);
        assert_eq!(subject_key(&"Z".repeat(24)).map(|k| k > 0), Some(true));
        assert_eq!(subject_key(&"Z".repeat(25)), None);
    }

    #[test]
    fn thresholds_read_the_rows_they_say() {
        let column = |values: Vec<f64>, by: Option<Vec<u32>>| ClaimColumn {
            values: Values::Numbers(values),
            by,
            identifier: None,
            field_type: FieldType::Float,
        };
        let claim = |test: Test, over: Over| Claim {
            name: "c".into(),
            field: "f".into(),
            test,
            compare: Compare::Exact,
            over,
            by: (over == Over::Latest).then(|| "month".into()),
        };
        // Two accounts over two months: the latest month is rank 2.
        let col = column(
            vec![100.0, 50.0, 0.0, 30.0, f64::NAN],
            Some(vec![1, 1, 2, 2, 2]),
        );
        let rows = [0, 1, 2, 3, 4];
        let t = |n| Target::Number(n);
        assert!(evaluate(
            &claim(Test::Above, Over::Latest),
            &col,
            &rows,
            t(29.0)
        ));
        assert!(!evaluate(
            &claim(Test::Above, Over::Latest),
            &col,
            &rows,
            t(30.0)
        ));
        assert!(evaluate(
            &claim(Test::AtLeast, Over::Latest),
            &col,
            &rows,
            t(30.0)
        ));
        assert!(evaluate(
            &claim(Test::Above, Over::Sum),
            &col,
            &rows,
            t(179.0)
        ));
        assert!(evaluate(
            &claim(Test::Above, Over::Any),
            &col,
            &rows,
            t(99.0)
        ));
        assert!(evaluate(
            &claim(Test::Above, Over::All),
            &col,
            &rows,
            t(-1.0)
        ));
        assert!(!evaluate(
            &claim(Test::Above, Over::All),
            &col,
            &rows,
            t(0.0)
        ));
        assert!(evaluate(
            &claim(Test::AtMost, Over::Min),
            &col,
            &rows,
            t(0.0)
        ));
        assert!(evaluate(
            &claim(Test::Below, Over::Max),
            &col,
            &rows,
            t(101.0)
        ));
        assert!(
            !evaluate(&claim(Test::Above, Over::Max), &col, &[], t(-1.0)),
            "no rows, no truth"
        );
        assert!(
            !evaluate(&claim(Test::Above, Over::Latest), &col, &[4], t(-1.0)),
            "only NULL values"
        );
    }
}
