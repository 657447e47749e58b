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

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use veil_policies::catalog::{FieldType, IdentifierKind};
use veil_policies::verification::{
    Claim, Compare, MAX_BATCH, Over, Product, Test, canonical_identifier, check_identifier,
    normalize_text, parse_date,
};
use veil_policies::{Level, Principal, decide};

use crate::provenance::Provenance;
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
    /// Shared with the product tables built from the index, which keep
    /// the keys and not the rows.
    keys: Arc<Vec<u128>>,
    /// `keys.len() + 1` offsets into `rows`.
    starts: Vec<u32>,
    rows: Vec<u32>,
    /// Rows in the file, with or without an identifier.
    row_count: u32,
}

const INDEX_MAGIC: &[u8; 8] = b"VEILIDX1";

/// The layout of an index file (see [`SubjectIndex::save`]): magic, tag,
/// three counts, then the keys, the subjects' starts and the rows.
struct IndexHeader {
    n_keys: usize,
    row_count: usize,
    keys_at: usize,
    starts_at: usize,
    rows_at: usize,
}

impl IndexHeader {
    /// Reads the header from the first bytes of a file whose body (all but
    /// the checksum) is `body_len` long, built for `tag`.
    fn read(head: &[u8], tag: &str, body_len: usize) -> Result<IndexHeader, String> {
        let truncated = || "the index file is truncated".to_string();
        let u64_at = |at: usize| -> Result<usize, String> {
            head.get(at..at + 8)
                .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
                .ok_or_else(truncated)
        };
        if head.get(..8).ok_or_else(truncated)? != INDEX_MAGIC {
            return Err("not a veil index file".into());
        }
        let tag_len = u64_at(8)?;
        if head.get(16..16 + tag_len) != Some(tag.as_bytes()) {
            return Err("the index was built from another version of the data".into());
        }
        let at = 16 + tag_len;
        let (n_keys, n_rows, row_count) = (u64_at(at)?, u64_at(at + 8)?, u64_at(at + 16)?);
        let keys_at = at + 24;
        let starts_at = n_keys
            .checked_mul(16)
            .and_then(|k| k.checked_add(keys_at))
            .ok_or("bad index size")?;
        let rows_at = starts_at + (n_keys + 1) * 4;
        if n_rows.checked_mul(4).and_then(|r| r.checked_add(rows_at)) != Some(body_len) {
            return Err(truncated());
        }
        Ok(IndexHeader {
            n_keys,
            row_count,
            keys_at,
            starts_at,
            rows_at,
        })
    }
}

impl SubjectIndex {
    /// Reads `field` of the dataset's file in file order.
    pub fn build(dataset: &Dataset, field: &str) -> Result<SubjectIndex, String> {
        /// A key and a row, 20 bytes instead of the 32 an aligned pair takes:
        /// sorting every row of a large table is the peak of registration.
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        #[repr(C, packed)]
        struct Pair {
            key: u128,
            row: u32,
        }
        let mut pairs: Vec<Pair> = Vec::new();
        let mut row: u64 = 0;
        crate::source::read_columns(&dataset.manifest, dataset.path(), &[field], |batch| {
            let text = arrow::compute::cast(batch.column(0), &DataType::Utf8)
                .map_err(|e| e.to_string())?;
            for value in text.as_string::<i32>().iter() {
                let position = u32::try_from(row)
                    .map_err(|_| "more than 4,294,967,295 rows cannot be indexed".to_string())?;
                if let Some(key) = value.and_then(|v| subject_key(v.trim())) {
                    pairs.push(Pair { key, row: position });
                }
                row += 1;
            }
            Ok(true)
        })?;
        pairs.sort_unstable();
        let mut keys = Vec::new();
        let mut starts = Vec::new();
        let mut rows = Vec::with_capacity(pairs.len());
        for (i, pair) in pairs.iter().enumerate() {
            let key = pair.key;
            if keys.last() != Some(&key) {
                keys.push(key);
                starts.push(i as u32);
            }
            rows.push(pair.row);
        }
        drop(pairs);
        starts.push(rows.len() as u32);
        Ok(SubjectIndex {
            keys: Arc::new(keys),
            starts,
            rows,
            row_count: row as u32,
        })
    }

    /// The rows of the subject with `key`, in file order.
    pub fn rows(&self, key: u128) -> &[u32] {
        match self.keys.binary_search(&key) {
            Ok(i) => self.subject_rows(i),
            Err(_) => &[],
        }
    }

    /// The rows of the `i`-th subject in key order.
    fn subject_rows(&self, i: usize) -> &[u32] {
        &self.rows[self.starts[i] as usize..self.starts[i + 1] as usize]
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
        for k in self.keys.iter() {
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
        let h = IndexHeader::read(body, tag, body.len())?;
        let u32s = |b: &[u8]| -> Vec<u32> {
            b.chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect()
        };
        let keys = Arc::new(
            body[h.keys_at..h.starts_at]
                .chunks_exact(16)
                .map(|c| u128::from_le_bytes(c.try_into().expect("16 bytes")))
                .collect(),
        );
        let starts = u32s(&body[h.starts_at..h.rows_at]);
        let rows = u32s(&body[h.rows_at..]);
        let row_count = u32::try_from(h.row_count).map_err(|_| "bad row count")?;
        Ok(SubjectIndex {
            keys,
            starts,
            rows,
            row_count,
        })
    }
}

/// A subject index looked up where it lies on disk: checked against its
/// checksum and tag once, when opened, then searched by positioned reads,
/// so an index of tens of millions of rows costs no memory. Models use it
/// to read only the rows of the subjects they score.
pub struct IndexFile {
    file: std::sync::Mutex<std::fs::File>,
    n_keys: u64,
    keys_at: u64,
    starts_at: u64,
    rows_at: u64,
}

impl IndexFile {
    /// Opens an index written by [`SubjectIndex::save`] for `tag`; any
    /// other tag, a truncated or altered file is an error.
    pub fn open(path: &Path, tag: &str) -> Result<IndexFile, String> {
        let io = |e: std::io::Error| e.kind().to_string();
        let mut file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len < 8 + 8 + 24 + 32 {
            return Err("the index file is truncated".into());
        }
        // The SHA-256 of everything before the last 32 bytes.
        let body_len = len - 32;
        let mut hasher = Sha256::new();
        let mut head = Vec::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut left = body_len;
        while left > 0 {
            let n = (left as usize).min(buf.len());
            file.read_exact(&mut buf[..n]).map_err(io)?;
            hasher.update(&buf[..n]);
            if head.len() < 4096 {
                head.extend_from_slice(&buf[..n.min(4096)]);
            }
            left -= n as u64;
        }
        let mut digest = [0u8; 32];
        file.read_exact(&mut digest).map_err(io)?;
        if hasher.finalize().as_slice() != digest {
            return Err("the index file does not match its checksum".into());
        }
        let h = IndexHeader::read(&head, tag, body_len as usize)?;
        Ok(IndexFile {
            file: std::sync::Mutex::new(file),
            n_keys: h.n_keys as u64,
            keys_at: h.keys_at as u64,
            starts_at: h.starts_at as u64,
            rows_at: h.rows_at as u64,
        })
    }

    /// The rows of the subject with `key`, in file order.
    pub fn rows(&self, key: u128) -> Result<Vec<u32>, String> {
        use std::io::Seek;
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let mut read = |at: u64, buf: &mut [u8]| -> Result<(), String> {
            file.seek(std::io::SeekFrom::Start(at))
                .and_then(|_| file.read_exact(buf))
                .map_err(|e| e.kind().to_string())
        };
        let (mut lo, mut hi) = (0u64, self.n_keys);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let mut b = [0u8; 16];
            read(self.keys_at + mid * 16, &mut b)?;
            match u128::from_le_bytes(b).cmp(&key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    let mut starts = [0u8; 8];
                    read(self.starts_at + mid * 4, &mut starts)?;
                    let from = u32::from_le_bytes(starts[..4].try_into().expect("4 bytes"));
                    let to = u32::from_le_bytes(starts[4..].try_into().expect("4 bytes"));
                    let mut rows = vec![0u8; (to.saturating_sub(from) as usize) * 4];
                    read(self.rows_at + u64::from(from) * 4, &mut rows)?;
                    return Ok(rows
                        .chunks_exact(4)
                        .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
                        .collect());
                }
            }
        }
        Ok(Vec::new())
    }
}

/// How a threshold claim folds a segment's values into one: the fold that
/// decides its test (some row above t ⟺ the largest is; every row above t
/// ⟺ the smallest is, and so on).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fold {
    Max,
    Min,
    Sum,
}

impl Fold {
    fn of(claim: &Claim) -> Fold {
        use Test::*;
        match (claim.over, claim.test) {
            (Over::Max, _) | (Over::Any, Above | AtLeast) | (Over::All, Below | AtMost) => {
                Fold::Max
            }
            (Over::Min, _) | (Over::Any, Below | AtMost) | (Over::All, Above | AtLeast) => {
                Fold::Min
            }
            _ => Fold::Sum,
        }
    }

    /// Adds `v` to `acc`; NaN stands for "no value" on both sides.
    fn add(self, acc: f64, v: f64) -> f64 {
        match (acc.is_nan(), v.is_nan()) {
            (_, true) => acc,
            (true, false) => v,
            (false, false) => match self {
                Fold::Max => acc.max(v),
                Fold::Min => acc.min(v),
                Fold::Sum => acc + v,
            },
        }
    }
}

/// What one claim keeps per segment (a subject's rows in one region).
enum ClaimData {
    /// Threshold tests: the segment's folded value (NaN: none) and, for
    /// `latest`, the rank of the segment's latest `by` (0: none) with the
    /// value folded over those rows only.
    Number {
        fold: Fold,
        value: Vec<f64>,
        rank: Option<Vec<u32>>,
    },
    /// Equality: the segment's distinct hashes, sorted (0 stands for NULL),
    /// or for `latest` those of its latest rows, with their rank. `starts`
    /// is `None` when every segment has exactly one hash (one row per
    /// subject): then segment `s` has hash `s`.
    Set {
        starts: Option<Vec<u32>>,
        hashes: Vec<u64>,
        rank: Option<Vec<u32>>,
    },
}

struct ClaimColumn {
    data: ClaimData,
    /// For validating claimed identifiers.
    identifier: Option<IdentifierKind>,
    field_type: FieldType,
}

/// One product over one dataset version, ready to answer.
///
/// A subject's rows are folded into one *segment* per region at build time,
/// so the table holds a few numbers per subject and region, not per row; a
/// caller with a region scope sees only the segments of its regions.
pub struct ProductTable {
    product: Product,
    dataset: Arc<Dataset>,
    subject_kind: IdentifierKind,
    /// The subjects' keys, sorted (shared with the index).
    keys: Arc<Vec<u128>>,
    /// `keys.len() + 1` offsets into the segments; `None` when every
    /// subject has one segment (subject `i` is segment `i`).
    segments: Option<Vec<u32>>,
    /// The region field's distinct values and each segment's among them
    /// (`u16::MAX` for a NULL region).
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
    texts: Vec<String>,
}

impl Interner {
    fn id(&mut self, text: &str) -> u32 {
        if let Some(&id) = self.ids.get(text) {
            return id;
        }
        let id = self.texts.len() as u32;
        self.ids.insert(text.to_owned(), id);
        self.texts.push(text.to_owned());
        id
    }

    fn text(&self, id: u32) -> &str {
        &self.texts[id as usize]
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

/// "None" among row and segment numbers.
const NONE: u32 = u32::MAX;

/// Each row's value of a column as text, interned, in file order.
fn interned(
    manifest: &veil_policies::DatasetManifest,
    path: &Path,
    field: &str,
    integer: bool,
    interner: &mut Interner,
    rows: usize,
) -> Result<Vec<u32>, String> {
    let mut out = Vec::with_capacity(rows);
    crate::source::read_columns(manifest, path, &[field], |batch| {
        let column = batch.column(0);
        if integer {
            let ints = arrow::compute::cast(column, &DataType::Int64).map_err(|e| e.to_string())?;
            let ints = ints.as_primitive::<arrow::datatypes::Int64Type>();
            out.extend((0..ints.len()).map(|r| {
                if ints.is_null(r) {
                    NONE
                } else {
                    interner.id(&sortable_integer(ints.value(r)))
                }
            }));
        } else {
            let text = arrow::compute::cast(column, &DataType::Utf8).map_err(|e| e.to_string())?;
            out.extend(
                text.as_string::<i32>()
                    .iter()
                    .map(|v| v.map_or(NONE, |v| interner.id(v))),
            );
        }
        Ok(true)
    })?;
    Ok(out)
}

impl ProductTable {
    /// Reads what `product` compares from the dataset's file and folds each
    /// subject's rows into segments. The index must be of the product's
    /// subject field.
    pub fn build(
        product: &Product,
        dataset: Arc<Dataset>,
        index: &SubjectIndex,
    ) -> Result<ProductTable, String> {
        let manifest = &dataset.manifest;
        if let Some(p) = product.check_against(manifest).first() {
            return Err(p.to_string());
        }
        determined_claims(product, &dataset)?;
        let spec = |name: &str| manifest.field(name).expect("checked against the manifest");
        let subject_kind = spec(&product.subject)
            .identifier
            .expect("checked: the subject is an identifier");
        let rows = index.row_count as usize;
        let path = dataset.path();

        // Segments: per subject, one per region its rows are in.
        let mut region_names = Interner::default();
        let region_of_row = match &manifest.region_field {
            Some(field) => Some(interned(
                manifest,
                path,
                field,
                false,
                &mut region_names,
                rows,
            )?),
            None => None,
        };
        if region_names.texts.len() >= usize::from(u16::MAX) {
            return Err("more than 65,534 distinct regions".into());
        }
        let mut seg_of_row = vec![NONE; rows];
        let mut segments = Vec::with_capacity(index.keys.len() + 1);
        let mut seg_region: Vec<u32> = Vec::new();
        let mut distinct: Vec<u32> = Vec::new();
        for i in 0..index.keys.len() {
            segments.push(seg_region.len() as u32);
            let subject_rows = index.subject_rows(i);
            distinct.clear();
            for &r in subject_rows {
                let region = region_of_row.as_ref().map_or(0, |g| g[r as usize]);
                if !distinct.contains(&region) {
                    distinct.push(region);
                }
            }
            let first = seg_region.len() as u32;
            seg_region.extend_from_slice(&distinct);
            for &r in subject_rows {
                let region = region_of_row.as_ref().map_or(0, |g| g[r as usize]);
                let at = distinct.iter().position(|d| *d == region).expect("listed");
                seg_of_row[r as usize] = first + at as u32;
            }
        }
        segments.push(seg_region.len() as u32);
        drop(region_of_row);
        let n_segs = seg_region.len();

        // Claims, one pass over the file each.
        let hasher = RandomState::new();
        let mut claims = Vec::with_capacity(product.claims.len());
        for claim in &product.claims {
            let field = spec(&claim.field);
            // For `latest`: each row's `by`, interned; each segment's latest.
            let mut by_names = Interner::default();
            let by_of_row = match &claim.by {
                Some(by) => Some(interned(
                    manifest,
                    path,
                    by,
                    spec(by).field_type == FieldType::Integer,
                    &mut by_names,
                    rows,
                )?),
                None => None,
            };
            let mut top = by_of_row.as_ref().map(|_| vec![NONE; n_segs]);
            if let (Some(by), Some(top)) = (&by_of_row, &mut top) {
                for (r, &id) in by.iter().enumerate() {
                    let s = seg_of_row[r];
                    if s == NONE || id == NONE {
                        continue;
                    }
                    let t = &mut top[s as usize];
                    if *t == NONE || by_names.text(id) > by_names.text(*t) {
                        *t = id;
                    }
                }
            }
            // Whether row `r` counts for its segment: for `latest`, only
            // the rows at the segment's latest `by`.
            let counts = |r: usize, s: u32| match (&by_of_row, &top) {
                (Some(by), Some(top)) => by[r] != NONE && by[r] == top[s as usize],
                _ => true,
            };
            let rank = |top: Option<Vec<u32>>, by_names: Interner| {
                top.map(|top| {
                    let (_, position) = by_names.sorted();
                    top.into_iter()
                        .map(|id| {
                            if id == NONE {
                                0
                            } else {
                                position[id as usize] + 1
                            }
                        })
                        .collect::<Vec<u32>>()
                })
            };
            let data = if claim.test == Test::Equals {
                let mut hash_of_row = Vec::with_capacity(rows);
                crate::source::read_columns(manifest, path, &[&claim.field], |batch| {
                    let text = arrow::compute::cast(batch.column(0), &DataType::Utf8)
                        .map_err(|e| e.to_string())?;
                    hash_of_row.extend(text.as_string::<i32>().iter().map(|v| {
                        v.and_then(|v| stored_canonical(claim, field.identifier, v))
                            .map_or(0, |c| hash_of(&hasher, &c))
                    }));
                    Ok(true)
                })?;
                let mut starts = Vec::with_capacity(n_segs + 1);
                let mut hashes = Vec::new();
                let mut set = Vec::new();
                for i in 0..index.keys.len() {
                    let subject_rows = index.subject_rows(i);
                    for s in segments[i]..segments[i + 1] {
                        starts.push(hashes.len() as u32);
                        set.clear();
                        set.extend(
                            subject_rows
                                .iter()
                                .map(|&r| r as usize)
                                .filter(|&r| seg_of_row[r] == s && counts(r, s))
                                .map(|r| hash_of_row[r]),
                        );
                        set.sort_unstable();
                        set.dedup();
                        hashes.extend_from_slice(&set);
                    }
                }
                starts.push(hashes.len() as u32);
                let one_each = starts.windows(2).all(|w| w[1] - w[0] == 1);
                ClaimData::Set {
                    starts: (!one_each).then_some(starts),
                    hashes,
                    rank: rank(top, by_names),
                }
            } else {
                let fold = Fold::of(claim);
                let mut value = vec![f64::NAN; n_segs];
                let mut row = 0usize;
                crate::source::read_columns(manifest, path, &[&claim.field], |batch| {
                    let numbers = arrow::compute::cast(batch.column(0), &DataType::Float64)
                        .map_err(|e| e.to_string())?;
                    let numbers = numbers.as_primitive::<Float64Type>();
                    for i in 0..numbers.len() {
                        let s = seg_of_row[row];
                        if s != NONE && !numbers.is_null(i) && counts(row, s) {
                            let v = &mut value[s as usize];
                            *v = fold.add(*v, numbers.value(i));
                        }
                        row += 1;
                    }
                    Ok(true)
                })?;
                ClaimData::Number {
                    fold,
                    value,
                    rank: rank(top, by_names),
                }
            };
            claims.push(ClaimColumn {
                data,
                identifier: field.identifier,
                field_type: field.field_type,
            });
        }
        let regions = manifest.region_field.as_ref().map(|_| {
            let (names, position) = region_names.sorted();
            let segs = seg_region
                .iter()
                .map(|&id| {
                    if id == NONE {
                        u16::MAX
                    } else {
                        position[id as usize] as u16
                    }
                })
                .collect();
            (names, segs)
        });
        let one_each = segments.windows(2).all(|w| w[1] - w[0] == 1);
        Ok(ProductTable {
            product: product.clone(),
            dataset,
            subject_kind,
            keys: index.keys.clone(),
            segments: (!one_each).then_some(segments),
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

    /// Bytes held in memory, the subjects' keys included.
    pub fn bytes(&self) -> usize {
        let claims: usize = self
            .claims
            .iter()
            .map(|c| match &c.data {
                ClaimData::Number { value, rank, .. } => {
                    value.len() * 8 + rank.as_ref().map_or(0, |r| r.len() * 4)
                }
                ClaimData::Set {
                    starts,
                    hashes,
                    rank,
                } => {
                    starts.as_ref().map_or(0, |s| s.len() * 4)
                        + hashes.len() * 8
                        + rank.as_ref().map_or(0, |r| r.len() * 4)
                }
            })
            .sum();
        claims
            + self.keys.len() * 16
            + self.segments.as_ref().map_or(0, |s| s.len() * 4)
            + self.regions.as_ref().map_or(0, |(_, r)| r.len() * 2)
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
        let mut visible = Vec::new();
        self.subjects
            .iter()
            .zip(&self.claims)
            .map(|((_, key), claims)| {
                visible.clear();
                if let Ok(i) = table.keys.binary_search(key) {
                    let segments = match &table.segments {
                        Some(starts) => starts[i] as usize..starts[i + 1] as usize,
                        None => i..i + 1,
                    };
                    visible.extend(
                        segments.filter(|&s| match (&self.in_scope, &table.regions) {
                            (Some(scope), Some((_, regions))) => {
                                regions[s] != u16::MAX && scope[usize::from(regions[s])]
                            }
                            _ => true,
                        }),
                    );
                }
                claims
                    .iter()
                    .map(|&(i, target)| {
                        let claim = &table.product.claims[i];
                        let passed = evaluate(claim, &table.claims[i].data, &visible, target);
                        (claim.name.as_str(), passed)
                    })
                    .collect()
            })
            .collect()
    }
}

/// For `latest`: the segments whose latest `by` is the subject's latest.
fn latest(rank: &[u32], segments: &[usize]) -> Vec<usize> {
    let top = segments.iter().map(|&s| rank[s]).max().unwrap_or(0);
    if top == 0 {
        return Vec::new();
    }
    segments
        .iter()
        .copied()
        .filter(|&s| rank[s] == top)
        .collect()
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

/// One claim over the segments the caller sees.
fn evaluate(claim: &Claim, data: &ClaimData, segments: &[usize], target: Target) -> bool {
    match (data, target) {
        (ClaimData::Number { fold, value, rank }, Target::Number(t)) => {
            let (segments, fold) = match rank {
                Some(rank) => (latest(rank, segments), Fold::Sum),
                None => (segments.to_vec(), *fold),
            };
            let v = segments
                .iter()
                .fold(f64::NAN, |acc, &s| fold.add(acc, value[s]));
            !v.is_nan() && passes(claim.test, v, t)
        }
        (
            ClaimData::Set {
                starts,
                hashes,
                rank,
            },
            Target::Hash(h),
        ) => {
            let segments = match rank {
                Some(rank) => latest(rank, segments),
                None => segments.to_vec(),
            };
            let set = |s: usize| match starts {
                Some(starts) => &hashes[starts[s] as usize..starts[s + 1] as usize],
                None => std::slice::from_ref(&hashes[s]),
            };
            match claim.over {
                Over::All => !segments.is_empty() && segments.iter().all(|&s| set(s) == [h]),
                _ => segments.iter().any(|&s| set(s).binary_search(&h).is_ok()),
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
            let n = match value {
                Claimed::Number(n) if n.is_finite() => *n,
                Claimed::Text(t) => t
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite())
                    .ok_or_else(|| "expected a number".to_string())?,
                _ => return Err("expected a number".into()),
            };
            let bounds = self
                .dataset
                .manifest
                .field(&claim.field)
                .and_then(|f| f.bounds);
            threshold_decides(claim.test, claim.over, n, bounds)?;
            return Ok(Target::Number(n));
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

/// What a subject identifier itself says about its holder: for an identity
/// number the birth date, the sex (the sequence's parity) and the address
/// region at three levels; for a credit code the registration authority
/// and kind, and the region. Keys, one per feature, for one identifier.
const CITIZEN_FEATURES: [&str; 5] = ["birth date", "sex", "province", "prefecture", "county"];
const CREDIT_FEATURES: [&str; 5] = [
    "registration authority",
    "kind of organisation",
    "province",
    "prefecture",
    "county",
];

fn identifier_features(kind: IdentifierKind, id: &str) -> Option<[String; 5]> {
    use veil_policies::identifiers::{CitizenId, CreditCode};
    match kind {
        IdentifierKind::CitizenId => {
            let c = CitizenId::parse(id).ok()?;
            let code = format!("{:06}", c.address_code());
            Some([
                c.birth_date().format("%Y-%m-%d").to_string(),
                format!("{:?}", c.sex()),
                code[..2].to_owned(),
                code[..4].to_owned(),
                code,
            ])
        }
        IdentifierKind::CreditCode => {
            let c = CreditCode::parse(id).ok()?;
            let text = c.as_str();
            let code = format!("{:06}", c.division_code());
            Some([
                text[..1].to_owned(),
                text[..2].to_owned(),
                code[..2].to_owned(),
                code[..4].to_owned(),
                code,
            ])
        }
        _ => None,
    }
}

/// Refuses a product with an equality claim the subject identifier
/// predicts. An unknown subject fails every claim, so a claim whose value a
/// caller can guess from the identifier (its birth date, sex or region) or
/// that most subjects share matches for most existing subjects and for no
/// made-up one: each answer says whether a guessed identifier exists.
/// Checked on the data: the claim is predicted when the best guess from one
/// feature of the identifier (the most common value per key, where keys
/// repeat at least ten times on average, so that a per-row unique field is
/// not "predicted" by a per-row unique key) or the feature itself is right
/// for half of the rows or more.
pub fn determined_claims(product: &Product, dataset: &Dataset) -> Result<(), String> {
    let manifest = &dataset.manifest;
    let Some(kind) = manifest.field(&product.subject).and_then(|f| f.identifier) else {
        return Ok(());
    };
    if !matches!(kind, IdentifierKind::CitizenId | IdentifierKind::CreditCode) {
        return Ok(());
    }
    for claim in product.claims.iter().filter(|c| c.test == Test::Equals) {
        // Per feature: key -> (value -> rows), and rows equal to the key.
        let mut by_feature: Vec<HashMap<String, HashMap<String, u32>>> = vec![HashMap::new(); 5];
        let mut equal = [0u64; 5];
        let mut rows = 0u64;
        crate::source::read_columns(
            manifest,
            dataset.path(),
            &[product.subject.as_str(), claim.field.as_str()],
            |batch| {
                let ids = arrow::compute::cast(batch.column(0), &DataType::Utf8)
                    .map_err(|e| e.to_string())?;
                let values = arrow::compute::cast(batch.column(1), &DataType::Utf8)
                    .map_err(|e| e.to_string())?;
                for (id, value) in ids
                    .as_string::<i32>()
                    .iter()
                    .zip(values.as_string::<i32>().iter())
                {
                    let (Some(id), Some(value)) = (id, value) else {
                        continue;
                    };
                    let Some(features) = identifier_features(kind, &canonical_identifier(id))
                    else {
                        continue;
                    };
                    let value = match claim.compare {
                        Compare::Date => parse_date(value)
                            .map(|d| d.format("%Y-%m-%d").to_string())
                            .unwrap_or_default(),
                        _ => normalize_text(value),
                    };
                    rows += 1;
                    for (i, key) in features.into_iter().enumerate() {
                        if key == value {
                            equal[i] += 1;
                        }
                        *by_feature[i]
                            .entry(key)
                            .or_default()
                            .entry(value.clone())
                            .or_default() += 1;
                    }
                }
                Ok(true)
            },
        )?;
        if rows < 20 {
            continue;
        }
        let names = match kind {
            IdentifierKind::CitizenId => CITIZEN_FEATURES,
            _ => CREDIT_FEATURES,
        };
        for (i, keys) in by_feature.iter().enumerate() {
            let dominant: u64 = keys
                .values()
                .map(|values| u64::from(values.values().copied().max().unwrap_or(0)))
                .sum();
            let repeats = rows >= 10 * keys.len() as u64;
            let function = repeats && dominant * 2 >= rows;
            if function || equal[i] * 2 >= rows {
                let feature = names[i];
                return Err(format!(
                    "claim `{}` is predicted by the subject's identifier (its {feature}) for most subjects: every answer would mostly say whether a guessed identifier exists; drop the claim",
                    claim.name
                ));
            }
        }
    }
    Ok(())
}

/// A threshold must decide something about the subject's value: inside the
/// field's declared bounds, where some values pass and some do not. At a
/// value every row passes (or none can), the answer only says whether the
/// subject has rows: a membership test. Sums of several rows may exceed the
/// upper bound, so only the lower one holds for them. The value is never
/// repeated.
fn threshold_decides(
    test: Test,
    over: Over,
    n: f64,
    bounds: Option<(f64, f64)>,
) -> Result<(), String> {
    let Some((lo, hi)) = bounds else {
        return Err(
            "this claim's field has no declared bounds: no threshold can be checked".into(),
        );
    };
    let summed = matches!(over, Over::Sum | Over::Latest);
    let hi = if summed { f64::INFINITY } else { hi };
    let decides = match test {
        // Some values in [lo, hi] pass and some fail.
        Test::Above => lo <= n && n < hi,
        Test::AtLeast => lo < n && n <= hi,
        Test::Below => lo < n && n <= hi,
        Test::AtMost => lo <= n && n < hi,
        Test::Equals => true,
    };
    if decides {
        Ok(())
    } else {
        Err(format!(
            "expected a threshold inside the field's declared bounds [{lo}, {}], where it decides something",
            if summed {
                "no upper bound for a sum".to_owned()
            } else {
                hi.to_string()
            }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_decide_only_inside_the_declared_bounds() {
        let bounds = Some((0.0, 20_000.0));
        // Outside, or where every row passes or none can: a membership test.
        for (test, n) in [
            (Test::Above, -1.0),
            (Test::Above, 20_000.0),
            (Test::AtLeast, 0.0),
            (Test::AtLeast, 20_001.0),
            (Test::Below, 0.0),
            (Test::AtMost, 20_000.0),
            (Test::AtMost, -0.5),
        ] {
            let e = threshold_decides(test, Over::Max, n, bounds).unwrap_err();
            assert!(e.contains("declared bounds"), "{e}");
            assert!(
                !e.contains(&format!("{n}")) || n == 0.0 || n == 20_000.0,
                "{e}"
            );
        }
        for (test, n) in [
            (Test::Above, 0.0),
            (Test::Above, 19_999.0),
            (Test::AtLeast, 0.5),
            (Test::Below, 20_000.0),
            (Test::AtMost, 0.0),
        ] {
            threshold_decides(test, Over::Max, n, bounds).unwrap();
        }
        // A sum of rows may pass the upper bound; no bounds, no threshold.
        threshold_decides(Test::Above, Over::Sum, 50_000.0, bounds).unwrap();
        assert!(threshold_decides(Test::Above, Over::Sum, -1.0, bounds).is_err());
        assert!(threshold_decides(Test::Above, Over::Max, 1.0, None).is_err());
    }

    #[test]
    fn claims_the_identifier_determines_are_refused_on_the_data() {
        let engine = crate::policy::testing::engine();
        let population = engine.dataset("population").unwrap();
        let product = |field: &str, compare: &str| {
            let mut p = veil_policies::Policy::default_preset()
                .product("person_identity")
                .unwrap()
                .clone();
            p.claims = vec![Claim {
                name: field.to_owned(),
                field: field.to_owned(),
                test: Test::Equals,
                compare: compare.parse().unwrap(),
                over: Over::Any,
                by: None,
            }];
            p
        };
        // The birth date, the sex and the address region are in the number.
        for (field, compare, feature) in [
            ("birth_date", "date", "birth date"),
            ("sex", "normalized", "sex"),
            ("county_code", "exact", "county"),
        ] {
            let e = determined_claims(&product(field, compare), &population).expect_err(field);
            assert!(e.contains(feature), "{field}: {e}");
        }
        // What the number does not say stays a claim.
        for field in ["name", "phone"] {
            determined_claims(&product(field, "normalized"), &population).unwrap();
        }
    }

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

    /// Folding rows into segments and segments into an answer gives what
    /// reading every visible row would: random rows, random segments, every
    /// test and row selection.
    #[test]
    fn segments_answer_as_the_rows_would() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let tests = [Test::Above, Test::AtLeast, Test::Below, Test::AtMost];
        let overs = [
            Over::Any,
            Over::All,
            Over::Sum,
            Over::Max,
            Over::Min,
            Over::Latest,
        ];
        for _ in 0..400 {
            // Rows: (segment, value or NaN, rank of `by` or 0 for NULL).
            let n_segs = rng.random_range(1..4usize);
            let rows: Vec<(usize, f64, u32)> = (0..rng.random_range(0..7))
                .map(|_| {
                    let v = if rng.random_range(0..5) == 0 {
                        f64::NAN
                    } else {
                        f64::from(rng.random_range(0..5u8))
                    };
                    (rng.random_range(0..n_segs), v, rng.random_range(0..4u32))
                })
                .collect();
            let visible: Vec<usize> = (0..n_segs).filter(|_| rng.random_range(0..4) > 0).collect();
            let t = f64::from(rng.random_range(0..5u8));
            for test in tests {
                for over in overs {
                    let claim = Claim {
                        name: "c".into(),
                        field: "f".into(),
                        test,
                        compare: Compare::Exact,
                        over,
                        by: (over == Over::Latest).then(|| "month".into()),
                    };
                    // Each row as it would be read.
                    let seen: Vec<&(usize, f64, u32)> =
                        rows.iter().filter(|r| visible.contains(&r.0)).collect();
                    let chosen: Vec<&&(usize, f64, u32)> = if over == Over::Latest {
                        let top = seen.iter().map(|r| r.2).max().unwrap_or(0);
                        seen.iter().filter(|r| top > 0 && r.2 == top).collect()
                    } else {
                        seen.iter().collect()
                    };
                    let values: Vec<f64> =
                        chosen.iter().map(|r| r.1).filter(|v| !v.is_nan()).collect();
                    let p = |v: f64| passes(test, v, t);
                    let expected = !values.is_empty()
                        && match over {
                            Over::Any => values.iter().any(|&v| p(v)),
                            Over::All => values.iter().all(|&v| p(v)),
                            Over::Sum | Over::Latest => p(values.iter().sum()),
                            Over::Max => p(values.iter().copied().fold(f64::MIN, f64::max)),
                            Over::Min => p(values.iter().copied().fold(f64::MAX, f64::min)),
                        };
                    // The same rows folded per segment.
                    let fold = Fold::of(&claim);
                    let mut value = vec![f64::NAN; n_segs];
                    let mut rank = vec![0u32; n_segs];
                    for r in &rows {
                        rank[r.0] = rank[r.0].max(r.2);
                    }
                    for r in &rows {
                        if over != Over::Latest || (r.2 > 0 && r.2 == rank[r.0]) {
                            value[r.0] = fold.add(value[r.0], r.1);
                        }
                    }
                    let data = ClaimData::Number {
                        fold,
                        value,
                        rank: (over == Over::Latest).then_some(rank),
                    };
                    let got = evaluate(&claim, &data, &visible, Target::Number(t));
                    assert_eq!(
                        got, expected,
                        "{test:?} {over:?} t={t} rows={rows:?} visible={visible:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn equality_sets_answer_as_the_rows_would() {
        let claim = |over: Over| Claim {
            name: "c".into(),
            field: "f".into(),
            test: Test::Equals,
            compare: Compare::Exact,
            over,
            by: (over == Over::Latest).then(|| "month".into()),
        };
        // Two segments: {5} at rank 2 and {0 (NULL), 7} at rank 1.
        let data = |rank: bool| ClaimData::Set {
            starts: Some(vec![0, 1, 3]),
            hashes: vec![5, 0, 7],
            rank: rank.then(|| vec![2, 1]),
        };
        let h = Target::Hash;
        assert!(evaluate(&claim(Over::Any), &data(false), &[0, 1], h(7)));
        assert!(
            !evaluate(&claim(Over::Any), &data(false), &[0], h(7)),
            "segment 1 is not visible"
        );
        assert!(evaluate(&claim(Over::All), &data(false), &[0], h(5)));
        assert!(!evaluate(&claim(Over::All), &data(false), &[0, 1], h(5)));
        assert!(
            !evaluate(&claim(Over::All), &data(false), &[], h(5)),
            "no rows, no truth"
        );
        assert!(evaluate(&claim(Over::Latest), &data(true), &[0, 1], h(5)));
        assert!(
            !evaluate(&claim(Over::Latest), &data(true), &[0, 1], h(7)),
            "7 is not in the latest month"
        );
        assert!(
            evaluate(&claim(Over::Latest), &data(true), &[1], h(7)),
            "but it is the latest the caller sees"
        );
    }
}
