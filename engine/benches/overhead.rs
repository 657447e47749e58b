//! Policy-stage overhead: the same queries through veil (as a consumer) and
//! on plain DataFusion over the same files, in the same run, reported as
//! ratios; and the stage's planning time for a 5-join query.
//!
//! ```sh
//! VEIL_BENCH_PERSONS=10000000 VEIL_BENCH_DIR=/tmp/veil-10m cargo bench -p veil-engine --bench overhead
//! ```
//! The sample is generated into `VEIL_BENCH_DIR` when it is not there yet.
//! `VEIL_BENCH_ONLY=masked` runs only the queries whose name contains it.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use futures::StreamExt;
use veil_engine::{Dataset, Engine, QueryRequest};
use veil_policies::{DatasetManifest, Policy, Principal, Role};

use common::{ensure_sample, env};

const QUERIES: [(&str, &str); 4] = [
    (
        "masked LIMIT 10",
        "SELECT name, phone, county_code FROM population WHERE county_code = '530102' LIMIT 10",
    ),
    (
        "masked projection",
        "SELECT id_number, name, phone, address, county_code FROM population",
    ),
    (
        "aggregate(k) GROUP BY",
        "SELECT county_code, education, COUNT(ethnicity) AS n FROM population GROUP BY county_code, education",
    ),
    (
        "aggregate(k) SUM over utility",
        "SELECT month, utility, SUM(usage) AS usage FROM utility_usage GROUP BY month, utility",
    ),
];

const FIVE_JOINS: &str = "SELECT p.county_code, COUNT(*) FROM population p \
    JOIN legal_persons l ON l.county_code = p.county_code \
    JOIN tax t ON t.uscc = l.uscc \
    JOIN social_insurance s ON s.county_code = l.county_code \
    JOIN utility_usage u ON u.county_code = l.county_code \
    JOIN legal_persons l2 ON l2.county_code = p.county_code \
    WHERE p.sex = 'F' GROUP BY p.county_code";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let persons: u64 = env("VEIL_BENCH_PERSONS", 1_000_000);
    let dir = PathBuf::from(
        std::env::var("VEIL_BENCH_DIR").unwrap_or_else(|_| format!("/tmp/veil-bench-{persons}")),
    );
    let runs: usize = env("VEIL_BENCH_RUNS", 3);
    ensure_sample(&dir, persons);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    // The aggregate(k) channel: consumers get exact aggregates over k units
    // of L3 fields, as a granted principal does under the default preset
    // (which gives consumers without a grant only DP answers there).
    let policy = Policy::parse(&veil_policies::policy::DEFAULT_PRESET.replacen(
        r#"levels = { consumer = ["masked", "generalized", "dp"], modeler = ["generalized", "dp"] }"#,
        r#"levels = { consumer = ["masked", "generalized", "aggregate"], modeler = ["generalized", "aggregate"] }"#,
        1,
    ))
    .unwrap();
    // Plain DataFusion and veil's engine run with the same configuration.
    let mut engine = Engine::new(policy.clone(), "bench", [1; 32]);
    let plain = SessionContext::new_with_config(SessionConfig::new().with_batch_size(8192));
    for table in veil_datasets::TABLES {
        let text = std::fs::read_to_string(dir.join(format!("{table}.toml"))).unwrap();
        let manifest = DatasetManifest::parse(&text, &|g| policy.grade(g).is_some()).unwrap();
        let unique = veil_engine::source::check_source(&manifest, &dir, None)
            .unwrap()
            .unique_units;
        let path = dir.join(&manifest.path);
        engine.add_dataset(
            Dataset::open(manifest, 1, &path)
                .unwrap()
                .with_unique_units(unique),
        );
        runtime
            .block_on(plain.register_parquet(
                table,
                path.to_str().unwrap(),
                ParquetReadOptions::default(),
            ))
            .unwrap();
    }
    let consumer = Principal::new("bench-consumer", Role::Consumer);

    println!("persons: {persons}; median of {runs} runs each; ratio = veil / plain DataFusion");
    println!(
        "{:<32} {:>12} {:>12} {:>8} {:>10}",
        "query", "plain (ms)", "veil (ms)", "ratio", "rows"
    );
    let only = std::env::var("VEIL_BENCH_ONLY").unwrap_or_default();
    for (name, sql) in QUERIES
        .into_iter()
        .filter(|(n, _)| n.contains(only.as_str()))
    {
        let mut plain_times = Vec::new();
        let mut veil_times = Vec::new();
        let mut rows = (0, 0);
        for _ in 0..runs {
            let started = Instant::now();
            let n = runtime.block_on(async {
                let mut stream = plain
                    .sql(sql)
                    .await
                    .unwrap()
                    .execute_stream()
                    .await
                    .unwrap();
                let mut n = 0;
                while let Some(b) = stream.next().await {
                    n += b.unwrap().num_rows();
                }
                n
            });
            plain_times.push(started.elapsed());
            rows.0 = n;

            let started = Instant::now();
            let n = runtime.block_on(async {
                let request = QueryRequest {
                    principal: &consumer,
                    purpose: None,
                    sql,
                    now: Utc::now(),
                    dp: None,
                };
                let prepared = engine.prepare(&request).unwrap();
                let mut stream = engine.stream(&prepared).await.unwrap();
                let mut n = 0;
                while let Some(b) = stream.next().await {
                    n += b.unwrap().num_rows();
                }
                n
            });
            veil_times.push(started.elapsed());
            rows.1 = n;
        }
        let (p, v) = (median(plain_times), median(veil_times));
        println!(
            "{name:<32} {:>12.1} {:>12.1} {:>8.2} {:>10}",
            p.as_secs_f64() * 1e3,
            v.as_secs_f64() * 1e3,
            v.as_secs_f64() / p.as_secs_f64(),
            format!("{}/{}", rows.1, rows.0)
        );
    }

    // Planning: the policy stage (parse, plan against views, check, rewrite)
    // against DataFusion's own SQL planning of the same text, same run.
    let granted = {
        let mut p = consumer.clone();
        p.role = Role::Consumer;
        p
    };
    let request = QueryRequest {
        principal: &granted,
        purpose: None,
        sql: FIVE_JOINS,
        now: Utc::now(),
        dp: None,
    };
    let outcome = engine.prepare(&request);
    let n = 200;
    let started = Instant::now();
    for _ in 0..n {
        let _ = std::hint::black_box(engine.prepare(&request));
    }
    let stage = started.elapsed() / n;
    let started = Instant::now();
    for _ in 0..n {
        let _ =
            std::hint::black_box(runtime.block_on(plain.state().create_logical_plan(FIVE_JOINS)));
    }
    let df = started.elapsed() / n;
    println!(
        "planning a 5-join query: policy stage {:.3} ms (outcome: {}), DataFusion SQL planning {:.3} ms, ratio {:.2}",
        stage.as_secs_f64() * 1e3,
        match &outcome {
            Ok(_) => "accepted".to_string(),
            Err(e) => format!("refused: {e}"),
        },
        df.as_secs_f64() * 1e3,
        stage.as_secs_f64() / df.as_secs_f64()
    );
}
