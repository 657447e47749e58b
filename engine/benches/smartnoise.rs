//! veil's differentially private aggregates against SmartNoise SQL on the
//! same data, at the same total ε and δ, in the same run.
//!
//! ```sh
//! cargo bench -p veil-engine --bench smartnoise
//! ```
//!
//! One command does everything: it makes a Python virtual environment under
//! `target/smartnoise-venv` from `benches/smartnoise/requirements.txt` (once;
//! `VEIL_BENCH_PYTHON` names another interpreter), generates the samples
//! under `target/bench-data/<persons>` when they are missing, runs each
//! query on both sides and prints one table.
//!
//! - Data: the PUMS_pid sample with its SmartNoise metadata, and our
//!   `health_visits`, `population` and `utility_usage` tables at each size of
//!   `VEIL_BENCH_SIZES` (default `1000000,10000000` persons; empty for PUMS
//!   alone; `VEIL_BENCH_TABLES`, comma separated, limits the tables). SmartNoise is skipped on tables above `VEIL_BENCH_PEER_MAX_ROWS`
//!   rows (default 20,000,000): it loads the whole frame into SQLite.
//! - Privacy: every query costs ε = 1 in total (`VEIL_BENCH_EPSILON`), δ =
//!   1e-5. SmartNoise charges ε per noisy column, so its per-column ε is set
//!   to make its own accountant report the same total. Both sides know the
//!   keys' public domains (SmartNoise through `censor_dims: False`), so
//!   neither spends on partition selection.
//! - Bounds: SmartNoise keeps at most `max_ids` rows per person; veil at most
//!   L0 groups and Linf rows per group, with `max_ids = L0 · Linf`.
//! - Time: the median wall time of the query alone; SmartNoise's one-off
//!   load of the frame into its in-memory SQLite is reported apart. veil
//!   reads the Parquet files on every query.
//! - Error: the mean absolute error against the exact answer (plain
//!   DataFusion over the same files, no bounding), over the groups an answer
//!   releases, over all runs.
//! - Memory: peak RSS of the veil process during its runs (the kernel's high
//!   water mark, reset before each query) and of the SmartNoise process.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type};
use chrono::Utc;
use datafusion::prelude::{CsvReadOptions, ParquetReadOptions, SessionContext};
use veil_engine::{Dataset, DpOptions, Engine, QueryRequest};
use veil_policies::{DatasetManifest, Policy, Principal, Role};

use common::{ensure_sample, env};

const DELTA: f64 = 1e-5;

/// One query of the comparison.
struct Case {
    /// Which data: `pums` or one of our tables.
    table: &'static str,
    label: &'static str,
    /// The query as veil reads it; SmartNoise reads it with the table
    /// qualified by its schema.
    sql: &'static str,
    /// The columns SmartNoise needs loaded, privacy unit included.
    columns: &'static [&'static str],
    max_groups: u64,
    max_rows: u64,
}

const PUMS: [Case; 3] = [
    Case {
        table: "pums_pid",
        label: "COUNT(*) BY educ",
        sql: "SELECT educ, COUNT(*) AS n FROM pums_pid GROUP BY educ",
        columns: &["educ", "pid"],
        max_groups: 1,
        max_rows: 1,
    },
    Case {
        table: "pums_pid",
        label: "AVG(income) BY sex",
        sql: "SELECT sex, AVG(income) AS income FROM pums_pid GROUP BY sex",
        columns: &["sex", "income", "pid"],
        max_groups: 1,
        max_rows: 1,
    },
    Case {
        table: "pums_pid",
        label: "SUM(age) BY married",
        sql: "SELECT married, SUM(age) AS age FROM pums_pid GROUP BY married",
        columns: &["married", "age", "pid"],
        max_groups: 1,
        max_rows: 1,
    },
];

const OURS: [Case; 3] = [
    Case {
        table: "health_visits",
        label: "COUNT(*) BY diagnosis",
        // Many rows per person: both sides bound each person's rows.
        sql: "SELECT diagnosis_category, COUNT(*) AS n FROM health_visits GROUP BY diagnosis_category",
        columns: &["diagnosis_category", "id_number"],
        max_groups: 1,
        max_rows: 1,
    },
    Case {
        table: "population",
        label: "COUNT(*) BY county",
        sql: "SELECT county_code, COUNT(*) AS n FROM population GROUP BY county_code",
        columns: &["county_code", "id_number"],
        max_groups: 1,
        max_rows: 1,
    },
    Case {
        table: "utility_usage",
        label: "SUM(usage) BY utility",
        // Persons only: companies' usage exceeds the declared bound, and the
        // clamping bias (equal on both sides) would hide the noise.
        sql: "SELECT utility, SUM(usage) AS usage FROM utility_usage WHERE subject_type = 'person' GROUP BY utility",
        columns: &["utility", "usage", "subject_id", "subject_type"],
        max_groups: 3,
        max_rows: 12,
    },
];

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let target = root.join("target");
    let epsilon: f64 = env("VEIL_BENCH_EPSILON", 1.0);
    let veil_runs: usize = env("VEIL_BENCH_RUNS", 20);
    let peer_runs: usize = env("VEIL_BENCH_PEER_RUNS", 3);
    let peer_max_rows: u64 = env("VEIL_BENCH_PEER_MAX_ROWS", 20_000_000);
    let sizes: Vec<u64> = std::env::var("VEIL_BENCH_SIZES")
        .unwrap_or_else(|_| "1000000,10000000".into())
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse()
                .expect("VEIL_BENCH_SIZES: persons, comma separated")
        })
        .collect();
    let python = python(root, &target);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let policy = bench_policy();
    let bench = Bench {
        runtime: &runtime,
        policy: &policy,
        python: &python,
        epsilon,
        veil_runs,
        peer_runs,
    };

    println!(
        "ε = {epsilon} per query (total, both sides), δ = {DELTA}; time = median of {veil_runs} veil and {peer_runs} SmartNoise runs; MAE over released groups and all runs"
    );
    println!(
        "{:<26} {:<22} {:>11} {:>10} {:>12} {:>8} {:>12} {:>12} {:>9} {:>9} {:>9}",
        "data",
        "query",
        "rows",
        "veil ms",
        "SmartNoise ms",
        "speedup",
        "veil MAE",
        "SN MAE",
        "veil MB",
        "SN MB",
        "SN load s"
    );
    let pums_dir = root.join("datasets/pums");
    bench.compare("PUMS_pid (1,000 persons)", &pums_dir, &PUMS, true, true);

    for persons in sizes {
        let dir = target.join(format!("bench-data/{persons}"));
        ensure_sample(&dir, persons);
        let tables = std::env::var("VEIL_BENCH_TABLES").unwrap_or_default();
        for case in OURS
            .iter()
            .filter(|c| tables.is_empty() || tables.split(',').any(|t| t == c.table))
        {
            let rows = parquet_rows(&dir.join(format!("{}.parquet", case.table)));
            let data = format!("{} ({} persons)", case.table, thousands(persons));
            let with_peer = rows <= peer_max_rows;
            bench.compare(&data, &dir, std::slice::from_ref(case), false, with_peer);
            if case.table == "population" {
                // The same query with one-row-per-unit knowledge withheld, so
                // veil bounds contributions as it must for any other table.
                bench.compare_bounded(&data, &dir, case);
            }
        }
    }
}

#[derive(Clone, Copy)]
struct Bench<'a> {
    runtime: &'a tokio::runtime::Runtime,
    policy: &'a Policy,
    python: &'a Path,
    epsilon: f64,
    veil_runs: usize,
    peer_runs: usize,
}

/// One side's measurements of one query.
#[derive(Default)]
struct Side {
    millis: f64,
    mae: f64,
    /// Released groups per answer, averaged, and the exact answer's.
    groups: (f64, usize),
    peak_mb: f64,
}

impl Bench<'_> {
    /// Runs `cases` (all on one table of `dir`) on veil and, `with_peer`,
    /// on SmartNoise.
    fn compare(&self, data: &str, dir: &Path, cases: &[Case], pums: bool, with_peer: bool) {
        let table = cases[0].table;
        let engine = self.engine(dir, table, true);
        let file = dir.join(engine_file(&engine, table));
        let rows = if pums { 1000 } else { parquet_rows(&file) };
        let exact: Vec<_> = cases.iter().map(|c| self.exact(&file, c)).collect();
        let veil: Vec<Side> = cases
            .iter()
            .zip(&exact)
            .map(|(c, e)| self.veil(&engine, c, e))
            .collect();
        let peer = with_peer.then(|| self.smartnoise(&file, dir, cases, &exact, pums, rows));
        for (i, case) in cases.iter().enumerate() {
            let v = &veil[i];
            let (sn_ms, sn_mae, sn_mb, load, speedup) = match &peer {
                Some((sides, load)) => {
                    let s = &sides[i];
                    (
                        format!("{:.1}", s.millis),
                        format!("{:.1}", s.mae),
                        format!("{:.0}", s.peak_mb),
                        format!("{load:.1}"),
                        format!("{:.1}×", s.millis / v.millis),
                    )
                }
                None => {
                    let skipped = "skipped".to_string();
                    (
                        skipped.clone(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                    )
                }
            };
            println!(
                "{:<26} {:<22} {:>11} {:>10.1} {:>12} {:>8} {:>12.1} {:>12} {:>9.0} {:>9} {:>9}",
                data,
                case.label,
                thousands(rows),
                v.millis,
                sn_ms,
                speedup,
                v.mae,
                sn_mae,
                v.peak_mb,
                sn_mb,
                load
            );
            let missing = |s: &Side| s.groups.0 < s.groups.1 as f64;
            if missing(v) || peer.as_ref().is_some_and(|(s, _)| missing(&s[i])) {
                println!(
                    "{:<26} {:<22} groups released per answer: veil {:.1}, SmartNoise {}, in the data {}",
                    "",
                    "",
                    v.groups.0,
                    peer.as_ref()
                        .map_or("-".into(), |(s, _)| format!("{:.1}", s[i].groups.0)),
                    v.groups.1
                );
            }
        }
    }

    /// veil alone, on a dataset registered without its one-row-per-unit
    /// flag: the contribution bounding runs in full.
    fn compare_bounded(&self, data: &str, dir: &Path, case: &Case) {
        let engine = self.engine(dir, case.table, false);
        let file = dir.join(engine_file(&engine, case.table));
        let exact = self.exact(&file, case);
        let v = Bench {
            veil_runs: self.veil_runs.min(3),
            ..*self
        }
        .veil(&engine, case, &exact);
        println!(
            "{:<26} {:<22} {:>11} {:>10.1} {:>12} {:>8} {:>12.1} {:>12} {:>9.0} {:>9} {:>9}",
            data,
            "  same, bounding forced",
            thousands(parquet_rows(&file)),
            v.millis,
            "",
            "",
            v.mae,
            "",
            v.peak_mb,
            "",
            ""
        );
    }

    fn engine(&self, dir: &Path, table: &str, unique_known: bool) -> Engine {
        let mut engine = Engine::new(self.policy.clone(), "bench", [7; 32]);
        let text = std::fs::read_to_string(manifest_path(dir, table)).unwrap();
        let manifest = DatasetManifest::parse(&text, &|g| self.policy.grade(g).is_some()).unwrap();
        let unique = unique_known
            && veil_engine::source::check_source(&manifest, dir, None)
                .unwrap()
                .unique_units;
        let path = dir.join(&manifest.path);
        engine.add_dataset(
            Dataset::open(manifest, 1, &path)
                .unwrap()
                .with_unique_units(unique),
        );
        engine
    }

    /// The exact answer, unbounded: group key -> value.
    fn exact(&self, file: &Path, case: &Case) -> BTreeMap<String, f64> {
        let ctx = SessionContext::new();
        let path = file.to_str().unwrap();
        self.runtime.block_on(async {
            if path.ends_with(".csv") {
                ctx.register_csv(case.table, path, CsvReadOptions::new())
                    .await
                    .unwrap();
            } else {
                ctx.register_parquet(case.table, path, ParquetReadOptions::default())
                    .await
                    .unwrap();
            }
            let batches = ctx.sql(case.sql).await.unwrap().collect().await.unwrap();
            pairs(&batches).into_iter().collect()
        })
    }

    fn veil(&self, engine: &Engine, case: &Case, exact: &BTreeMap<String, f64>) -> Side {
        let consumer = Principal::new("bench-consumer", Role::Consumer);
        let request = QueryRequest {
            principal: &consumer,
            purpose: None,
            sql: case.sql,
            now: Utc::now(),
            dp: Some(DpOptions {
                epsilon: self.epsilon,
                max_groups: case.max_groups,
                max_rows: case.max_rows,
                ..DpOptions::new(0.5)
            }),
        };
        common::reset_peak_rss();
        let mut times = Vec::new();
        let mut answers = Vec::new();
        for _ in 0..self.veil_runs {
            let started = Instant::now();
            let (prepared, answer) = self
                .runtime
                .block_on(engine.query(&request))
                .unwrap_or_else(|e| panic!("veil refused {}: {e}", case.sql));
            times.push(started.elapsed().as_secs_f64() * 1e3);
            assert_eq!(prepared.privacy.epsilon_spent, self.epsilon);
            answers.push(pairs(&answer.batches));
        }
        Side {
            millis: median(times),
            mae: mae(&answers, exact),
            groups: released(&answers, exact),
            peak_mb: common::peak_rss_mb(),
        }
    }

    /// Runs `cases` through SmartNoise in one Python process; returns each
    /// case's side and the load time.
    fn smartnoise(
        &self,
        file: &Path,
        dir: &Path,
        cases: &[Case],
        exact: &[BTreeMap<String, f64>],
        pums: bool,
        rows: u64,
    ) -> (Vec<Side>, f64) {
        let (schema_table, metadata) = if pums {
            // Upstream's metadata as it is, told that the keys are public.
            let text = std::fs::read_to_string(dir.join("PUMS_pid.yaml")).unwrap();
            let text = text.replace("max_ids: 1", "max_ids: 1\n      censor_dims: False");
            ("PUMS.PUMS".to_string(), text)
        } else {
            let case = &cases[0];
            let text = std::fs::read_to_string(manifest_path(dir, case.table)).unwrap();
            let manifest =
                DatasetManifest::parse(&text, &|g| self.policy.grade(g).is_some()).unwrap();
            (
                format!("veil.{}", case.table),
                smartnoise_metadata(&manifest, case, rows),
            )
        };
        let metadata_path = std::env::temp_dir().join(format!(
            "veil-bench-{}-{}.yaml",
            cases[0].table,
            std::process::id()
        ));
        std::fs::write(&metadata_path, metadata).unwrap();
        let mut columns: Vec<&str> = cases
            .iter()
            .flat_map(|c| c.columns.iter().copied())
            .collect();
        columns.sort();
        columns.dedup();
        let job = serde_json::json!({
            "file": file,
            "columns": columns,
            "metadata": metadata_path,
            "delta": DELTA,
            "runs": self.peer_runs,
            "queries": cases.iter().map(|c| serde_json::json!({
                "sql": c.sql.replace(&format!("FROM {}", c.table), &format!("FROM {schema_table}")),
                "epsilon": self.epsilon,
            })).collect::<Vec<_>>(),
        });
        let mut child = Command::new(self.python)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/smartnoise/run.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the SmartNoise side");
        serde_json::to_writer(child.stdin.take().unwrap(), &job).unwrap();
        let out = child.wait_with_output().unwrap();
        let _ = std::fs::remove_file(&metadata_path);
        assert!(out.status.success(), "the SmartNoise side failed");
        let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let peak_mb = result["peak_rss_mb"].as_f64().unwrap();
        let sides = result["queries"]
            .as_array()
            .unwrap()
            .iter()
            .zip(exact)
            .map(|(q, exact)| {
                let cost = q["cost"][0].as_f64().unwrap();
                assert!(
                    (cost - self.epsilon).abs() < 1e-6,
                    "SmartNoise charges {cost}, not {}",
                    self.epsilon
                );
                let millis = median(
                    q["seconds"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|s| s.as_f64().unwrap() * 1e3)
                        .collect(),
                );
                let answers: Vec<Vec<(String, f64)>> = q["answers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| {
                        a.as_array()
                            .unwrap()
                            .iter()
                            .map(|r| {
                                (
                                    r[0].as_str().unwrap().to_string(),
                                    r[1].as_f64().unwrap_or(f64::NAN),
                                )
                            })
                            .collect()
                    })
                    .collect();
                Side {
                    millis,
                    mae: mae(&answers, exact),
                    groups: released(&answers, exact),
                    peak_mb,
                }
            })
            .collect();
        (sides, result["load_seconds"].as_f64().unwrap())
    }
}

/// The default preset with every grade dp for consumers at the bench's δ:
/// every field of the compared tables is then released only with noise.
fn bench_policy() -> Policy {
    let text: String = veil_policies::policy::DEFAULT_PRESET
        .lines()
        .map(|line| {
            if line.starts_with("levels = ") {
                "levels = { consumer = \"dp\" }".to_string()
            } else if line.starts_with("delta = ") {
                format!("delta = {DELTA:e}")
            } else if line.starts_with("epsilon = ") {
                "epsilon = 100.0".to_string()
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    Policy::parse(&text).expect("the bench policy parses")
}

/// SmartNoise metadata for one of our tables, from its veil manifest: the
/// same bounds, the privacy unit as `private_id`, `max_ids = L0 · Linf`.
fn smartnoise_metadata(manifest: &DatasetManifest, case: &Case, rows: u64) -> String {
    let mut text = format!(
        "\"\":\n  veil:\n    {}:\n      max_ids: {}\n      rows: {rows}\n      censor_dims: False\n",
        case.table,
        case.max_groups * case.max_rows
    );
    for name in case.columns {
        let field = manifest.fields.iter().find(|f| f.name == *name).unwrap();
        text.push_str(&format!("      {name}:\n"));
        match field.bounds {
            Some((lower, upper)) => text.push_str(&format!(
                "        type: float\n        lower: {lower}\n        upper: {upper}\n"
            )),
            None => text.push_str("        type: string\n"),
        }
        if *name == manifest.privacy_unit {
            text.push_str("        private_id: True\n");
        }
    }
    text
}

fn manifest_path(dir: &Path, table: &str) -> PathBuf {
    if table == "pums_pid" {
        dir.join("pums_pid.toml")
    } else {
        dir.join(format!("{table}.toml"))
    }
}

fn engine_file(engine: &Engine, table: &str) -> PathBuf {
    engine
        .datasets()
        .find(|d| d.manifest.name == table)
        .map(|d| PathBuf::from(&d.manifest.path))
        .unwrap()
}

/// (key, value) per row of a two-column answer.
fn pairs(batches: &[RecordBatch]) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for b in batches {
        let keys = arrow::compute::cast(b.column(0), &DataType::Utf8).unwrap();
        let keys = keys.as_string::<i32>();
        let values = arrow::compute::cast(b.column(1), &DataType::Float64).unwrap();
        let values = values.as_primitive::<Float64Type>();
        for i in 0..b.num_rows() {
            let key = if keys.is_null(i) {
                "NULL".to_string()
            } else {
                keys.value(i).to_string()
            };
            let value = if values.is_null(i) {
                f64::NAN
            } else {
                values.value(i)
            };
            out.push((key, value));
        }
    }
    out
}

/// Mean absolute error over the released groups that exist in the data (a
/// declared-domain group absent from the data has exact value 0).
fn mae(answers: &[Vec<(String, f64)>], exact: &BTreeMap<String, f64>) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for answer in answers {
        for (key, value) in answer {
            let truth = exact.get(key).copied().unwrap_or(0.0);
            if value.is_finite() {
                sum += (value - truth).abs();
                n += 1;
            }
        }
    }
    sum / n.max(1) as f64
}

/// Groups of the exact answer present in each answer, on average.
fn released(answers: &[Vec<(String, f64)>], exact: &BTreeMap<String, f64>) -> (f64, usize) {
    let present: usize = answers
        .iter()
        .map(|a| a.iter().filter(|(k, _)| exact.contains_key(k)).count())
        .sum();
    (present as f64 / answers.len().max(1) as f64, exact.len())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn parquet_rows(path: &Path) -> u64 {
    if path.extension().is_some_and(|e| e == "csv") {
        return 0;
    }
    let file = std::fs::File::open(path).unwrap();
    let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
    use parquet::file::reader::FileReader;
    reader.metadata().file_metadata().num_rows() as u64
}

/// The interpreter with SmartNoise SQL: `VEIL_BENCH_PYTHON`, or a virtual
/// environment made once from the pinned requirements.
fn python(root: &Path, target: &Path) -> PathBuf {
    if let Ok(p) = std::env::var("VEIL_BENCH_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = target.join("smartnoise-venv");
    let python = venv.join("bin/python");
    let requirements = root.join("engine/benches/smartnoise/requirements.txt");
    let stamp = venv.join("requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).unwrap();
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return python;
    }
    eprintln!("making {} with SmartNoise SQL ...", venv.display());
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new(&python)
            .args(["-m", "pip", "install", "-q", "-r"])
            .arg(&requirements)
            .status()
            .is_ok_and(|s| s.success());
    assert!(ok, "could not install {}", requirements.display());
    std::fs::write(&stamp, wanted).unwrap();
    python
}
