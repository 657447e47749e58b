//! The data file behind a catalog entry: where it is, whether it matches its
//! manifest, and its Arrow schema.
//!
//! A manifest may name only a file below its own directory. An operator can
//! name any file explicitly instead (`--file`), which is their decision and
//! not the manifest author's. Problems name fields, columns and line numbers,
//! never cell values.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sha2::{Digest, Sha256};
use veil_policies::catalog::FileFormat;
use veil_policies::{DatasetManifest, FieldType, Problem, Problems};

/// A data file that matches its manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedSource {
    /// Absolute and free of symbolic links.
    pub path: PathBuf,
    pub size: u64,
    /// Hex SHA-256 of the file's bytes, for provenance.
    pub sha256: String,
    pub rows: u64,
    /// Whether every row has a privacy unit and no unit has two rows: then a
    /// count of rows is a count of units wherever no join can repeat them.
    pub unique_units: bool,
}

/// Resolves the data file of `manifest` (found in `manifest_dir`), or the
/// operator's explicit `file`, and checks it against the manifest.
pub fn check_source(
    manifest: &DatasetManifest,
    manifest_dir: &Path,
    file: Option<&Path>,
) -> Result<CheckedSource, Problems> {
    let path = resolve(manifest, manifest_dir, file).map_err(|p| Problems(vec![p]))?;
    let problem = |m: String| Problems(vec![Problem::new("file", m)]);
    let size = std::fs::metadata(&path)
        .map_err(|e| problem(format!("cannot read the data file: {}", e.kind())))?
        .len();
    let rows = match manifest.format {
        FileFormat::Parquet => check_parquet(manifest, &path)?,
        FileFormat::Csv => check_csv(manifest, &path)?,
    };
    let sha256 = file_sha256(&path)
        .map_err(|e| problem(format!("cannot read the data file: {}", e.kind())))?;
    let unique_units = units_are_unique(manifest, &path)
        .map_err(|e| problem(format!("cannot read the privacy unit: {e}")))?;
    Ok(CheckedSource {
        path,
        size,
        unique_units,
        sha256,
        rows,
    })
}

fn resolve(
    manifest: &DatasetManifest,
    manifest_dir: &Path,
    file: Option<&Path>,
) -> Result<PathBuf, Problem> {
    let problem = |m: &str| Problem::new("dataset", m.to_owned());
    if let Some(file) = file {
        let path = file
            .canonicalize()
            .map_err(|_| Problem::new("file", "the file given with --file does not exist"))?;
        return if path.is_file() {
            Ok(path)
        } else {
            Err(Problem::new(
                "file",
                "the file given with --file is not a regular file",
            ))
        };
    }
    veil_policies::catalog::check_relative_path(&manifest.path)
        .map_err(|why| problem(&format!("`path` {why}")))?;
    let dir = manifest_dir
        .canonicalize()
        .map_err(|_| problem("the manifest's directory cannot be read"))?;
    let path = dir
        .join(&manifest.path)
        .canonicalize()
        .map_err(|_| problem("`path` names a file that does not exist next to the manifest"))?;
    if !path.starts_with(&dir) {
        return Err(problem(
            "`path` leads outside the manifest's directory through a symbolic link",
        ));
    }
    if !path.is_file() {
        return Err(problem("`path` does not name a regular file"));
    }
    Ok(path)
}

fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut reader = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Whether an Arrow type belongs to a manifest type's family.
pub fn type_matches(declared: FieldType, actual: &DataType) -> bool {
    use DataType as D;
    match declared {
        FieldType::String => matches!(actual, D::Utf8 | D::LargeUtf8 | D::Utf8View),
        FieldType::Integer => actual.is_integer(),
        FieldType::Float => actual.is_floating(),
        FieldType::Decimal => matches!(
            actual,
            D::Decimal32(..) | D::Decimal64(..) | D::Decimal128(..) | D::Decimal256(..)
        ),
        FieldType::Boolean => matches!(actual, D::Boolean),
        FieldType::Date => matches!(actual, D::Date32 | D::Date64),
        FieldType::Timestamp => matches!(actual, D::Timestamp(..)),
    }
}

/// The Arrow type a CSV column of a manifest type is read as.
fn csv_type(declared: FieldType) -> DataType {
    match declared {
        FieldType::String => DataType::Utf8,
        FieldType::Integer => DataType::Int64,
        FieldType::Float => DataType::Float64,
        FieldType::Decimal => DataType::Decimal128(38, 10),
        FieldType::Boolean => DataType::Boolean,
        FieldType::Date => DataType::Date32,
        FieldType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
    }
}

/// The schema a CSV dataset is read with: the manifest's fields in the
/// manifest's order, which registration has checked is the file's order.
pub fn csv_schema(manifest: &DatasetManifest) -> SchemaRef {
    Arc::new(Schema::new(
        manifest
            .fields
            .iter()
            .map(|f| Field::new(&f.name, csv_type(f.field_type), true))
            .collect::<Vec<_>>(),
    ))
}

/// Compares the file's columns with the declared fields, one problem per
/// mismatch: missing columns, unclassified columns, wrong types.
fn compare_columns(
    manifest: &DatasetManifest,
    columns: &[(String, Option<DataType>)],
) -> Vec<Problem> {
    let mut problems = Vec::new();
    for field in &manifest.fields {
        match columns.iter().find(|(name, _)| name == &field.name) {
            None => problems.push(Problem::new(
                format!("field `{}`", field.name),
                "is declared but the file has no such column",
            )),
            Some((_, Some(actual))) if !type_matches(field.field_type, actual) => {
                problems.push(Problem::new(
                    format!("field `{}`", field.name),
                    format!(
                        "is declared `{}` but the file stores {actual}",
                        field.field_type
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    for (name, _) in columns {
        if manifest.field(name).is_none() {
            problems.push(Problem::new(
                format!("column `{name}`"),
                "is in the file but not in the manifest: every field must be classified and graded (Art. 11)",
            ));
        }
    }
    problems
}

fn check_parquet(manifest: &DatasetManifest, path: &Path) -> Result<u64, Problems> {
    let problem = |m: &str| Problems(vec![Problem::new("file", m.to_owned())]);
    let file = File::open(path).map_err(|_| problem("cannot open the data file"))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|_| problem("the file is not a readable Parquet file"))?;
    let columns: Vec<(String, Option<DataType>)> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), Some(f.data_type().clone())))
        .collect();
    let problems = compare_columns(manifest, &columns);
    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    Ok(builder.metadata().file_metadata().num_rows().max(0) as u64)
}

fn check_csv(manifest: &DatasetManifest, path: &Path) -> Result<u64, Problems> {
    use arrow::csv::ReaderBuilder;
    use arrow::csv::reader::Format;
    let problem = |m: String| Problems(vec![Problem::new("file", m)]);
    let open = || {
        File::open(path).map_err(|e| problem(format!("cannot open the data file: {}", e.kind())))
    };
    let (header, _) = Format::default()
        .with_header(true)
        .infer_schema(open()?, Some(0))
        .map_err(|_| problem("the file is not readable CSV with a header line".into()))?;
    let names: Vec<(String, Option<DataType>)> = header
        .fields()
        .iter()
        .map(|f| (f.name().clone(), None))
        .collect();
    let mut problems = compare_columns(manifest, &names);
    let declared: Vec<&str> = manifest.fields.iter().map(|f| f.name.as_str()).collect();
    let actual: Vec<&str> = names.iter().map(|(n, _)| n.as_str()).collect();
    if problems.is_empty() && declared != actual {
        problems.push(Problem::new(
            "dataset",
            format!(
                "the fields must be declared in the file's column order: {}",
                actual.join(", ")
            ),
        ));
    }
    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    // Read every cell as text, then convert column by column, so a cell that
    // does not fit its declared type is reported by line, never by value.
    let text = Arc::new(Schema::new(
        header
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let reader = ReaderBuilder::new(text)
        .with_header(true)
        .with_batch_size(64 * 1024)
        .build(open()?)
        .map_err(|_| problem("the file is not readable CSV".into()))?;
    let mut rows = 0u64;
    let mut bad: Vec<Option<u64>> = vec![None; manifest.fields.len()];
    for batch in reader {
        let batch = batch.map_err(|_| {
            problem(format!(
                "the CSV is malformed near line {} (a row with the wrong number of cells?)",
                rows + 2
            ))
        })?;
        for (i, field) in manifest.fields.iter().enumerate() {
            if bad[i].is_some() {
                continue;
            }
            let column: &ArrayRef = batch.column(i);
            let converted = cast_with_options(
                column,
                &csv_type(field.field_type),
                &CastOptions {
                    safe: true,
                    ..Default::default()
                },
            )
            .map_err(|_| {
                problem(format!(
                    "field `{}` cannot be read as `{}`",
                    field.name, field.field_type
                ))
            })?;
            if let Some(row) =
                (0..column.len()).find(|&r| column.is_valid(r) && converted.is_null(r))
            {
                bad[i] = Some(rows + row as u64 + 2); // 1-based, after the header line
            }
        }
        rows += batch.num_rows() as u64;
    }
    let problems: Vec<Problem> = manifest
        .fields
        .iter()
        .zip(&bad)
        .filter_map(|(field, line)| {
            line.map(|line| {
                Problem::new(
                    format!("field `{}`", field.name),
                    format!("is declared `{}` but line {line} of the file holds a value that is not one", field.field_type),
                )
            })
        })
        .collect();
    if problems.is_empty() {
        Ok(rows)
    } else {
        Err(Problems(problems))
    }
}

/// Whether the file has one row per privacy unit: every row has a unit (none
/// is NULL) and no unit appears in two rows. Units are
/// kept as 128-bit hashes (two SipHash keys), so memory stays at 16 bytes per
/// unit, and the scan stops at the first repeat. A hash collision could only
/// make a unique file look repeated, which is the safe direction.
fn units_are_unique(manifest: &DatasetManifest, path: &Path) -> Result<bool, String> {
    use std::hash::{BuildHasher, Hash, Hasher};
    let keys = (
        std::collections::hash_map::RandomState::new(),
        std::collections::hash_map::RandomState::new(),
    );
    let mut seen = std::collections::HashSet::new();
    let mut unique = true;
    let mut visit = |column: &ArrayRef| {
        let text = match arrow::compute::cast(column, &DataType::Utf8) {
            Ok(t) => t,
            Err(e) => return Err(e.to_string()),
        };
        for v in arrow::array::AsArray::as_string::<i32>(&text).iter() {
            let Some(v) = v else {
                unique = false;
                return Ok(false);
            };
            let (mut a, mut b) = (keys.0.build_hasher(), keys.1.build_hasher());
            v.hash(&mut a);
            v.hash(&mut b);
            if !seen.insert((u128::from(a.finish()) << 64) | u128::from(b.finish())) {
                unique = false;
                return Ok(false);
            }
        }
        Ok(true)
    };
    read_columns(manifest, path, &[manifest.privacy_unit.as_str()], |batch| {
        visit(batch.column(0))
    })?;
    Ok(unique)
}

/// Like [`read_columns`], but only the rows at `rows` (sorted, file order)
/// of a Parquet file, skipping the pages that hold none of them. Returns
/// `false`, having read nothing, when the file is not Parquet.
pub(crate) fn read_rows(
    manifest: &DatasetManifest,
    path: &Path,
    names: &[&str],
    rows: &[u32],
    visit: impl FnMut(&arrow::array::RecordBatch) -> Result<bool, String>,
) -> Result<bool, String> {
    use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
    if manifest.format != FileFormat::Parquet {
        return Ok(false);
    }
    read_parquet(path, names, visit, |total| {
        let mut selectors = Vec::new();
        let mut at = 0usize;
        for &row in rows {
            let row = row as usize;
            if row < at || row >= total {
                continue; // repeated, or beyond the file
            }
            if row > at {
                selectors.push(RowSelector::skip(row - at));
            }
            selectors.push(RowSelector::select(1));
            at = row + 1;
        }
        if at < total {
            selectors.push(RowSelector::skip(total - at));
        }
        Some(RowSelection::from(selectors))
    })?;
    Ok(true)
}

/// Where each of `names` is in `schema`.
fn positions(schema: &arrow::datatypes::Schema, names: &[&str]) -> Result<Vec<usize>, String> {
    names
        .iter()
        .map(|n| schema.index_of(n).map_err(|e| e.to_string()))
        .collect()
}

/// Batches hold the columns in the order of `names`, whatever the file's.
fn in_order(
    names: &[&str],
    batch: arrow::array::RecordBatch,
) -> Result<arrow::array::RecordBatch, String> {
    let indices = positions(&batch.schema(), names)?;
    batch.project(&indices).map_err(|e| e.to_string())
}

/// Reads `names` of a Parquet file, the rows `select` picks given the
/// file's row count (all of them for `None`).
fn read_parquet(
    path: &Path,
    names: &[&str],
    mut visit: impl FnMut(&arrow::array::RecordBatch) -> Result<bool, String>,
    select: impl FnOnce(usize) -> Option<parquet::arrow::arrow_reader::RowSelection>,
) -> Result<(), String> {
    let file = File::open(path).map_err(|e| e.kind().to_string())?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| e.to_string())?;
    let total = builder.metadata().file_metadata().num_rows().max(0) as usize;
    let indices = positions(builder.schema(), names)?;
    let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), indices);
    let mut builder = builder.with_projection(mask).with_batch_size(64 * 1024);
    if let Some(selection) = select(total) {
        builder = builder.with_row_selection(selection);
    }
    for batch in builder.build().map_err(|e| e.to_string())? {
        if !visit(&in_order(names, batch.map_err(|e| e.to_string())?)?)? {
            break;
        }
    }
    Ok(())
}

/// Reads the named columns of a data file in file order, batch by batch,
/// until `visit` returns false. Batches hold the columns in the order of
/// `names`.
pub(crate) fn read_columns(
    manifest: &DatasetManifest,
    path: &Path,
    names: &[&str],
    mut visit: impl FnMut(&arrow::array::RecordBatch) -> Result<bool, String>,
) -> Result<(), String> {
    match manifest.format {
        FileFormat::Parquet => read_parquet(path, names, visit, |_| None)?,
        FileFormat::Csv => {
            let schema = csv_schema(manifest);
            let indices = positions(&schema, names)?;
            let reader = arrow::csv::ReaderBuilder::new(schema)
                .with_header(true)
                .with_projection(indices)
                .with_batch_size(64 * 1024)
                .build(File::open(path).map_err(|e| e.kind().to_string())?)
                .map_err(|e| e.to_string())?;
            for batch in reader {
                if !visit(&in_order(names, batch.map_err(|e| e.to_string())?)?)? {
                    break;
                }
            }
        }
    }
    Ok(())
}
