//! The k checker: "no released value is made by fewer than k units", tested
//! on generated exact-aggregate queries.
//!
//! For every query of a small grammar over `tax` (filters on plain fields
//! and on the unit, keys, every allowed aggregate and the conditional forms
//! that are refused) that the stage accepts for a granted modeler, to whom
//! `revenue` and `tax_paid` are aggregate-only, each released group is
//! looked up in the raw data: the distinct companies with a value in the
//! aggregate's argument, under the same WHERE, must be at least k.

use std::collections::{BTreeMap, HashMap};

use datafusion::prelude::{ParquetReadOptions, SessionContext};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::testing::{granted_modeler, now, runtime, sample_dir};
use crate::engine::QueryRequest;

/// k of L3 in the default preset.
const K: i64 = 10;

#[derive(Debug, Clone)]
struct Query {
    filter: &'static str,
    keys: &'static str,
    aggregate: &'static str,
    /// The value each row contributes, as the raw check computes it (its
    /// FILTER folded in); None for COUNT(*).
    argument: Option<&'static str>,
}

fn query() -> impl Strategy<Value = Query> {
    (
        prop::sample::select(vec![
            "",
            "WHERE year = 2024",
            "WHERE year >= 2023 AND county_code LIKE '5301%'",
            "WHERE uscc = '{U}'",
            "WHERE uscc <> '{U}' AND year = 2025",
            "WHERE county_code = '530102'",
        ]),
        prop::sample::select(vec!["", "county_code", "year", "county_code, year"]),
        prop::sample::select(vec![
            ("SUM(revenue)", Some("revenue")),
            ("AVG(tax_paid * 10000)", Some("tax_paid * 10000")),
            ("COUNT(revenue)", Some("revenue")),
            (
                "SUM(CAST(revenue AS DOUBLE) / 100)",
                Some("CAST(revenue AS DOUBLE) / 100"),
            ),
            ("COUNT(*)", None),
            (
                "SUM(CASE WHEN uscc = '{U}' THEN revenue END)",
                Some("CASE WHEN uscc = '{U}' THEN revenue END"),
            ),
            (
                "SUM(revenue) FILTER (WHERE uscc = '{U}')",
                Some("CASE WHEN uscc = '{U}' THEN revenue END"),
            ),
            ("SUM(NULLIF(revenue, 0))", Some("NULLIF(revenue, 0)")),
            (
                "SUM(TRY_CAST(revenue AS TINYINT))",
                Some("TRY_CAST(revenue AS TINYINT)"),
            ),
        ]),
    )
        .prop_map(|(filter, keys, (aggregate, argument))| Query {
            filter,
            keys,
            aggregate,
            argument,
        })
}

#[test]
fn no_released_exact_aggregate_is_made_by_fewer_than_k_units() {
    let dir = sample_dir();
    let raw = SessionContext::new();
    runtime()
        .block_on(raw.register_parquet(
            "tax",
            dir.join("tax.parquet").to_str().unwrap(),
            ParquetReadOptions::default(),
        ))
        .unwrap();
    // A company named by the literals: the first one.
    let company: String = {
        let batches = runtime()
            .block_on(async {
                raw.sql("SELECT uscc FROM tax LIMIT 1")
                    .await?
                    .collect()
                    .await
            })
            .unwrap();
        arrow::util::display::array_value_to_string(batches[0].column(0), 0).unwrap()
    };
    let modeler = granted_modeler("tax");
    let mut runner = TestRunner::new(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    });
    let tally = std::sync::Mutex::new((0usize, 0usize, BTreeMap::<&'static str, usize>::new()));
    let result = runner.run(&query(), |q| {
        let mut t = tally.lock().unwrap();
        t.0 += 1;
        let keys = if q.keys.is_empty() {
            String::new()
        } else {
            format!("{}, ", q.keys)
        };
        let group = if q.keys.is_empty() {
            String::new()
        } else {
            format!(" GROUP BY {}", q.keys)
        };
        let sql = format!("SELECT {keys}{} AS v FROM tax {}{group}", q.aggregate, q.filter)
            .replace("{U}", &company);
        let answer = runtime().block_on(super::testing::engine().query(&QueryRequest {
            principal: &modeler,
            purpose: Some("benefits"),
            sql: &sql,
            now: now(),
            dp: None,
        }));
        let (prepared, answer) = match answer {
            Ok(a) => a,
            Err(e) => {
                *t.2.entry(super::testing::rule_of(Err(e), &sql)).or_insert(0) += 1;
                return Ok(());
            }
        };
        t.1 += 1;
        // COUNT(*) over `tax` counts rows of plain data: no threshold is owed.
        let Some(valued) = q.argument else {
            return Ok(());
        };
        prop_assert_eq!(prepared.privacy.mode, "aggregate", "{}", sql);
        // The units whose rows contribute a value, per group, in the raw data.
        let check = format!(
            "SELECT {keys}COUNT(DISTINCT CASE WHEN {valued} IS NOT NULL THEN uscc END) AS n FROM tax {}{group}",
            q.filter
        )
        .replace("{U}", &company);
        let batches = runtime()
            .block_on(async { raw.sql(&check).await?.collect().await })
            .unwrap();
        let width = if q.keys.is_empty() { 0 } else { q.keys.split(',').count() };
        let label = |b: &arrow::array::RecordBatch, r: usize| -> String {
            (0..width)
                .map(|c| arrow::util::display::array_value_to_string(b.column(c), r).unwrap())
                .collect::<Vec<_>>()
                .join("|")
        };
        let mut units: HashMap<String, i64> = HashMap::new();
        for b in &batches {
            let n = arrow::compute::cast(b.column(width), &arrow::datatypes::DataType::Int64).unwrap();
            let n = n.as_any().downcast_ref::<arrow::array::Int64Array>().unwrap();
            for r in 0..b.num_rows() {
                units.insert(label(b, r), n.value(r));
            }
        }
        for b in &answer.batches {
            for r in 0..b.num_rows() {
                let key = label(b, r);
                let n = units.get(&key).copied().unwrap_or(0);
                prop_assert!(n >= K, "{sql}: group {key:?} released with {n} units < k = {K}");
            }
        }
        Ok(())
    });
    let (generated, accepted, refused) = tally.into_inner().unwrap();
    println!(
        "k checker: {generated} queries generated, {accepted} accepted, {} refused {refused:?}",
        generated - accepted
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(accepted * 5 >= generated, "a real share is accepted");
}
