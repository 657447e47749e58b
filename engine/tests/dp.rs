//! Differentially private answers: what is released, how it is bounded, what
//! is refused, and a neighbouring-dataset check of the guarantee.

mod common;

use common::*;
use veil_engine::{DpOptions, QueryError, QueryRequest};

fn dp_request<'a>(
    principal: &'a veil_policies::Principal,
    sql: &'a str,
    options: DpOptions,
) -> QueryRequest<'a> {
    QueryRequest {
        principal,
        purpose: None,
        sql,
        now: now(),
        dp: Some(options),
    }
}

/// A DP query the stage refuses, as a policy denial or as invalid SQL.
fn assert_refused(sql: &str) {
    let err = run_dp(sql, DpOptions::new(1.0))
        .err()
        .unwrap_or_else(|| panic!("{sql} was answered"));
    assert!(
        matches!(err, QueryError::Denied(_) | QueryError::InvalidSql(_)),
        "{sql}: {err:?}"
    );
}

fn run_dp(
    sql: &str,
    options: DpOptions,
) -> Result<(veil_engine::PreparedQuery, Vec<Vec<String>>), QueryError> {
    let f = fixture();
    let c = consumer();
    let (prepared, answer) = f
        .runtime
        .block_on(f.engine.query(&dp_request(&c, sql, options)))?;
    Ok((prepared, rows(&answer.batches)))
}

/// Exact values straight from the files, for comparison.
fn exact(sql: &str) -> Vec<Vec<String>> {
    use datafusion::prelude::{ParquetReadOptions, SessionContext};
    let f = fixture();
    let ctx = SessionContext::new();
    f.runtime.block_on(async {
        for t in veil_datasets::TABLES {
            ctx.register_parquet(
                t,
                f.dir.join(format!("{t}.parquet")).to_str().unwrap(),
                ParquetReadOptions::default(),
            )
            .await
            .unwrap();
        }
        rows(&ctx.sql(sql).await.unwrap().collect().await.unwrap())
    })
}

#[test]
fn the_rewrite_bounds_contributions_before_aggregating() {
    let f = fixture();
    let c = consumer();
    let prepared = f
        .engine
        .prepare(&dp_request(&c, "SELECT diagnosis_category, COUNT(*) AS n, AVG(cost) AS cost FROM health_visits GROUP BY diagnosis_category", DpOptions { epsilon: 1.0, max_groups: 2, max_rows: 3, ..DpOptions::new(1.0) }))
        .unwrap();
    insta::assert_snapshot!(prepared.plan_text());
    let dp = prepared.dp.as_ref().unwrap();
    assert_eq!(dp.costs.len(), 1);
    assert_eq!(dp.costs[0].dataset, "health_visits");
    assert_eq!(prepared.privacy.mode, "dp");
    assert_eq!(prepared.privacy.epsilon_spent, 1.0);
}

#[test]
fn a_declared_domain_releases_every_group_empty_ones_included() {
    let (prepared, rows) = run_dp(
        "SELECT diagnosis_category, COUNT(*) AS n FROM health_visits WHERE diagnosis_category IN ('mental', 'eye') GROUP BY diagnosis_category",
        DpOptions::new(1.0),
    )
    .unwrap();
    assert_eq!(rows.len(), 18, "all 18 declared diagnosis categories");
    let noise = &prepared.dp.unwrap().noise[0];
    for r in &rows {
        let n: f64 = r[1].parse().unwrap();
        if r[0] != "mental" && r[0] != "eye" {
            assert!(
                n.abs() < 12.0 * noise.std + 1.0,
                "an empty group is only noise: {r:?}"
            );
        }
    }
}

#[test]
fn noisy_counts_are_close_to_the_bounded_truth() {
    // With one group and one row per person, the bounded count is the
    // number of distinct persons with a visit.
    let truth: f64 = exact("SELECT COUNT(DISTINCT id_number) FROM health_visits")[0][0]
        .parse()
        .unwrap();
    let (prepared, rows) = run_dp(
        "SELECT COUNT(*) AS n FROM health_visits",
        DpOptions::new(1.0),
    )
    .unwrap();
    let noise = &prepared.dp.unwrap().noise[0];
    let got: f64 = rows[0][0].parse().unwrap();
    assert!(
        (got - truth).abs() < 12.0 * noise.std,
        "{got} vs {truth} (noise std {})",
        noise.std
    );
    let (_, units) = run_dp(
        "SELECT COUNT(DISTINCT id_number) AS u FROM health_visits",
        DpOptions::new(1.0),
    )
    .unwrap();
    let units: f64 = units[0][0].parse().unwrap();
    assert!(
        (units - truth).abs() < 12.0 * noise.std,
        "{units} vs {truth}"
    );
}

#[test]
fn sums_are_clamped_to_the_declared_bounds() {
    // cost is declared [0, 50000]; with one row per person the clamped sum
    // is bounded by 50000 times the persons.
    let truth: f64 = exact(
        "SELECT SUM(LEAST(c, 50000)) FROM (SELECT id_number, FIRST_VALUE(cost) OVER (PARTITION BY id_number) c, ROW_NUMBER() OVER (PARTITION BY id_number) r FROM health_visits) WHERE r = 1",
    )[0][0]
    .parse()
    .unwrap();
    let (prepared, rows) = run_dp(
        "SELECT SUM(cost) AS total FROM health_visits",
        DpOptions::new(2.0),
    )
    .unwrap();
    let noise = &prepared.dp.unwrap().noise[0];
    let got: f64 = rows[0][0].parse().unwrap();
    // One random row per person is kept, not the first: compare the scale.
    assert!(got > 0.0 && got < 50_000.0 * PERSONS as f64);
    assert!(
        (got - truth).abs() < 0.5 * truth + 12.0 * noise.std,
        "{got} vs about {truth}"
    );
    let avg = run_dp(
        "SELECT AVG(cost) AS a FROM health_visits",
        DpOptions::new(2.0),
    )
    .unwrap()
    .1;
    let avg: f64 = avg[0][0].parse().unwrap();
    assert!(
        (0.0..=50_000.0).contains(&avg),
        "an average stays in the bounds: {avg}"
    );
}

/// VAR and STDDEV come from noisy sums of centred values and of their
/// squares over a noisy count: always within what values in the bounds can
/// have, and close to the exact figure when the noise is small.
#[test]
fn variances_and_standard_deviations_are_released_within_their_bounds() {
    // With Linf at least every person's visits and no keys, the bounded
    // statistics are the exact ones (cost is declared [0, 50000]).
    let most: u64 =
        exact("SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM health_visits GROUP BY id_number)")[0]
            [0]
        .parse()
        .unwrap();
    let truth: Vec<f64> = exact("SELECT VAR_POP(LEAST(cost, 50000)), STDDEV_POP(LEAST(cost, 50000)), VAR_SAMP(LEAST(cost, 50000)) FROM health_visits")[0]
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    let options = DpOptions {
        epsilon: 100.0,
        max_groups: 1,
        max_rows: most,
        ..DpOptions::new(100.0)
    };
    let (prepared, rows) = run_dp(
        "SELECT VAR_POP(cost) AS v, STDDEV_POP(cost) AS s, VAR(cost) AS vs FROM health_visits",
        options,
    )
    .unwrap();
    let dp = prepared.dp.unwrap();
    assert_eq!(dp.noise.len(), 3);
    assert!(dp.noise[1].statistic.starts_with("standard deviation"));
    let got: Vec<f64> = rows[0].iter().map(|v| v.parse().unwrap()).collect();
    for (g, t) in got.iter().zip(&truth) {
        assert!(
            (g - t).abs() <= 0.2 * t,
            "{got:?} against the exact {truth:?}"
        );
    }
    // Per group, at any ε: 0 <= VAR <= r², 0 <= STDDEV <= r.
    let r: f64 = 25_000.0;
    every_row_at_any_epsilon(
        "SELECT diagnosis_category, VAR(cost) AS v, STDDEV(cost) AS s FROM health_visits GROUP BY diagnosis_category ORDER BY diagnosis_category",
        |row| {
            let (v, s): (f64, f64) = (row[1].parse().unwrap(), row[2].parse().unwrap());
            assert!((0.0..=r * r * 2.0).contains(&v), "{row:?}");
            assert!((0.0..=r * 2f64.sqrt()).contains(&s), "{row:?}");
        },
    );
}

/// Runs a grouped DP query at a small and at a moderate ε and checks each
/// of its rows.
fn every_row_at_any_epsilon(sql: &str, check: impl Fn(&[String])) {
    for epsilon in [0.05, 1.0] {
        let (_, rows) = run_dp(sql, DpOptions::new(epsilon)).unwrap();
        assert!(!rows.is_empty(), "{sql}");
        for row in &rows {
            check(row);
        }
    }
}

/// MEDIAN, PERCENTILE_CONT (both spellings, WITHIN GROUP with either
/// order) and APPROX_PERCENTILE_CONT come from one noisy histogram of 32
/// bins over the declared bounds: within the bounds at any ε, and at a
/// large ε within a bin of the exact quantile of the clamped values, with
/// the resolution and the rank's interval reported.
#[test]
fn quantiles_come_from_a_noisy_histogram_over_the_bounds() {
    let most: u64 =
        exact("SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM health_visits GROUP BY id_number)")[0]
            [0]
        .parse()
        .unwrap();
    let options = DpOptions {
        epsilon: 100.0,
        max_groups: 1,
        max_rows: most,
        ..DpOptions::new(100.0)
    };
    let sql = "SELECT MEDIAN(cost) AS m, PERCENTILE_CONT(cost, 0.9) AS p90, percentile_cont(0.1) WITHIN GROUP (ORDER BY cost DESC) AS p90_desc, APPROX_PERCENTILE_CONT(cost, 0.25) AS p25 FROM health_visits";
    let (prepared, rows) = run_dp(sql, options).unwrap();
    let dp = prepared.dp.unwrap();
    assert_eq!(dp.noise.len(), 4);
    // cost is declared [0, 50000]: bins of 1562.5.
    let width = 50_000.0 / 32.0;
    for n in &dp.noise {
        assert!(n.statistic.starts_with("quantile"), "{n:?}");
        assert_eq!(n.resolution, Some(width));
        assert!(
            n.ci95 > 0.0 && n.std > n.scale,
            "the rank adds bins' noise: {n:?}"
        );
    }
    let got: Vec<f64> = rows[0].iter().map(|v| v.parse().unwrap()).collect();
    let truth = |q: f64| -> f64 {
        exact(&format!(
            "SELECT approx_percentile_cont(LEAST(cost, 50000), {q}, 10000) FROM health_visits"
        ))[0][0]
            .parse()
            .unwrap()
    };
    for (g, q) in got.iter().zip([0.5, 0.9, 0.9, 0.25]) {
        let t = truth(q);
        assert!(
            (g - t).abs() <= width,
            "the {q} quantile: {g} against the exact {t}"
        );
    }
    // Per group, at any ε, within the bounds.
    every_row_at_any_epsilon(
        "SELECT diagnosis_category, MEDIAN(cost) AS m, APPROX_MEDIAN(cost) AS am FROM health_visits GROUP BY diagnosis_category ORDER BY diagnosis_category",
        |row| {
            for v in &row[1..] {
                let v: f64 = v.parse().unwrap();
                assert!((0.0..=50_000.0).contains(&v), "{row:?}");
            }
        },
    );
    // Enumerated groups draw at most 1,000,000 noisy values in all: 18
    // diagnoses × 129 counties × 14 quantiles × 32 bins is over.
    let medians: Vec<String> = (1..=14)
        .map(|i| format!("PERCENTILE_CONT(cost, {}) AS q{i}", i as f64 / 15.0))
        .collect();
    let wide = format!(
        "SELECT diagnosis_category, county_code, {} FROM health_visits GROUP BY diagnosis_category, county_code",
        medians.join(", ")
    );
    match run_dp(&wide, DpOptions::new(1.0)) {
        Err(QueryError::InvalidSql(m)) => assert!(m.contains("noisy values"), "{m}"),
        other => panic!("{:?}", other.map(|(_, rows)| rows.len())),
    }
    // What the stage does not understand is refused, never guessed.
    for sql in [
        "SELECT PERCENTILE_CONT(cost, 1.5) FROM health_visits",
        "SELECT PERCENTILE_CONT(cost, cost / 100000) FROM health_visits",
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY visit_date) FROM health_visits",
        "SELECT MEDIAN(visit_date) FROM health_visits",
        "SELECT MEDIAN(DISTINCT cost) FROM health_visits",
    ] {
        assert_refused(sql);
    }
}

/// A key that reads a column the caller may read in the clear (here a
/// company's registration date, joined by its unit from the legal persons
/// base) takes that column's distinct values as its public domain: every
/// one is released, those no taxed company has included, and none is
/// selected by its noisy count. The values are the caller's own plain
/// query's, so a region-scoped caller's domain is its region's.
#[test]
fn keys_from_a_column_read_in_the_clear_are_enumerated() {
    let sql = "SELECT l.established_date, COUNT(*) AS n, SUM(t.revenue) AS revenue FROM tax t JOIN legal_persons l ON t.uscc = l.uscc GROUP BY l.established_date";
    let (prepared, rows) = run_dp(sql, DpOptions::new(0.5)).unwrap();
    let dp = prepared.dp.unwrap();
    assert_eq!(dp.public_key_columns(), ["legal_persons.established_date"]);
    let count = |sql: &str| -> usize { exact(sql)[0][0].parse().unwrap() };
    let dates = count("SELECT COUNT(DISTINCT established_date) FROM legal_persons");
    let taxed = count(
        "SELECT COUNT(DISTINCT l.established_date) FROM tax t JOIN legal_persons l ON t.uscc = l.uscc",
    );
    assert_eq!(rows.len(), dates, "every registration date is a group");
    assert!(
        taxed < dates,
        "some dates have no taxed company: {taxed} of {dates}"
    );

    let f = fixture();
    let k = kunming();
    let (_, answer) = f
        .runtime
        .block_on(f.engine.query(&dp_request(&k, sql, DpOptions::new(0.5))))
        .unwrap();
    let regional = count(
        "SELECT COUNT(DISTINCT established_date) FROM legal_persons WHERE county_code LIKE '5301%'",
    );
    assert_eq!(common::rows(&answer.batches).len(), regional);
    assert!(regional < dates);

    // A column of a dataset the answer protects is no public domain, even
    // where the caller may read it in the clear (a taxed company's code):
    // the released groups would say which units are in it.
    for sql in [
        "SELECT hospital, COUNT(*) FROM health_visits GROUP BY hospital",
        "SELECT t.uscc, COUNT(*) FROM tax t GROUP BY t.uscc",
    ] {
        let (prepared, _) = run_dp(sql, DpOptions::new(1.0)).unwrap();
        assert!(
            prepared.dp.unwrap().public_key_columns().is_empty(),
            "{sql}"
        );
    }
}

#[test]
fn keys_without_a_domain_go_through_partition_selection() {
    let (prepared, rows) = run_dp(
        "SELECT hospital, COUNT(*) AS n FROM health_visits GROUP BY hospital",
        DpOptions::new(1.0),
    )
    .unwrap();
    let threshold = prepared.dp.as_ref().unwrap().selection_threshold.unwrap();
    let all =
        exact("SELECT hospital, COUNT(DISTINCT id_number) FROM health_visits GROUP BY hospital");
    assert!(
        !rows.is_empty() && rows.len() < all.len(),
        "{} of {} hospitals released",
        rows.len(),
        all.len()
    );
    for r in &rows {
        let units: i64 = all.iter().find(|a| a[0] == r[0]).unwrap()[1]
            .parse()
            .unwrap();
        assert!(
            units as f64 > threshold as f64 / 3.0,
            "{} with {units} persons passed a threshold of {threshold}",
            r[0]
        );
    }
    // A group made of one person never appears.
    let one = exact("SELECT id_number, hospital FROM health_visits LIMIT 1");
    let sql = format!(
        "SELECT hospital, COUNT(*) FROM health_visits WHERE id_number = '{}' GROUP BY hospital",
        one[0][0]
    );
    assert!(run_dp(&sql, DpOptions::new(1.0)).unwrap().1.is_empty());
}

#[test]
fn shapes_that_would_act_before_the_noise_are_refused() {
    let refused = [
        // Post-processing that would read more than the noisy answer.
        "SELECT diagnosis_category, COUNT(*) FROM health_visits GROUP BY diagnosis_category HAVING COUNT(*) > (SELECT COUNT(*) FROM health_visits WHERE diagnosis_category = 'mental')",
        "SELECT diagnosis_category, COUNT(*) AS n FROM health_visits GROUP BY diagnosis_category HAVING EXISTS (SELECT 1 FROM health_visits h WHERE h.diagnosis_category = 'mental')",
        "SELECT diagnosis_category, COUNT(*) AS n FROM health_visits GROUP BY diagnosis_category HAVING diagnosis_category IN (SELECT diagnosis_category FROM health_visits WHERE cost > 1000)",
        "SELECT diagnosis_category, COUNT(*) AS n, RANK() OVER (ORDER BY COUNT(*)) FROM health_visits GROUP BY diagnosis_category",
        "SELECT DISTINCT COUNT(*) FROM health_visits GROUP BY diagnosis_category",
        "SELECT n FROM (SELECT diagnosis_category, COUNT(*) AS n FROM health_visits GROUP BY diagnosis_category) t JOIN health_visits h ON h.diagnosis_category = t.diagnosis_category",
        "SELECT MIN(cost) FROM health_visits",
        "SELECT VAR(DISTINCT cost) FROM health_visits",
        "SELECT COUNT(DISTINCT hospital) FROM health_visits",
        "SELECT cost FROM health_visits",
        "SELECT a.county_code, COUNT(*) FROM health_visits a JOIN health_visits b ON a.county_code = b.county_code GROUP BY a.county_code",
        "SELECT COUNT(*) FROM health_visits h1 JOIN health_visits h2 ON h1.id_number = h1.id_number",
        "SELECT COUNT(*) FROM health_visits WHERE EXISTS (SELECT 1 FROM health_visits h2 WHERE h2.diagnosis_category = 'mental')",
        "SELECT industry, COUNT(*) FROM legal_persons GROUP BY industry",
    ];
    for sql in refused {
        assert_refused(sql);
    }
    for bad in [0.0, -1.0, f64::NAN, 1000.0] {
        assert!(
            run_dp("SELECT COUNT(*) FROM health_visits", DpOptions::new(bad)).is_err(),
            "{bad}"
        );
    }
    // Joining two protected datasets on their privacy units is allowed.
    let joined = run_dp(
        "SELECT COUNT(*) FROM health_visits a JOIN health_visits b ON a.id_number = b.id_number",
        DpOptions::new(1.0),
    );
    assert!(joined.is_ok(), "{joined:?}");
    // A dataset with protected fields is charged even when the query names
    // none of them: its rows are counted.
    let (prepared, _) = run_dp(
        "SELECT county_code, COUNT(*) FROM population GROUP BY county_code",
        DpOptions::new(1.0),
    )
    .unwrap();
    let charged: Vec<_> = prepared
        .dp
        .unwrap()
        .costs
        .into_iter()
        .map(|c| c.dataset)
        .collect();
    assert_eq!(charged, ["population"]);
}

/// HAVING, ORDER BY, LIMIT and arithmetic run on the noisy answer: the
/// bounded statistics (what is noised) are those of the query without them,
/// and what the caller sees is the post-processing of one noisy release.
#[test]
fn post_processing_runs_on_the_noisy_answer_only() {
    let f = fixture();
    let c = consumer();
    let core = "SELECT diagnosis_category, COUNT(*) AS n, SUM(cost) AS total FROM health_visits GROUP BY diagnosis_category";
    let with_post = "SELECT diagnosis_category, COUNT(*) AS n, SUM(cost) AS total, SUM(cost) / COUNT(*) AS per_visit FROM health_visits GROUP BY diagnosis_category HAVING COUNT(*) > 20 ORDER BY n DESC, diagnosis_category LIMIT 3";
    let plan = |sql: &str| {
        f.engine
            .prepare(&dp_request(&c, sql, DpOptions::new(1.0)))
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
    };
    // The same exact statistics are computed and noised: nothing of the
    // HAVING, ORDER BY or LIMIT is in the plan that reads the data.
    let (a, b) = (plan(core), plan(with_post));
    let strip_seed = |text: String| {
        text.lines()
            .filter(|l| !l.contains("veil_selection_hash"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(strip_seed(a.plan_text()), strip_seed(b.plan_text()));
    assert!(!b.plan_text().contains("Sort") && !b.plan_text().contains("Limit"));
    // The noise is reported under the answer's names for the aggregates.
    let noise: Vec<_> =
        b.dp.as_ref()
            .unwrap()
            .noise
            .iter()
            .map(|n| n.column.clone())
            .collect();
    assert_eq!(noise, ["n", "total"]);

    for _ in 0..5 {
        let (_, answer) = f
            .runtime
            .block_on(
                f.engine
                    .query(&dp_request(&c, with_post, DpOptions::new(1.0))),
            )
            .unwrap();
        let names: Vec<_> = answer
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["diagnosis_category", "n", "total", "per_visit"]);
        let rows = rows(&answer.batches);
        assert!(rows.len() <= 3, "{rows:?}");
        let n: Vec<i64> = rows.iter().map(|r| r[1].parse().unwrap()).collect();
        assert!(
            n.iter().all(|&n| n > 20),
            "HAVING on the noisy counts: {rows:?}"
        );
        assert!(
            n.windows(2).all(|w| w[0] >= w[1]),
            "ORDER BY n DESC: {rows:?}"
        );
        for r in &rows {
            let (n, total, per): (f64, f64, f64) = (
                r[1].parse().unwrap(),
                r[2].parse().unwrap(),
                r[3].parse().unwrap(),
            );
            // The ratio is of the released values, not of exact ones.
            assert!(
                (per - total / n).abs() <= 1e-6 * per.abs().max(1.0),
                "{r:?}"
            );
        }
    }
    // A type error in the post-processing is refused before anything is
    // spent.
    let bad = "SELECT diagnosis_category, COUNT(*) AS n FROM health_visits GROUP BY diagnosis_category HAVING n LIKE 3";
    let err = f
        .engine
        .prepare(&dp_request(&c, bad, DpOptions::new(1.0)))
        .unwrap_err();
    assert!(matches!(err, QueryError::InvalidSql(_)), "{err:?}");
}

#[test]
fn without_epsilon_dp_fields_are_answered_at_the_grades_default_epsilon() {
    let (prepared, rows) = run_as(
        &consumer(),
        None,
        "SELECT diagnosis_category, COUNT(*) FROM health_visits GROUP BY diagnosis_category",
    )
    .unwrap();
    assert_eq!(prepared.privacy.mode, "dp");
    // L4's `query_epsilon` in the default preset.
    assert_eq!(prepared.privacy.epsilon_spent, 0.1);
    assert_eq!(prepared.dp.unwrap().costs[0].dataset, "health_visits");
    assert_eq!(rows.len(), 18);
    // Row by row there is no DP answer: the refusal says how to get one.
    let message = denied(&consumer(), "SELECT diagnosis_category FROM health_visits");
    assert!(message.contains("epsilon"), "{message}");
}

/// Neighbouring datasets through the whole engine: the answer with one
/// person removed (a filter on the dp identifier, allowed under DP) centres
/// one below the answer with everyone. The outcome-by-outcome e^ε bound is
/// checked with controlled randomness in `dp::release`'s tests.
#[test]
fn removing_one_person_moves_the_answer_within_the_guarantee() {
    let f = fixture();
    let c = consumer();
    let target = exact("SELECT id_number, county_code FROM health_visits LIMIT 1");
    let (id, county) = (&target[0][0], &target[0][1]);
    let with = format!("SELECT COUNT(*) AS n FROM health_visits WHERE county_code = '{county}'");
    let without = format!("{with} AND id_number <> '{id}'");
    let epsilon = 1.0;
    let runs = 300;
    let sample = |sql: &str| -> Vec<i64> {
        (0..runs)
            .map(|_| {
                let (_, a) = f
                    .runtime
                    .block_on(
                        f.engine
                            .query(&dp_request(&c, sql, DpOptions::new(epsilon))),
                    )
                    .unwrap();
                rows(&a.batches)[0][0].parse().unwrap()
            })
            .collect()
    };
    let (a, b) = (sample(&with), sample(&without));
    let mean = |v: &[i64]| v.iter().sum::<i64>() as f64 / v.len() as f64;
    // The exact counts differ by exactly one; the means' standard error is
    // about 0.1, so 0.6 is six of them.
    assert!(
        (mean(&a) - mean(&b) - 1.0).abs() < 0.6,
        "means {} and {}",
        mean(&a),
        mean(&b)
    );
}

#[test]
fn one_group_per_unit_keeps_each_person_in_exactly_one_group() {
    // 18 declared categories and L0 = 1: each unit's one group is drawn at
    // random. Every person then counts once (Linf = 1) in one category, so
    // the released counts add up to the persons, not the visits.
    let persons: f64 = exact("SELECT COUNT(DISTINCT id_number) FROM health_visits")[0][0]
        .parse()
        .unwrap();
    let visits: f64 = exact("SELECT COUNT(*) FROM health_visits")[0][0]
        .parse()
        .unwrap();
    assert!(visits > persons * 1.2, "{visits} visits, {persons} persons");
    let (prepared, rows) = run_dp(
        "SELECT diagnosis_category, COUNT(*) AS n FROM health_visits GROUP BY diagnosis_category",
        DpOptions::new(50.0),
    )
    .unwrap();
    assert_eq!(rows.len(), 18);
    let noise = &prepared.dp.unwrap().noise[0];
    let total: f64 = rows.iter().map(|r| r[1].parse::<f64>().unwrap()).sum();
    assert!(
        (total - persons).abs() < 12.0 * noise.std * 18f64.sqrt() + 1.0,
        "{total} released against {persons} persons (noise std {})",
        noise.std
    );
}

fn number(v: &str) -> f64 {
    v.parse().unwrap_or_else(|_| panic!("{v} is not a number"))
}

/// The most rows one person has in health_visits.
fn most_visits() -> u64 {
    exact("SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM health_visits GROUP BY id_number)")[0][0]
        .parse()
        .unwrap()
}

/// Automatic bounds (ApproxBounds): asked for, or for an argument without
/// declared bounds, they are estimated when the query runs from a share
/// of its ε, said in the answer, and hold the bulk of the values; the
/// answer costs the ε asked, no more.
#[test]
fn automatic_bounds_are_estimated_from_a_share_of_epsilon() {
    let f = fixture();
    let c = consumer();
    let options = DpOptions {
        max_rows: most_visits(),
        auto_bounds: true,
        ..DpOptions::new(100.0)
    };
    let sql = "SELECT SUM(cost) AS s FROM health_visits";
    // Before it runs, the bounds and the noise they set are unknown.
    let prepared = f.engine.prepare(&dp_request(&c, sql, options)).unwrap();
    let dp = prepared.dp.as_ref().unwrap();
    assert!(dp.bounds_pending());
    assert!(
        dp.noise
            .iter()
            .all(|n| n.auto_bounds && n.bounds.is_none() && n.std.is_nan()),
        "{:?}",
        dp.noise
    );
    assert_eq!(dp.epsilon_for(1000.0), vec![None]);

    let (prepared, rows) = run_dp(sql, options).unwrap();
    assert_eq!(prepared.privacy.epsilon_spent, 100.0);
    let dp = prepared.dp.as_ref().unwrap();
    assert!(!dp.bounds_pending());
    let n = &dp.noise[0];
    assert!(n.auto_bounds && n.std.is_finite(), "{n:?}");
    let (lo, hi) = n.bounds.unwrap();
    let q = |p: f64| {
        number(
            &exact(&format!(
                "SELECT approx_percentile_cont(cost, {p}, 10000) FROM health_visits"
            ))[0][0],
        )
    };
    let max = number(&exact("SELECT MAX(cost) FROM health_visits")[0][0]);
    assert!(
        lo <= q(0.01) && q(0.99) <= hi && hi <= 2.0 * max,
        "[{lo}, {hi}]"
    );
    let truth = number(&exact("SELECT SUM(cost) FROM health_visits")[0][0]);
    let got = number(&rows[0][0]);
    assert!((got - truth).abs() <= 0.02 * truth, "{got} against {truth}");

    // An argument without declared bounds has automatic ones unasked;
    // every kind of aggregate that clamps takes them.
    let (prepared, rows) = run_dp(
        "SELECT diagnosis_category, AVG(cost / 100) AS a, VAR(cost / 100) AS v, MEDIAN(cost / 100) AS m, SUM(cost) AS s FROM health_visits GROUP BY diagnosis_category",
        DpOptions::new(5.0),
    )
    .unwrap();
    let noise = &prepared.dp.as_ref().unwrap().noise;
    let auto: Vec<bool> = noise.iter().map(|n| n.auto_bounds).collect();
    assert_eq!(auto, [true, true, true, false], "{noise:?}");
    assert_eq!(noise[3].bounds, Some((0.0, 50_000.0)));
    for row in &rows {
        let (lo, hi) = noise[0].bounds.unwrap();
        let a = number(&row[1]);
        assert!(lo <= a && a <= hi, "{row:?} in [{lo}, {hi}]");
    }

    // What is not a number has no bounds to estimate.
    assert_refused("SELECT MEDIAN(hospital) FROM health_visits");
    // Too few rows for the ε: nothing stands out of the noise; the refusal
    // says so, and nothing of the data.
    match run_dp(
        "SELECT SUM(cost) AS s FROM health_visits WHERE cost > 49000",
        DpOptions {
            auto_bounds: true,
            ..DpOptions::new(0.01)
        },
    ) {
        Err(QueryError::Limit(m)) => {
            assert!(m.contains("automatic bounds of `s`"), "{m}");
            assert!(!m.contains("49000"), "{m}");
        }
        other => panic!("{:?}", other.map(|(_, rows)| rows)),
    }
}

/// Asked for, each noisy cell comes with a 95% interval of the statistic
/// before noise, carried through the post-processing beside its cell; a
/// computed column has none.
#[test]
fn intervals_go_with_each_noisy_cell() {
    let options = DpOptions {
        intervals: true,
        ..DpOptions::new(1.0)
    };
    let f = fixture();
    let c = consumer();
    let sql = "SELECT diagnosis_category, COUNT(*) AS n, SUM(cost) AS s, AVG(cost) AS a, STDDEV(cost) AS sd, MEDIAN(cost) AS m, COUNT(*) * 2 AS twice FROM health_visits GROUP BY diagnosis_category HAVING COUNT(*) > 10 ORDER BY n DESC LIMIT 5";
    let (_, answer) = f
        .runtime
        .block_on(f.engine.query(&dp_request(&c, sql, options)))
        .unwrap();
    let names: Vec<String> = answer
        .schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut expected: Vec<String> = ["diagnosis_category", "n", "s", "a", "sd", "m", "twice"]
        .map(String::from)
        .to_vec();
    for c in ["n", "s", "a", "sd", "m"] {
        expected.push(format!("{c}_ci95_lo"));
        expected.push(format!("{c}_ci95_hi"));
    }
    assert_eq!(names, expected);
    let rows = rows(&answer.batches);
    assert!(!rows.is_empty());
    let mut widths = Vec::new();
    for row in &rows {
        let at = |name: &str| number(&row[names.iter().position(|n| n == name).unwrap()]);
        // Each released value lies in its own interval (rows stay aligned
        // through HAVING, ORDER BY and LIMIT), and the quantile's within
        // the bounds.
        for c in ["n", "s", "a", "sd"] {
            let (lo, v, hi) = (
                at(&format!("{c}_ci95_lo")),
                at(c),
                at(&format!("{c}_ci95_hi")),
            );
            assert!(
                lo <= v && v <= hi && lo < hi,
                "{c}: {lo} {v} {hi} in {row:?}"
            );
        }
        let (lo, hi) = (at("m_ci95_lo"), at("m_ci95_hi"));
        assert!(0.0 <= lo && lo < hi && hi <= 50_000.0, "{row:?}");
        widths.push(at("n_ci95_hi") - at("n_ci95_lo"));
    }
    // A count's interval has the same width in every group (none is near 0).
    assert!(
        widths.windows(2).all(|w| (w[0] - w[1]).abs() < 1e-9),
        "{widths:?}"
    );

    // The interval holds the exact statistic: one group per person and
    // every row of theirs kept, 20 answers.
    let options = DpOptions {
        max_rows: most_visits(),
        intervals: true,
        ..DpOptions::new(1.0)
    };
    let truth = number(&exact("SELECT COUNT(*) FROM health_visits")[0][0]);
    let held = (0..20)
        .filter(|_| {
            let (_, rows) = run_dp("SELECT COUNT(*) AS n FROM health_visits", options).unwrap();
            number(&rows[0][1]) <= truth && truth <= number(&rows[0][2])
        })
        .count();
    assert!(held >= 15, "{held} of 20");

    // Not asked for: no intervals. A name taken: refused, not overwritten.
    let (_, rows) = run_dp(
        "SELECT COUNT(*) AS n FROM health_visits",
        DpOptions::new(1.0),
    )
    .unwrap();
    assert_eq!(rows[0].len(), 1);
    match run_dp(
        "SELECT COUNT(*) AS n, SUM(cost) AS n_ci95_lo FROM health_visits",
        options,
    ) {
        Err(QueryError::InvalidSql(m)) => assert!(m.contains("n_ci95_lo"), "{m}"),
        other => panic!("{:?}", other.map(|(_, rows)| rows)),
    }
}
