//! DP models against non-private fits on the same data, in the same run.
//!
//! Data: `VEIL_BENCH_MODEL_ROWS` units (default 1,000,000), one row each,
//! ten features uniform on [0, 100], a linear target
//! y = 5 + Σ βⱼxⱼ + N(0, 10²) and a label drawn from a logistic model; a
//! Parquet file generated once into `VEIL_BENCH_DIR` (default
//! target/bench-models).
//!
//! For each template and ε it reports:
//! - time: veil's whole training (read the frame, fold per unit, fit, draw
//!   the noise) against the baseline, a plain Rust program in the same run
//!   that reads the same Parquet columns and fits without privacy (normal
//!   equations for least squares; Newton's method for the logistic MLE);
//! - peak RSS of the training (the kernel's high-water mark, reset before);
//! - accuracy: the DP model against the non-private fit on the same data,
//!   both evaluated exactly by this program (never released by veil).
//!
//! `VEIL_BENCH_REPEATS` (default 3) trainings per case; times are medians.

#![allow(clippy::needless_range_loop)] // small dense linear algebra reads best by index

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, AsArray, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Float64Type, Schema};
use chrono::Utc;
use common::env;
use rand::{RngExt, SeedableRng};
use veil_engine::dp::sample::SecureEntropy;
use veil_engine::model::{Column, Model, ModelSpec, Params, Released, TrainRequest};
use veil_engine::{Dataset, Engine};
use veil_policies::model::Template;
use veil_policies::{DatasetManifest, Policy, Principal, Role};

const FEATURES: usize = 10;
const BETA: [f64; FEATURES] = [1.0, -0.5, 0.25, 2.0, 0.0, 0.1, -1.0, 0.5, 0.75, -0.25];
const GAMMA: [f64; FEATURES] = [0.8, -0.6, 0.4, 0.0, 0.2, -0.3, 0.5, 0.0, -0.1, 0.3];
const Y_BOUNDS: (f64, f64) = (-250.0, 550.0);

fn manifest() -> String {
    let mut fields = String::new();
    for j in 0..FEATURES {
        fields.push_str(&format!(
            "[[field]]\nname = \"x{j}\"\ntype = \"float\"\ndescription = \"feature\"\ncategory = \"finance\"\ngrade = \"L2\"\nbounds = [0, 100]\n"
        ));
    }
    format!(
        r#"format = 1
[dataset]
name = "bench"
title = "bench"
description = "benchmark data"
database = "theme"
providing_institution = "bench"
collecting_institution = "bench"
approving_institution = "bench"
data_form = "table"
format = "parquet"
path = "bench.parquet"
update_frequency = "yearly"
privacy_unit = "unit"
[dataset.share]
attribute = "conditional"
conditions = "x"
scope = "x"
legal_basis = "x"
[dataset.open]
attribute = "conditional"
conditions = "x"
[[field]]
name = "unit"
type = "string"
description = "unit"
category = "identity"
grade = "L1"
identifier = "other"
{fields}[[field]]
name = "y"
type = "float"
description = "target"
category = "finance"
grade = "L2"
bounds = [{}, {}]
[[field]]
name = "label"
type = "float"
description = "0 or 1"
category = "finance"
grade = "L2"
bounds = [0, 1]
"#,
        Y_BOUNDS.0, Y_BOUNDS.1
    )
}

fn generate(dir: &Path, rows: usize) {
    let path = dir.join("bench.parquet");
    if path.exists() {
        let reader =
            parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&path).unwrap())
                .unwrap();
        use parquet::file::reader::FileReader;
        if reader.metadata().file_metadata().num_rows() as usize == rows {
            return;
        }
    }
    let started = Instant::now();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(11);
    let mut fields = vec![Field::new("unit", DataType::Utf8, false)];
    fields.extend((0..FEATURES).map(|j| Field::new(format!("x{j}"), DataType::Float64, false)));
    fields.push(Field::new("y", DataType::Float64, false));
    fields.push(Field::new("label", DataType::Float64, false));
    let schema = Arc::new(Schema::new(fields));
    let file = std::fs::File::create(&path).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), None).unwrap();
    let chunk = 100_000;
    for start in (0..rows).step_by(chunk) {
        let n = chunk.min(rows - start);
        let units: StringArray = (start..start + n)
            .map(|i| Some(format!("u{i:08}")))
            .collect();
        let mut xs: Vec<Vec<f64>> = (0..FEATURES).map(|_| Vec::with_capacity(n)).collect();
        let (mut ys, mut labels) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for _ in 0..n {
            let x: Vec<f64> = (0..FEATURES)
                .map(|_| rng.random_range(0.0..100.0))
                .collect();
            // N(0, 1) by Box-Muller: shaping synthetic data, not privacy noise.
            let (u1, u2): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random_range(0.0..1.0));
            let normal = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            ys.push(5.0 + BETA.iter().zip(&x).map(|(b, v)| b * v).sum::<f64>() + 10.0 * normal);
            let logit = GAMMA
                .iter()
                .zip(&x)
                .map(|(g, v)| g * (v - 50.0))
                .sum::<f64>()
                / 25.0;
            labels.push(f64::from(
                rng.random_range(0.0..1.0) < 1.0 / (1.0 + (-logit).exp()),
            ));
            for (col, v) in xs.iter_mut().zip(x) {
                col.push(v);
            }
        }
        let mut columns: Vec<ArrayRef> = vec![Arc::new(units)];
        columns.extend(
            xs.into_iter()
                .map(|c| Arc::new(Float64Array::from(c)) as ArrayRef),
        );
        columns.push(Arc::new(Float64Array::from(ys)));
        columns.push(Arc::new(Float64Array::from(labels)));
        writer
            .write(&RecordBatch::try_new(schema.clone(), columns).unwrap())
            .unwrap();
    }
    writer.close().unwrap();
    eprintln!(
        "generated {rows} rows in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// The baseline's data: the feature columns and the target, read plainly.
struct Plain {
    x: Vec<Vec<f64>>,
    y: Vec<f64>,
}

fn read_plain(dir: &Path, target: &str) -> Plain {
    let file = std::fs::File::open(dir.join("bench.parquet")).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .with_batch_size(64 * 1024)
        .build()
        .unwrap();
    let mut plain = Plain {
        x: vec![Vec::new(); FEATURES],
        y: Vec::new(),
    };
    for batch in reader {
        let batch = batch.unwrap();
        for (j, col) in plain.x.iter_mut().enumerate() {
            let a = batch.column_by_name(&format!("x{j}")).unwrap();
            col.extend(a.as_primitive::<Float64Type>().values().iter());
        }
        let y = batch.column_by_name(target).unwrap();
        plain.y.extend(
            y.as_primitive::<Float64Type>()
                .values()
                .iter()
                .map(|v| v.clamp(Y_BOUNDS.0, Y_BOUNDS.1)),
        );
    }
    plain
}

/// Solves a small dense system by Gaussian elimination with pivoting.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for c in 0..n {
        let p = (c..n)
            .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
            .unwrap();
        a.swap(c, p);
        b.swap(c, p);
        for r in c + 1..n {
            let f = a[r][c] / a[c][c];
            for k in c..n {
                a[r][k] -= f * a[c][k];
            }
            b[r] -= f * b[c];
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        x[r] = (b[r] - (r + 1..n).map(|k| a[r][k] * x[k]).sum::<f64>()) / a[r][r];
    }
    x
}

/// Ordinary least squares: (intercept, coefficients).
fn ols(p: &Plain) -> (f64, Vec<f64>) {
    let d = FEATURES + 1;
    let mut xtx = vec![vec![0.0; d]; d];
    let mut xty = vec![0.0; d];
    let mut row = vec![1.0; d];
    for (i, y) in p.y.iter().enumerate() {
        for j in 0..FEATURES {
            row[j + 1] = p.x[j][i];
        }
        for a in 0..d {
            xty[a] += row[a] * y;
            for b in a..d {
                xtx[a][b] += row[a] * row[b];
            }
        }
    }
    for a in 0..d {
        for b in 0..a {
            xtx[a][b] = xtx[b][a];
        }
    }
    let beta = solve(xtx, xty);
    (beta[0], beta[1..].to_vec())
}

/// The logistic MLE by Newton's method (IRLS), with the same small L2
/// penalty as veil's default on centred features.
fn logistic_mle(p: &Plain) -> (f64, Vec<f64>) {
    let d = FEATURES + 1;
    let mut w = vec![0.0; d];
    let mut row = vec![1.0; d];
    for _ in 0..12 {
        let mut h = vec![vec![0.0; d]; d];
        let mut g = vec![0.0; d];
        for (i, y) in p.y.iter().enumerate() {
            for j in 0..FEATURES {
                row[j + 1] = (p.x[j][i] - 50.0) / 50.0;
            }
            let z: f64 = w.iter().zip(&row).map(|(a, b)| a * b).sum();
            let q = 1.0 / (1.0 + (-z).exp());
            let s = q * (1.0 - q);
            for a in 0..d {
                g[a] += (q - y) * row[a];
                for b in a..d {
                    h[a][b] += s * row[a] * row[b];
                }
            }
        }
        for a in 0..d {
            for b in 0..a {
                h[a][b] = h[b][a];
            }
        }
        let step = solve(h, g);
        for (wj, s) in w.iter_mut().zip(step) {
            *wj -= s;
        }
    }
    // Back to raw units: z = w₀ + Σ wⱼ (xⱼ − 50)/50.
    let coefficients: Vec<f64> = w[1..].iter().map(|v| v / 50.0).collect();
    let intercept = w[0] - coefficients.iter().map(|c| c * 50.0).sum::<f64>();
    (intercept, coefficients)
}

fn predict(intercept: f64, coefficients: &[f64], p: &Plain, i: usize) -> f64 {
    intercept
        + coefficients
            .iter()
            .enumerate()
            .map(|(j, c)| c * p.x[j][i])
            .sum::<f64>()
}

fn rmse(intercept: f64, coefficients: &[f64], p: &Plain) -> f64 {
    let sse: f64 = (0..p.y.len())
        .map(|i| (predict(intercept, coefficients, p, i) - p.y[i]).powi(2))
        .sum();
    (sse / p.y.len() as f64).sqrt()
}

fn accuracy(intercept: f64, coefficients: &[f64], p: &Plain) -> f64 {
    let right = (0..p.y.len())
        .filter(|&i| (predict(intercept, coefficients, p, i) >= 0.0) == (p.y[i] > 0.5))
        .count();
    right as f64 / p.y.len() as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn spec(template: Template, target: &str, epsilon: f64) -> ModelSpec {
    ModelSpec {
        template,
        features: (0..FEATURES)
            .map(|j| Column::new("bench", &format!("x{j}")))
            .collect(),
        target: Some(Column::new("bench", target)),
        above: (template == Template::LogisticRegression).then_some(0.5),
        epsilon,
        params: Params::for_template(template),
    }
}

/// Trains once; the model, seconds reading the frame and fitting, and
/// peak MB.
fn train(engine: &Engine, spec: &ModelSpec) -> (Model, f64, f64, f64) {
    let principal = Principal::new("bench", Role::Modeler);
    common::reset_peak_rss();
    let started = Instant::now();
    let prepared = engine
        .prepare_model(&TrainRequest {
            principal: &principal,
            purpose: None,
            spec,
            now: Utc::now(),
        })
        .unwrap();
    let read = started.elapsed().as_secs_f64();
    let model = prepared.fit(&mut SecureEntropy::new()).model;
    let total = started.elapsed().as_secs_f64();
    (model, read, total - read, common::peak_rss_mb())
}

fn coefficients(model: &Model) -> (f64, Vec<f64>) {
    match &model.released {
        Released::LinearRegression {
            intercept,
            coefficients,
            ..
        }
        | Released::LogisticRegression {
            intercept,
            coefficients,
            ..
        } => (*intercept, coefficients.clone()),
        _ => unreachable!(),
    }
}

fn main() {
    let rows: usize = env("VEIL_BENCH_MODEL_ROWS", 1_000_000);
    let repeats: usize = env("VEIL_BENCH_REPEATS", 3);
    let dir = std::env::var("VEIL_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-models"));
    std::fs::create_dir_all(&dir).unwrap();
    generate(&dir, rows);
    std::fs::write(dir.join("bench.toml"), manifest()).unwrap();
    let policy = Policy::parse(&format!(
        "{}\nbench = [\"linear_regression\", \"logistic_regression\"]\n",
        veil_policies::policy::DEFAULT_PRESET
    ))
    .unwrap();
    let text = std::fs::read_to_string(dir.join("bench.toml")).unwrap();
    let manifest = DatasetManifest::parse(&text, &|g| policy.grade(g).is_some()).unwrap();
    let source = veil_engine::source::check_source(&manifest, &dir, None).unwrap();
    let mut engine = Engine::new(policy, "bench", [1; 32]);
    engine.add_dataset(
        Dataset::open(manifest, 1, &dir.join("bench.parquet"))
            .unwrap()
            .with_unique_units(source.unique_units),
    );

    println!("DP models, {rows} rows x {FEATURES} features, {repeats} runs per case (median time)");
    println!(
        "{:<22} {:>5} {:>9} {:>11} {:>6} {:>8} {:>12} {:>12}",
        "template", "eps", "veil s", "baseline s", "ratio", "peak MB", "DP metric", "plain metric"
    );
    for (template, target) in [
        (Template::LinearRegression, "y"),
        (Template::LogisticRegression, "label"),
    ] {
        // veil first, alone in the process, so its peak is its own.
        let mut runs = Vec::new();
        for epsilon in [0.1, 1.0] {
            let sp = spec(template, target, epsilon);
            let trained: Vec<_> = (0..repeats).map(|_| train(&engine, &sp)).collect();
            runs.push((epsilon, trained));
        }
        common::reset_peak_rss();
        let started = Instant::now();
        let plain = read_plain(&dir, target);
        let (b0, b) = if template == Template::LinearRegression {
            ols(&plain)
        } else {
            logistic_mle(&plain)
        };
        let baseline = started.elapsed().as_secs_f64();
        let baseline_mb = common::peak_rss_mb();
        // RMSE for linear regression; for logistic regression the share
        // classified right (the class is the sign of the logit).
        let metric = |i0: f64, c: &[f64]| {
            if template == Template::LinearRegression {
                rmse(i0, c, &plain)
            } else {
                accuracy(i0, c, &plain)
            }
        };
        let plain_metric = metric(b0, &b);
        let norm: f64 = b.iter().map(|v| v * v).sum::<f64>().sqrt();
        for (epsilon, trained) in runs {
            let mut times = Vec::new();
            let mut reads = Vec::new();
            let mut metrics = Vec::new();
            let mut distances = Vec::new();
            let mut peak: f64 = 0.0;
            for (model, read, fit, mb) in trained {
                let (i0, c) = coefficients(&model);
                metrics.push(metric(i0, &c));
                let diff: f64 = b
                    .iter()
                    .zip(&c)
                    .map(|(p, q)| (p - q).powi(2))
                    .sum::<f64>()
                    .sqrt();
                distances.push(diff / norm);
                times.push(read + fit);
                reads.push(read);
                peak = peak.max(mb);
            }
            let veil = median(times);
            println!(
                "{:<22} {:>5} {:>9.2} {:>11.2} {:>6.2} {:>8.0} {:>12.4} {:>12.4}   ‖β_dp − β‖/‖β‖ {:.4}; frame read {:.2} s; baseline peak {:.0} MB",
                template.name(),
                epsilon,
                veil,
                baseline,
                veil / baseline,
                peak,
                median(metrics),
                plain_metric,
                median(distances),
                median(reads),
                baseline_mb,
            );
        }
    }
    println!(
        "metric: RMSE on the data (linear regression), share classified right (logistic regression)"
    );
}
