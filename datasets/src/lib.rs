//! veil-datasets: deterministic synthetic Yunnan public data.
//!
//! [`generate`] writes the six sample tables of Art. 10's base and theme
//! databases as Parquet, each with its catalog manifest: `population`,
//! `legal_persons`, `utility_usage`, `social_insurance`, `tax` and
//! `health_visits`. Keys are consistent across tables: every
//! `legal_rep_id_number`, person `subject_id`, `social_insurance.id_number`
//! and `health_visits.id_number` is a person in `population`, and every
//! credit code cited is a company in `legal_persons`. The same seed gives
//! byte-identical files.

mod generate;
pub mod manifests;
mod population;
mod regions;
mod sample;
mod tables;
mod vocab;

use std::path::Path;

pub use tables::TABLES;

/// The demo's default size.
pub const DEFAULT_PERSONS: u64 = 100_000;
/// The default seed: the day the regulation came into force.
pub const DEFAULT_SEED: u64 = 20_240_301;

#[derive(Debug, Clone)]
pub struct Options {
    pub persons: u64,
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            persons: DEFAULT_PERSONS,
            seed: DEFAULT_SEED,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSummary {
    pub name: &'static str,
    pub rows: u64,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("at least one person is needed")]
    NoPersons,
    #[error("cannot write the sample data: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot encode Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("cannot build a batch: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("a table writer stopped unexpectedly")]
    WriterStopped,
}

/// Writes the sample tables and their manifests into `out` (created if
/// missing). `progress` is called with the number of persons done since the
/// previous call.
pub fn generate(
    out: &Path,
    options: &Options,
    progress: &dyn Fn(u64),
) -> Result<Vec<TableSummary>, GenerateError> {
    if options.persons == 0 {
        return Err(GenerateError::NoPersons);
    }
    generate::run(out, options, progress)
}

/// The SmartNoise PUMS_pid sample and its manifest, shipped with the binary so
/// the demo can compare with SmartNoise SQL on the same data.
pub mod pums {
    pub const CSV: &str = include_str!("../pums/PUMS_pid.csv");
    pub const MANIFEST: &str = include_str!("../pums/pums_pid.toml");
    pub const CSV_NAME: &str = "PUMS_pid.csv";
    pub const MANIFEST_NAME: &str = "pums_pid.toml";
}

/// The identity number of the first person in a generated `population`
/// file: the demo's data subject.
pub fn first_person(dir: &Path) -> Option<String> {
    first_value(dir, "population", "id_number")
}

/// The first value of a string `column` of a generated `table` file.
pub fn first_value(dir: &Path, table: &str, column: &str) -> Option<String> {
    use arrow::array::{Array, AsArray};
    let file = std::fs::File::open(dir.join(format!("{table}.parquet"))).ok()?;
    let mut reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .ok()?
        .with_batch_size(1)
        .build()
        .ok()?;
    let batch = reader.next()?.ok()?;
    let values = batch.column_by_name(column)?.as_string_opt::<i32>()?;
    (!values.is_empty()).then(|| values.value(0).to_owned())
}
