//! In-domain models: the released parameters approach the truth as ε grows,
//! on data whose relation the test knows; every refusal path.

mod common;

use std::path::Path;

use chrono::Utc;
use rand::{Rng, RngExt, SeedableRng};
use veil_engine::dp::sample::Entropy;
use veil_engine::model::{Column, ModelError, ModelSpec, Params, PerUnit, Released, TrainRequest};
use veil_engine::{Dataset, Engine};
use veil_policies::model::Template;
use veil_policies::{DatasetManifest, Grant, Policy, Principal, RegionScope, Role};

/// Entropy the test controls.
struct Seeded(rand_chacha::ChaCha20Rng);

impl Entropy for Seeded {
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
}

const TRUTH: (f64, f64, f64) = (3.0, 2.0, -1.5);
const ROWS: usize = 4000;
/// P(flag) = σ(−1 + 0.8·x1 − 0.6·x2).
const LOGIT: (f64, f64, f64) = (-1.0, 0.8, -0.6);

fn manifest(name: &str, open: &str, fields: &str) -> String {
    format!(
        r#"format = 1
[dataset]
name = "{name}"
title = "{name}"
description = "test data"
database = "theme"
providing_institution = "Provider of {name}"
collecting_institution = "Provider of {name}"
approving_institution = "Data Bureau"
data_form = "table"
format = "csv"
path = "{name}.csv"
update_frequency = "yearly"
privacy_unit = "unit"
region_field = "county_code"
[dataset.share]
attribute = "conditional"
conditions = "on approval"
scope = "province"
legal_basis = "test"
[dataset.open]
attribute = "{open}"
conditions = "test"
[[field]]
name = "unit"
type = "string"
description = "unit"
category = "identity"
grade = "L1"
identifier = "other"
[[field]]
name = "county_code"
type = "string"
description = "county"
category = "region"
grade = "L1"
{fields}"#
    )
}

fn numeric(name: &str, grade: &str, bounds: Option<(f64, f64)>) -> String {
    let bounds = bounds.map_or(String::new(), |(l, u)| format!("bounds = [{l}, {u}]\n"));
    format!(
        "[[field]]\nname = \"{name}\"\ntype = \"float\"\ndescription = \"{name}\"\ncategory = \"finance\"\ngrade = \"{grade}\"\n{bounds}"
    )
}

/// `firms`: y = 3 + 2·x1 − 1.5·x2 + noise, two rows per unit (the mean is
/// the unit's value). `firms_extra`: x3 for every other unit.
/// `closed`: the same, not open. Kunming units are even, Qujing odd.
fn write_data(dir: &Path) {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
    let mut firms = String::from("unit,county_code,x1,x2,y,x_free,secret,sector,flag\n");
    let mut extra = String::from("unit,county_code,x3\n");
    for i in 0..ROWS {
        let (x1, x2): (f64, f64) = (rng.random_range(0.0..10.0), rng.random_range(0.0..10.0));
        let y = TRUTH.0 + TRUTH.1 * x1 + TRUTH.2 * x2;
        let county = if i % 2 == 0 { "530102" } else { "530302" };
        let logit = LOGIT.0 + LOGIT.1 * x1 + LOGIT.2 * x2;
        let flag = u8::from(rng.random_range(0.0..1.0) < 1.0 / (1.0 + (-logit).exp()));
        for jitter in [-0.5, 0.5] {
            let e: f64 = rng.random_range(-0.2..0.2);
            firms.push_str(&format!(
                "u{i},{county},{x1},{x2},{},{x1},{x2},retail,{flag}\n",
                y + jitter + e
            ));
        }
        if i % 2 == 0 {
            extra.push_str(&format!("u{i},{county},{}\n", x1 * 3.0));
        }
    }
    std::fs::write(dir.join("firms.csv"), &firms).unwrap();
    std::fs::write(dir.join("closed.csv"), &firms).unwrap();
    std::fs::write(dir.join("firms_extra.csv"), extra).unwrap();
    let fields = [
        numeric("x1", "L2", Some((0.0, 10.0))),
        numeric("x2", "L2", Some((0.0, 10.0))),
        numeric("y", "L2", Some((-20.0, 30.0))),
        numeric("x_free", "L2", None),
        numeric("secret", "core", Some((0.0, 10.0))),
        "[[field]]\nname = \"sector\"\ntype = \"string\"\ndescription = \"s\"\ncategory = \"business\"\ngrade = \"L1\"\n".into(),
        numeric("flag", "L2", Some((0.0, 1.0))),
    ]
    .concat();
    std::fs::write(
        dir.join("firms.toml"),
        manifest("firms", "conditional", &fields),
    )
    .unwrap();
    std::fs::write(
        dir.join("closed.toml"),
        manifest("closed", "not_open", &fields),
    )
    .unwrap();
    std::fs::write(
        dir.join("firms_extra.toml"),
        manifest(
            "firms_extra",
            "unconditional",
            &numeric("x3", "L2", Some((0.0, 30.0))),
        ),
    )
    .unwrap();
}

fn policy() -> Policy {
    let text = format!(
        "{}\nfirms = [\"linear_regression\", \"logistic_regression\", \"histogram\", \"quantiles\"]\nfirms_extra = [\"linear_regression\"]\nclosed = [\"linear_regression\"]\n",
        veil_policies::policy::DEFAULT_PRESET
    );
    Policy::parse(&text).unwrap()
}

struct Setup {
    engine: Engine,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path());
    let policy = policy();
    let mut engine = Engine::new(policy.clone(), "v1-test", [3; 32]);
    for name in ["firms", "firms_extra", "closed"] {
        let text = std::fs::read_to_string(dir.path().join(format!("{name}.toml"))).unwrap();
        let manifest = DatasetManifest::parse(&text, &|g| policy.grade(g).is_some()).unwrap();
        let source = veil_engine::source::check_source(&manifest, dir.path(), None).unwrap();
        let path = dir.path().join(&manifest.path);
        // firms has two rows per unit (folded), firms_extra one (read straight).
        assert_eq!(source.unique_units, name == "firms_extra");
        engine.add_dataset(
            Dataset::open(manifest, 1, &path)
                .unwrap()
                .with_unique_units(source.unique_units),
        );
    }
    Setup { engine, _dir: dir }
}

fn spec(template: Template, features: &[(&str, &str)], target: Option<(&str, &str)>) -> ModelSpec {
    ModelSpec {
        template,
        features: features.iter().map(|(d, f)| Column::new(d, f)).collect(),
        target: target.map(|(d, f)| Column::new(d, f)),
        above: (template == Template::LogisticRegression).then_some(0.0),
        epsilon: 1.0,
        params: Params::for_template(template),
    }
}

/// A spec over the two features `x1` and `x2` of `firms`.
fn two_features(template: Template, target: &str) -> ModelSpec {
    spec(
        template,
        &[("firms", "x1"), ("firms", "x2")],
        Some(("firms", target)),
    )
}

fn request<'a>(principal: &'a Principal, spec: &'a ModelSpec) -> TrainRequest<'a> {
    TrainRequest {
        principal,
        purpose: None,
        spec,
        now: Utc::now(),
    }
}

fn modeler() -> Principal {
    Principal::new("m", Role::Modeler)
}

fn train(engine: &Engine, spec: &ModelSpec, seed: u64) -> Result<Released, ModelError> {
    let principal = modeler();
    let prepared = engine.prepare_model(&request(&principal, spec))?;
    let mut e = Seeded(rand_chacha::ChaCha20Rng::seed_from_u64(seed));
    Ok(prepared.fit(&mut e).model.released)
}

fn linear_error(engine: &Engine, epsilon: f64, seed: u64) -> f64 {
    let mut s = two_features(Template::LinearRegression, "y");
    s.epsilon = epsilon;
    let Released::LinearRegression {
        intercept,
        coefficients,
        ..
    } = train(engine, &s, seed).unwrap()
    else {
        panic!("not a linear model");
    };
    (intercept - TRUTH.0).abs()
        + (coefficients[0] - TRUTH.1).abs()
        + (coefficients[1] - TRUTH.2).abs()
}

/// Every template fits at the ends of the ε range, so nothing charged can
/// fail to be released for want of precision in the noise.
#[test]
fn every_template_fits_at_the_ends_of_the_epsilon_range() {
    let s = setup();
    for template in [
        Template::LinearRegression,
        Template::LogisticRegression,
        Template::Histogram,
        Template::Quantiles,
    ] {
        for epsilon in [
            *veil_engine::dp::EPSILON_RANGE.start(),
            *veil_engine::dp::EPSILON_RANGE.end(),
        ] {
            let mut spec = match template {
                Template::LinearRegression | Template::LogisticRegression => {
                    two_features(template, "y")
                }
                _ => spec(template, &[("firms", "x1")], None),
            };
            spec.epsilon = epsilon;
            train(&s.engine, &spec, 1).unwrap_or_else(|e| panic!("{template:?} at {epsilon}: {e}"));
        }
    }
}

#[test]
fn linear_coefficients_approach_the_truth_as_epsilon_grows() {
    let s = setup();
    let errors: Vec<f64> = [0.01, 0.1, 1.0, 10.0, 100.0]
        .iter()
        .map(|&eps| {
            (0..8)
                .map(|seed| linear_error(&s.engine, eps, seed))
                .sum::<f64>()
                / 8.0
        })
        .collect();
    for pair in errors.windows(2) {
        assert!(
            pair[1] < pair[0],
            "error does not shrink with ε: {errors:?}"
        );
    }
    assert!(
        errors[4] < 0.05,
        "ε = 100 is still far from the truth: {errors:?}"
    );
    assert!(errors[0] > 100.0 * errors[4], "{errors:?}");
}

#[test]
fn logistic_coefficients_approach_the_truth_as_epsilon_grows() {
    let s = setup();
    let error = |epsilon: f64, seed: u64| {
        let mut sp = two_features(Template::LogisticRegression, "flag");
        sp.above = Some(0.5);
        sp.epsilon = epsilon;
        let Released::LogisticRegression {
            intercept,
            coefficients,
            ..
        } = train(&s.engine, &sp, seed).unwrap()
        else {
            panic!()
        };
        (intercept - LOGIT.0).abs()
            + (coefficients[0] - LOGIT.1).abs()
            + (coefficients[1] - LOGIT.2).abs()
    };
    let errors: Vec<f64> = [0.03, 0.3, 3.0, 30.0]
        .iter()
        .map(|&eps| (0..6).map(|seed| error(eps, seed)).sum::<f64>() / 6.0)
        .collect();
    for pair in errors.windows(2) {
        assert!(
            pair[1] < pair[0],
            "error does not shrink with ε: {errors:?}"
        );
    }
    // What is left at ε = 30 is mostly the sample's own error (4,000 units).
    assert!(errors[3] < 0.3, "{errors:?}");
}

#[test]
fn narrower_clamping_bounds_cut_the_noise() {
    let s = setup();
    // y lies in about [-12, 23] (declared [-20, 30]); x1 and x2 fill [0, 10].
    let error = |clamp: Option<(f64, f64)>, seed: u64| {
        let mut sp = two_features(Template::LinearRegression, "y");
        sp.target.as_mut().unwrap().clamp = clamp;
        sp.epsilon = 0.3;
        let Released::LinearRegression { coefficients, .. } = train(&s.engine, &sp, seed).unwrap()
        else {
            panic!()
        };
        (coefficients[0] - TRUTH.1).abs() + (coefficients[1] - TRUTH.2).abs()
    };
    let wide: f64 = (0..8).map(|seed| error(None, seed)).sum();
    let narrow: f64 = (0..8).map(|seed| error(Some((-13.0, 24.0)), seed)).sum();
    assert!(narrow < wide, "narrow {narrow}, wide {wide}");
}

#[test]
fn linear_metrics_describe_the_fit() {
    let s = setup();
    let mut sp = two_features(Template::LinearRegression, "y");
    sp.epsilon = 10.0;
    let Released::LinearRegression {
        units, r2, rmse, ..
    } = train(&s.engine, &sp, 1).unwrap()
    else {
        panic!()
    };
    assert!((units - ROWS as f64).abs() < 100.0, "{units}");
    // The per-unit mean removes the ±0.5 jitter; what is left is ±0.2/√2.
    assert!(r2.unwrap() > 0.99, "{r2:?}");
    assert!(rmse.unwrap() < 1.0, "{rmse:?}");
}

#[test]
fn logistic_regression_separates_what_the_truth_separates() {
    let s = setup();
    let mut sp = two_features(Template::LogisticRegression, "y");
    // y > 3 exactly when 2·x1 > 1.5·x2 (up to the small noise).
    sp.above = Some(3.0);
    sp.epsilon = 10.0;
    let released = train(&s.engine, &sp, 2).unwrap();
    let Released::LogisticRegression {
        coefficients,
        accuracy,
        ..
    } = &released
    else {
        panic!()
    };
    assert!(
        coefficients[0] > 0.0 && coefficients[1] < 0.0,
        "{coefficients:?}"
    );
    assert!(*accuracy > 0.9, "{accuracy}");
    // With almost no budget the release is mostly noise.
    sp.epsilon = 0.001;
    let Released::LogisticRegression { accuracy: poor, .. } = train(&s.engine, &sp, 2).unwrap()
    else {
        panic!()
    };
    assert!(poor < *accuracy, "{poor} vs {accuracy}");
}

#[test]
fn histograms_and_quantiles_track_the_distribution() {
    let s = setup();
    let mut sp = spec(Template::Histogram, &[("firms", "x1")], None);
    sp.epsilon = 5.0;
    let Released::Histogram { edges, counts } = train(&s.engine, &sp, 3).unwrap() else {
        panic!()
    };
    assert_eq!(edges.len(), 11);
    assert_eq!(counts.len(), 10);
    // x1 is uniform on [0, 10): about 400 units per bin.
    for c in &counts {
        assert!((300..500).contains(c), "{counts:?}");
    }
    let mut sp = spec(Template::Quantiles, &[("firms", "x1")], None);
    sp.epsilon = 5.0;
    sp.params.quantiles = vec![0.1, 0.5, 0.9];
    let Released::Quantiles {
        quantiles,
        resolution,
        units,
        rank_error,
    } = train(&s.engine, &sp, 4).unwrap()
    else {
        panic!()
    };
    assert!((resolution - 10.0 / 128.0).abs() < 1e-12);
    assert!((units - ROWS as i64).abs() < 50, "{units}");
    assert!(rank_error > 0.0 && rank_error < 40.0, "{rank_error}");
    for ((q, v), truth) in quantiles.iter().zip([1.0, 5.0, 9.0]) {
        assert!((v - truth).abs() < 0.3, "quantile {q}: {v}");
    }
}

#[test]
fn datasets_join_on_the_privacy_unit() {
    let s = setup();
    let principal = modeler();
    let mut sp = spec(
        Template::LinearRegression,
        &[("firms", "x1"), ("firms_extra", "x3")],
        Some(("firms", "y")),
    );
    sp.features[0].per_unit = PerUnit::Max;
    let prepared = s.engine.prepare_model(&request(&principal, &sp)).unwrap();
    // Only every other unit has x3: the join keeps those.
    assert_eq!(prepared.exact_rows(), ROWS / 2);
    assert_eq!(prepared.provenance.datasets, ["firms", "firms_extra"]);
    let datasets: Vec<&str> = prepared.costs.iter().map(|c| c.dataset.as_str()).collect();
    assert_eq!(datasets, ["firms", "firms_extra"]);
    assert!(prepared.costs.iter().all(|c| c.budget.epsilon == 5.0));
    // A region scope keeps the caller's units only (Kunming: even units).
    let mut regional = modeler();
    regional.region = Some(RegionScope::parse("530300").unwrap());
    let sp = spec(Template::Histogram, &[("firms", "x1")], None);
    let prepared = s.engine.prepare_model(&request(&regional, &sp)).unwrap();
    assert_eq!(prepared.exact_rows(), ROWS / 2);
}

#[test]
fn every_refusal_names_its_reason() {
    let mut s = setup();
    let lin = |features: &[(&str, &str)], target: (&str, &str)| {
        spec(Template::LinearRegression, features, Some(target))
    };
    let cases: Vec<(ModelSpec, &str)> = vec![
        (
            lin(&[("closed", "x1")], ("closed", "y")),
            "not open data, and data that is not open cannot be licensed for development (Art. 38)",
        ),
        (
            spec(Template::Histogram, &[("firms_extra", "x3")], None),
            "approvers have not enabled `histogram` on `firms_extra`; enabled: linear_regression",
        ),
        (
            lin(&[("firms", "secret")], ("firms", "y")),
            "`firms.secret` is denied to you",
        ),
        (
            lin(&[("firms", "unit")], ("firms", "y")),
            "identifiers are not features",
        ),
        (
            lin(&[("firms", "x_free")], ("firms", "y")),
            "declares no bounds",
        ),
        (
            lin(&[("firms", "sector")], ("firms", "y")),
            "is a string field",
        ),
        (
            lin(&[("firms", "nope")], ("firms", "y")),
            "`firms` has no field `nope`",
        ),
        (
            ModelSpec {
                target: Some(Column {
                    clamp: Some((-30.0, 10.0)),
                    ..Column::new("firms", "y")
                }),
                ..lin(&[("firms", "x1")], ("firms", "y"))
            },
            "`firms.y`: `clamp` is [lower, upper] with lower below upper, inside the declared bounds [-20, 30]",
        ),
        (
            lin(&[("ghost", "x1")], ("firms", "y")),
            "no dataset named `ghost`",
        ),
        (
            lin(&[("firms", "x1"), ("firms", "x1")], ("firms", "y")),
            "is named twice",
        ),
        (
            lin(&[("firms", "X1; drop")], ("firms", "y")),
            "lower-case letters",
        ),
        (
            spec(
                Template::Histogram,
                &[("firms", "x1"), ("firms", "x2")],
                None,
            ),
            "takes exactly one field",
        ),
        (
            ModelSpec {
                above: None,
                ..spec(
                    Template::LogisticRegression,
                    &[("firms", "x1")],
                    Some(("firms", "y")),
                )
            },
            "needs `above`",
        ),
        (
            ModelSpec {
                target: None,
                ..lin(&[("firms", "x1")], ("firms", "y"))
            },
            "needs a `target`",
        ),
        (
            ModelSpec {
                params: Params {
                    iterations: 26,
                    ..Params::for_template(Template::LogisticRegression)
                },
                ..spec(
                    Template::LogisticRegression,
                    &[("firms", "x1")],
                    Some(("firms", "y")),
                )
            },
            "`iterations` (Newton steps) must be between 1 and 25",
        ),
        (
            ModelSpec {
                epsilon: 0.0,
                ..lin(&[("firms", "x1")], ("firms", "y"))
            },
            "`epsilon` must be",
        ),
        (
            ModelSpec {
                epsilon: f64::NAN,
                ..lin(&[("firms", "x1")], ("firms", "y"))
            },
            "`epsilon` must be",
        ),
        // Issue 18: these reached the fit, whose noise variance overflowed
        // after the budget was charged.
        (
            ModelSpec {
                epsilon: 1e-30,
                ..lin(&[("firms", "x1")], ("firms", "y"))
            },
            "`epsilon` must be a number from 0.001 to 100",
        ),
        (
            ModelSpec {
                epsilon: 1e-300,
                ..lin(&[("firms", "x1")], ("firms", "y"))
            },
            "`epsilon` must be a number from 0.001 to 100",
        ),
    ];
    for (sp, expect) in &cases {
        let err = train(&s.engine, sp, 0).unwrap_err();
        assert!(
            err.to_string().contains(expect),
            "{sp:?}: `{err}` lacks `{expect}`"
        );
    }
    // A blocked dataset is refused with the block's reason.
    s.engine.block("firms", "`firms` is sealed (Art. 23)");
    let err = train(&s.engine, &lin(&[("firms", "x1")], ("firms", "y")), 0).unwrap_err();
    assert_eq!(
        err,
        ModelError::Denied("`firms` is sealed (Art. 23)".into())
    );
}

#[test]
fn scoring_named_subjects_needs_a_grant_and_stays_in_region() {
    let s = setup();
    let mut sp = two_features(Template::LinearRegression, "y");
    sp.epsilon = 10.0;
    let principal = modeler();
    let prepared = s.engine.prepare_model(&request(&principal, &sp)).unwrap();
    let model = prepared
        .fit(&mut Seeded(rand_chacha::ChaCha20Rng::seed_from_u64(5)))
        .model;
    let subjects: Vec<String> = ["u0", "u1", "nobody"].map(String::from).to_vec();
    let now = Utc::now();
    let err = s
        .engine
        .score_subjects(&model, &principal, Some("credit"), &subjects, None, now)
        .unwrap_err();
    assert!(
        err.to_string().contains("needs a live grant on `firms`"),
        "{err}"
    );
    let mut granted = modeler();
    granted.grants.push(Grant {
        id: "g1".into(),
        dataset: "firms".into(),
        fields: Some(vec!["x1".into(), "x2".into()]),
        purpose: "credit".into(),
        expires_at: now + chrono::Duration::days(1),
    });
    // The grant is for its purpose only.
    assert!(
        s.engine
            .score_subjects(&model, &granted, Some("marketing"), &subjects, None, now)
            .is_err()
    );
    let (scores, provenance) = s
        .engine
        .score_subjects(&model, &granted, Some("credit"), &subjects, None, now)
        .unwrap();
    assert_eq!(provenance.datasets, ["firms"]);
    assert_eq!(scores.len(), 3);
    assert!(scores[2].is_none(), "an unknown subject has no score");
    for s in &scores[..2] {
        let v = s.unwrap();
        assert!((-20.0..30.0).contains(&v), "{v}");
    }
    // Outside the caller's region there is nothing to score.
    granted.region = Some(RegionScope::parse("530100").unwrap());
    let (scores, _) = s
        .engine
        .score_subjects(&model, &granted, Some("credit"), &subjects, None, now)
        .unwrap();
    assert!(scores[0].is_some() && scores[1].is_none(), "{scores:?}");
    // Rows the caller supplies score through the same parameters, clamped.
    assert_eq!(model.score(&[5.0, 5.0]), model.score(&[5.0, 5.0]));
    assert_eq!(model.score(&[50.0, 5.0]), model.score(&[10.0, 5.0]));
    assert_eq!(model.score(&[1.0]), None);
}

#[test]
fn scoring_through_the_unit_index_reads_only_the_subjects_rows_and_agrees_with_a_scan() {
    use arrow::array::{Array, AsArray};
    use veil_engine::verification::{IndexFile, SubjectIndex, subject_key};
    let fixture = common::fixture();
    let engine = &fixture.engine;
    let mut modeler = modeler();
    let now = Utc::now();
    for dataset in ["tax", "legal_persons"] {
        modeler.grants.push(Grant {
            id: format!("g-{dataset}"),
            dataset: dataset.into(),
            fields: None,
            purpose: "credit".into(),
            expires_at: now + chrono::Duration::days(1),
        });
    }
    let fit = |feature: (&str, &str)| {
        let mut sp = spec(
            Template::LinearRegression,
            &[feature],
            Some(("tax", "tax_paid")),
        );
        sp.epsilon = 1.0;
        engine
            .prepare_model(&request(&modeler, &sp))
            .unwrap()
            .fit(&mut Seeded(rand_chacha::ChaCha20Rng::seed_from_u64(9)))
            .model
    };
    // Revenue is L3: even granted, a modeler sees it only generalised or in
    // aggregates, and a score would give it back (two scored rows give the
    // line). Registered capital is L2, plain to a modeler.
    let secret = fit(("tax", "revenue"));
    let err = engine
        .score_subjects(&secret, &modeler, Some("credit"), &["x".into()], None, now)
        .unwrap_err();
    assert!(
        err.to_string().contains("gives back its own values")
            && err.to_string().contains("`tax.revenue`"),
        "{err}"
    );
    let model = fit(("legal_persons", "registered_capital"));
    // Some companies from across the file, and one that is not registered.
    let file = std::fs::File::open(fixture.dir.join("legal_persons.parquet")).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut codes = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let uscc = batch
            .column_by_name("uscc")
            .unwrap()
            .as_string::<i32>()
            .clone();
        codes.extend((0..uscc.len()).map(|i| uscc.value(i).to_owned()));
    }
    let mut subjects: Vec<String> = codes.iter().step_by(997).cloned().collect();
    subjects.push("91110000600037341L".into());
    let dataset = engine.dataset("legal_persons").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("legal_persons-uscc.idx");
    SubjectIndex::build(&dataset, "uscc")
        .unwrap()
        .save(&path, "legal_persons:1:uscc")
        .unwrap();
    let index = IndexFile::open(&path, "legal_persons:1:uscc").unwrap();
    let looked_up = std::cell::Cell::new(0);
    let finder = |d: &Dataset, subjects: &[String]| -> Option<Vec<u32>> {
        assert_eq!(d.manifest.name, "legal_persons");
        looked_up.set(looked_up.get() + 1);
        let mut rows: Vec<u32> = subjects
            .iter()
            .flat_map(|s| index.rows(subject_key(s).unwrap()).unwrap())
            .collect();
        rows.sort_unstable();
        Some(rows)
    };
    let (scanned, _) = engine
        .score_subjects(&model, &modeler, Some("credit"), &subjects, None, now)
        .unwrap();
    let (indexed, _) = engine
        .score_subjects(
            &model,
            &modeler,
            Some("credit"),
            &subjects,
            Some(&finder),
            now,
        )
        .unwrap();
    assert_eq!(looked_up.get(), 1);
    assert_eq!(indexed, scanned);
    assert!(
        scanned[..subjects.len() - 1].iter().all(Option::is_some),
        "{scanned:?}"
    );
    assert_eq!(scanned.last(), Some(&None));
}
