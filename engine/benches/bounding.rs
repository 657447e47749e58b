//! Bounding contributions at scan speed: a DP `GROUP BY` over tables where
//! a privacy unit has many rows and groups, against plain DataFusion on the
//! same files in the same run.
//!
//! ```sh
//! VEIL_BENCH_PERSONS=10000000 VEIL_BENCH_DIR=/tmp/veil-10m cargo bench -p veil-engine --bench bounding
//! ```
//!
//! For each query, three timings (median of `VEIL_BENCH_RUNS`, default 3),
//! each with the process's peak RSS over its runs (the kernel's high-water
//! mark, reset before each):
//! - veil: the DP query as a consumer without a grant (ε = 0.5, L0 and Linf
//!   as given), through the policy stage, bounding and noise;
//! - per-unit: plain DataFusion's pre-aggregation that any bounding needs,
//!   `GROUP BY unit, keys` and then the statistic per key, without privacy;
//! - plain: plain DataFusion's non-private query.
//!
//! The ratios are veil / per-unit and veil / plain. `VEIL_BENCH_ONLY`
//! filters the queries by name.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use futures::StreamExt;
use veil_engine::{Dataset, DpOptions, Engine, QueryRequest};
use veil_policies::{DatasetManifest, Policy, Principal, Role};

use common::{ensure_sample, env, peak_rss_mb, reset_peak_rss};

struct Case {
    name: &'static str,
    dp: &'static str,
    per_unit: &'static str,
    plain: &'static str,
    max_groups: u64,
    max_rows: u64,
}

const CASES: [Case; 3] = [
    Case {
        name: "health_visits COUNT BY diagnosis",
        dp: "SELECT diagnosis_category, COUNT(*) FROM health_visits GROUP BY diagnosis_category",
        per_unit: "SELECT diagnosis_category, SUM(LEAST(c, 1)) FROM (SELECT id_number, diagnosis_category, COUNT(*) AS c FROM health_visits GROUP BY id_number, diagnosis_category) GROUP BY diagnosis_category",
        plain: "SELECT diagnosis_category, COUNT(*) FROM health_visits GROUP BY diagnosis_category",
        max_groups: 1,
        max_rows: 1,
    },
    Case {
        name: "health_visits COUNT BY hospital (no domain)",
        dp: "SELECT hospital, COUNT(*) FROM health_visits GROUP BY hospital",
        per_unit: "SELECT hospital, SUM(LEAST(c, 1)) FROM (SELECT id_number, hospital, COUNT(*) AS c FROM health_visits GROUP BY id_number, hospital) GROUP BY hospital",
        plain: "SELECT hospital, COUNT(*) FROM health_visits GROUP BY hospital",
        max_groups: 1,
        max_rows: 1,
    },
    Case {
        name: "utility_usage SUM(usage) BY utility",
        dp: "SELECT utility, SUM(usage) FROM utility_usage GROUP BY utility",
        per_unit: "SELECT utility, SUM(s) FROM (SELECT subject_id, utility, SUM(usage) AS s FROM utility_usage GROUP BY subject_id, utility) GROUP BY utility",
        plain: "SELECT utility, SUM(usage) FROM utility_usage GROUP BY utility",
        max_groups: 3,
        max_rows: 12,
    },
];

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64()
}

fn main() {
    let persons: u64 = env("VEIL_BENCH_PERSONS", 1_000_000);
    let dir = PathBuf::from(
        std::env::var("VEIL_BENCH_DIR").unwrap_or_else(|_| format!("/tmp/veil-bench-{persons}")),
    );
    let runs: usize = env("VEIL_BENCH_RUNS", 3);
    let only = std::env::var("VEIL_BENCH_ONLY").unwrap_or_default();
    ensure_sample(&dir, persons);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    let policy = Policy::default_preset();
    let mut engine = Engine::new(policy.clone(), "bench", [1; 32]);
    let plain = SessionContext::new_with_config(SessionConfig::new().with_batch_size(8192));
    for table in ["health_visits", "utility_usage"] {
        let text = std::fs::read_to_string(dir.join(format!("{table}.toml"))).unwrap();
        let manifest = DatasetManifest::parse(&text, &|g| policy.grade(g).is_some()).unwrap();
        let path = dir.join(&manifest.path);
        engine.add_dataset(Dataset::open(manifest, 1, &path).unwrap());
        runtime
            .block_on(plain.register_parquet(
                table,
                path.to_str().unwrap(),
                ParquetReadOptions::default(),
            ))
            .unwrap();
    }
    let consumer = Principal::new("bench-consumer", Role::Consumer);

    let time_plain = |sql: &str| {
        let mut times = Vec::new();
        reset_peak_rss();
        for _ in 0..runs {
            let started = Instant::now();
            runtime.block_on(async {
                let mut stream = plain
                    .sql(sql)
                    .await
                    .unwrap()
                    .execute_stream()
                    .await
                    .unwrap();
                while let Some(b) = stream.next().await {
                    b.unwrap();
                }
            });
            times.push(started.elapsed());
        }
        (median(times), peak_rss_mb())
    };

    println!(
        "persons: {persons}; median of {runs} runs; ε = 0.5; ratios against plain DataFusion in the same run"
    );
    println!(
        "{:<44} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "query",
        "veil s",
        "per-unit",
        "plain s",
        "÷unit",
        "÷plain",
        "veil MB",
        "unit MB",
        "plain MB"
    );
    for case in CASES.iter().filter(|c| c.name.contains(only.as_str())) {
        let (per_unit, per_unit_mb) = time_plain(case.per_unit);
        let (plain_s, plain_mb) = time_plain(case.plain);
        let mut times = Vec::new();
        reset_peak_rss();
        for _ in 0..runs {
            let started = Instant::now();
            let request = QueryRequest {
                principal: &consumer,
                purpose: None,
                sql: case.dp,
                now: Utc::now(),
                dp: Some(DpOptions {
                    epsilon: 0.5,
                    max_groups: case.max_groups,
                    max_rows: case.max_rows,
                    ..DpOptions::new(0.5)
                }),
            };
            let (prepared, answer) = runtime.block_on(engine.query(&request)).unwrap();
            assert_eq!(prepared.privacy.mode, "dp");
            assert!(answer.batches.iter().map(|b| b.num_rows()).sum::<usize>() > 0);
            times.push(started.elapsed());
        }
        let (veil, veil_mb) = (median(times), peak_rss_mb());
        println!(
            "{:<44} {:>9.2} {:>9.2} {:>9.2} {:>8.2}× {:>8.1}× {:>9.0} {:>9.0} {:>9.0}",
            case.name,
            veil,
            per_unit,
            plain_s,
            veil / per_unit,
            veil / plain_s,
            veil_mb,
            per_unit_mb,
            plain_mb
        );
    }
}
