//! A shared fixture: a small generated sample registered in one engine, and
//! helpers to ask it questions as the default preset's principals.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use veil_engine::{Dataset, Engine, PreparedQuery, QueryError, QueryRequest};
use veil_policies::{DatasetManifest, Grant, Policy, Principal, RegionScope, Role};

pub const PERSONS: u64 = 20_000;

pub struct Fixture {
    pub engine: Engine,
    pub dir: PathBuf,
    pub runtime: tokio::runtime::Runtime,
}

pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("veil-engine-tests-{}", std::process::id()));
        veil_datasets::generate(
            &dir,
            &veil_datasets::Options {
                persons: PERSONS,
                seed: 42,
            },
            &|_| {},
        )
        .unwrap();
        std::fs::write(dir.join("PUMS_pid.csv"), veil_datasets::pums::CSV).unwrap();
        std::fs::write(dir.join("pums_pid.toml"), veil_datasets::pums::MANIFEST).unwrap();
        let engine = build_engine(&dir, Policy::default_preset());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        Fixture {
            engine,
            dir,
            runtime,
        }
    })
}

/// An engine over the fixture's files deciding with `policy`.
pub fn build_engine(dir: &std::path::Path, policy: Policy) -> Engine {
    let mut engine = Engine::new(policy.clone(), "v1-test", [9; 32]);
    for name in veil_datasets::TABLES.iter().copied().chain(["pums_pid"]) {
        let text = std::fs::read_to_string(dir.join(format!("{name}.toml"))).unwrap();
        let manifest = DatasetManifest::parse(&text, &|g| policy.grade(g).is_some()).unwrap();
        let source = veil_engine::source::check_source(&manifest, dir, None).unwrap();
        let path = dir.join(&manifest.path);
        engine.add_dataset(
            Dataset::open(manifest, 1, &path)
                .unwrap()
                .with_unique_units(source.unique_units),
        );
    }
    engine
}

/// The default preset with one grade's consumer levels replaced.
pub fn policy_with(grade: &str, consumer_levels: &str) -> Policy {
    let text = veil_policies::policy::DEFAULT_PRESET;
    let start = text.find(&format!("name = \"{grade}\"")).unwrap();
    let line_start = start + text[start..].find("levels = {").unwrap();
    let line_end = line_start + text[line_start..].find('\n').unwrap();
    let replaced = format!(
        "{}levels = {{ consumer = {consumer_levels} }}{}",
        &text[..line_start],
        &text[line_end..]
    );
    Policy::parse(&replaced).unwrap()
}

pub fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-27T08:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

pub fn consumer() -> Principal {
    let mut p = Principal::new("test-consumer", Role::Consumer);
    p.org = Some("Yunnan Civil Affairs".into());
    p
}

pub fn kunming() -> Principal {
    let mut p = consumer();
    p.name = "test-kunming".into();
    p.region = Some(RegionScope::parse("530100").unwrap());
    p
}

pub fn modeler() -> Principal {
    Principal::new("test-modeler", Role::Modeler)
}

/// A consumer with a grant on `dataset` for the purpose `benefits`.
pub fn granted(dataset: &str) -> Principal {
    let mut p = consumer();
    p.name = "test-granted".into();
    p.grants.push(Grant {
        id: "g-test".into(),
        dataset: dataset.into(),
        fields: None,
        purpose: "benefits".into(),
        expires_at: now() + chrono::Duration::days(30),
    });
    p
}

pub fn request<'a>(
    principal: &'a Principal,
    sql: &'a str,
    purpose: Option<&'a str>,
) -> QueryRequest<'a> {
    QueryRequest {
        principal,
        purpose,
        sql,
        now: now(),
        dp: None,
    }
}

/// Runs `sql` as `principal`; rows as text, one string per cell.
pub fn run_as(
    principal: &Principal,
    purpose: Option<&str>,
    sql: &str,
) -> Result<(PreparedQuery, Vec<Vec<String>>), QueryError> {
    let f = fixture();
    let (prepared, answer) = f
        .runtime
        .block_on(f.engine.query(&request(principal, sql, purpose)))?;
    Ok((prepared, rows(&answer.batches)))
}

/// An engine over the fixture's files whose L3 grade gives consumers
/// without a grant exact aggregates over at least k units, as a policy may
/// (the default preset answers them under differential privacy instead).
pub fn k_engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        build_engine(
            &fixture().dir,
            policy_with("L3", r#"["masked", "generalized", "aggregate"]"#),
        )
    })
}

/// Runs `sql` as `principal` on [`k_engine`].
pub fn run_k(principal: &Principal, sql: &str) -> Result<Vec<Vec<String>>, QueryError> {
    let f = fixture();
    let (_, answer) = f
        .runtime
        .block_on(k_engine().query(&request(principal, sql, None)))?;
    Ok(rows(&answer.batches))
}

pub fn run(principal: &Principal, sql: &str) -> Result<Vec<Vec<String>>, QueryError> {
    run_as(principal, None, sql).map(|(_, rows)| rows)
}

pub fn rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in batches {
        let formatters: Vec<ArrayFormatter> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for r in 0..b.num_rows() {
            out.push(formatters.iter().map(|f| f.value(r).to_string()).collect());
        }
    }
    out
}

/// Asserts a refusal by the policy and returns its message.
pub fn denied(principal: &Principal, sql: &str) -> String {
    match run(principal, sql) {
        Err(QueryError::Denied(r)) => r.message,
        other => panic!("expected a policy refusal for {sql}, got {other:?}"),
    }
}

/// Every row of `table` as text, by column name.
pub fn table(name: &str, columns: &[&str]) -> Vec<HashMap<String, String>> {
    let path = fixture().dir.join(format!("{name}.parquet"));
    let file = std::fs::File::open(path).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let text: Vec<_> = columns
            .iter()
            .map(|c| {
                arrow::compute::cast(batch.column_by_name(c).unwrap(), &DataType::Utf8).unwrap()
            })
            .collect();
        for r in 0..batch.num_rows() {
            out.push(
                columns
                    .iter()
                    .zip(&text)
                    .map(|(c, t)| (c.to_string(), t.as_string::<i32>().value(r).to_owned()))
                    .collect(),
            );
        }
    }
    out
}
