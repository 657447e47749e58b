//! The templates' releases. Every statistic is an integer on a fixed-point
//! grid, noised by the exact discrete Gaussian sampler
//! ([`crate::dp::sample`]) with σ from zCDP calibration
//! (ρ = Δ² / 2σ², Canonne, Kamath and Steinke 2020); what follows the noise
//! is post-processing in floating point on released values only.
//!
//! Sensitivities, for one unit added or removed (one frame row; values in
//! the declared bounds):
//! - linear regression: the row z = (x₁..x_d, 1, y), each mapped onto
//!   [-1, 1], adds z zᵀ to the Gram matrix; its upper triangle has L2 norm at
//!   most ‖z‖² ≤ d + 2. One release of the whole triangle spends ρ.
//! - logistic regression: the row x̃ = (x₁..x_d, 1) / √(d+1) has ‖x̃‖ ≤ 1, so
//!   its logistic-loss gradient (σ(w·x̃) − y) x̃ has norm at most 1 and its
//!   Hessian σ(1−σ) x̃x̃ᵀ Frobenius norm at most ¼: bounded by construction,
//!   no clipping needed. Each of T Newton steps releases the gradient sum
//!   (Δ = 1) and the Hessian's upper triangle (Δ = ¼), each row's share
//!   truncated toward zero onto the grid, which cannot grow it; the count of units and, at the end, the count of correctly
//!   classified units are released once each (Δ = 1). ρ is split evenly
//!   over the 2T + 2 releases; zCDP composes adaptively (each step depends
//!   on the released ones before it), so the total is ρ.
//! - histogram and quantiles: one unit moves one bin count by one (Δ = 1).

use serde::{Deserialize, Serialize};

use super::frame::Frame;
use super::{Feature, Params, Released};
use crate::dp::accounting::gaussian_sigma;
use crate::dp::sample::{DiscreteGaussian, Entropy, Rational};

/// How one released statistic was noised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Noise {
    pub statistic: String,
    /// How many values were released with this noise.
    pub values: usize,
    /// σ of the discrete Gaussian, in the statistic's units (normalised
    /// units for the regressions' statistics).
    pub sigma: f64,
}

pub(crate) fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// A discrete Gaussian of standard deviation `sigma` (on the integer grid).
fn gaussian(sigma: f64) -> DiscreteGaussian {
    let sigma2 =
        Rational::from_f64(sigma * sigma, "the noise variance").expect("σ is positive and finite");
    DiscreteGaussian::new(sigma2).expect("σ² is positive")
}

/// Linear regression from the noisy Gram matrix of (x, 1, y).
pub(super) fn linear(
    frame: &Frame,
    features: &[Feature],
    target: &Feature,
    rho: f64,
    entropy: &mut dyn Entropy,
) -> (Released, Vec<Noise>) {
    const SCALE: f64 = 65_536.0;
    let d = features.len();
    let dim = d + 2;
    let (one, y_col) = (d, d + 1);
    let mut sums = vec![0i128; dim * (dim + 1) / 2];
    let mut q = vec![0i64; dim];
    for r in 0..frame.rows() {
        for (j, f) in features.iter().enumerate() {
            q[j] = (f.normalise(frame.value(j, r)) * SCALE) as i64;
        }
        q[one] = SCALE as i64;
        q[y_col] = (target.normalise(frame.value(d, r)) * SCALE) as i64;
        let mut k = 0;
        for i in 0..dim {
            let qi = q[i];
            for &qj in &q[i..] {
                sums[k] += i128::from(qi * qj);
                k += 1;
            }
        }
    }
    let sigma = gaussian_sigma(rho, dim as f64);
    let noise = gaussian(sigma * SCALE * SCALE);
    let gram = noisy_symmetric(dim, &sums, &noise, SCALE * SCALE, entropy);
    // Solve (XᵀX + λI) β = Xᵀy over the features and the intercept.
    let p = d + 1;
    let xtx: Vec<Vec<f64>> = (0..p).map(|i| gram[i][..p].to_vec()).collect();
    let xty: Vec<f64> = (0..p).map(|i| gram[i][y_col]).collect();
    let (beta, ridge) = solve_noisy(&xtx, &xty, sigma);
    let units = gram[one][one].max(1.0);
    let quad: f64 = (0..p)
        .map(|i| beta[i] * (0..p).map(|j| xtx[i][j] * beta[j]).sum::<f64>())
        .sum();
    let sse = gram[y_col][y_col] - 2.0 * dot(&beta, &xty) + quad;
    let mean_y = gram[one][y_col] / units;
    let sst = gram[y_col][y_col] - units * mean_y * mean_y;
    let half_y = (target.upper - target.lower) / 2.0;
    let (intercept, coefficients) =
        to_original_units(&beta, features, target.lower + half_y, half_y);
    let released = Released::LinearRegression {
        intercept,
        coefficients,
        units,
        r2: (sse > 0.0 && sst > 0.0).then(|| 1.0 - sse / sst),
        rmse: (sse > 0.0).then(|| half_y * (sse / units).sqrt()),
        ridge,
    };
    let noise = vec![Noise {
        statistic: "Gram matrix of (features, 1, target) on [-1, 1]".into(),
        values: sums.len(),
        sigma,
    }];
    (released, noise)
}

/// The symmetric `dim × dim` matrix whose upper triangle, row by row, is
/// `sums` on a grid of `scale` per unit, each entry noised with `noise`.
#[allow(clippy::needless_range_loop)] // a symmetric fill reads best by index
fn noisy_symmetric(
    dim: usize,
    sums: &[i128],
    noise: &DiscreteGaussian,
    scale: f64,
    entropy: &mut dyn Entropy,
) -> Vec<Vec<f64>> {
    let mut m = vec![vec![0.0; dim]; dim];
    let mut entries = sums.iter();
    for i in 0..dim {
        for j in i..dim {
            let sum = entries.next().expect("one sum per upper-triangle entry");
            let v = (sum + i128::from(noise.sample(entropy).to_i64())) as f64 / scale;
            m[i][j] = v;
            m[j][i] = v;
        }
    }
    m
}

/// Coefficients on the normalised scale, (β₁..β_d, β₀), back in the data's
/// units: y = c + h·(β₀ + Σ βⱼ·(xⱼ − cⱼ)/hⱼ) with c, h the centre and
/// half-width of each declared range.
fn to_original_units(
    beta: &[f64],
    features: &[Feature],
    centre: f64,
    half: f64,
) -> (f64, Vec<f64>) {
    let d = features.len();
    let mut intercept = beta[d];
    let mut coefficients = Vec::with_capacity(d);
    for (j, f) in features.iter().enumerate() {
        let h = (f.upper - f.lower) / 2.0;
        if h > 0.0 {
            coefficients.push(half * beta[j] / h);
            intercept -= beta[j] * (f.lower + h) / h;
        } else {
            coefficients.push(0.0);
        }
    }
    (centre + half * intercept, coefficients)
}

/// Logistic regression by noisy Newton steps: each step releases the noisy
/// gradient and the noisy Hessian of the logistic loss and solves for the
/// step, with the Hessian's smallest eigenvalue lifted above its noise as
/// for linear regression. Newton converges in a few steps where gradient
/// descent needs hundreds, so each release gets a larger share of ρ.
pub(super) fn logistic(
    frame: &Frame,
    features: &[Feature],
    above: f64,
    params: &Params,
    rho: f64,
    entropy: &mut dyn Entropy,
) -> (Released, Vec<Noise>) {
    const SCALE: f64 = 1_048_576.0;
    let d = features.len();
    let p = d + 1;
    let root = (p as f64).sqrt();
    let n = frame.rows();
    let triangle = p * (p + 1) / 2;
    // Row r as x̃ = (x, 1)/√(d+1), and its label.
    let row = |r: usize, x: &mut [f64]| -> f64 {
        for (j, f) in features.iter().enumerate() {
            x[j] = f.normalise(frame.value(j, r)) / root;
        }
        x[d] = 1.0 / root;
        if frame.value(d, r) > above { 1.0 } else { 0.0 }
    };
    let steps = params.iterations as usize;
    // Releases: per step a gradient and a Hessian; once each the count of
    // units and the count classified right.
    let share = rho / (2 * steps + 2) as f64;
    let count_sigma = gaussian_sigma(share, 1.0);
    let count_noise = gaussian(count_sigma);
    let units = (n as f64 + count_noise.sample(entropy).to_i64() as f64).max(1.0);
    // ‖(σ − y) x̃‖ ≤ 1 and ‖σ(1−σ) x̃x̃ᵀ‖_F ≤ ¼. Each row's contribution
    // is truncated onto the grid (truncation toward zero never grows a
    // coordinate), so the bounds hold on the grid as they are.
    let grad_sigma = gaussian_sigma(share, SCALE);
    let hess_sigma = gaussian_sigma(share, SCALE / 4.0);
    let (grad_noise, hess_noise) = (gaussian(grad_sigma), gaussian(hess_sigma));
    let mut w = vec![0.0; p];
    let mut x = vec![0.0; p];
    let mut grad = vec![0i64; p];
    let mut hess = vec![0i64; triangle];
    for _ in 0..steps {
        grad.iter_mut().for_each(|s| *s = 0);
        hess.iter_mut().for_each(|s| *s = 0);
        for r in 0..n {
            let label = row(r, &mut x);
            let q = sigmoid(dot(&w, &x));
            let (residual, weight) = (q - label, q * (1.0 - q));
            for (s, v) in grad.iter_mut().zip(&x) {
                *s += (residual * v * SCALE) as i64;
            }
            let mut k = 0;
            for i in 0..p {
                let wi = weight * x[i] * SCALE;
                for &xj in &x[i..] {
                    hess[k] += (wi * xj) as i64;
                    k += 1;
                }
            }
        }
        // The regularised loss: mean logistic loss + (l2/2)‖w‖².
        let g: Vec<f64> = grad
            .iter()
            .zip(&w)
            .map(|(s, wj)| {
                (*s + grad_noise.sample(entropy).to_i64()) as f64 / SCALE + params.l2 * units * wj
            })
            .collect();
        let hess: Vec<i128> = hess.iter().map(|&v| i128::from(v)).collect();
        let mut h = noisy_symmetric(p, &hess, &hess_noise, SCALE, entropy);
        for (i, row) in h.iter_mut().enumerate() {
            row[i] += params.l2 * units;
        }
        let (step, _) = solve_noisy(&h, &g, hess_sigma / SCALE);
        for (wj, s) in w.iter_mut().zip(step) {
            *wj -= params.learning_rate * s;
        }
    }
    let correct = (0..n)
        .filter(|&r| {
            let label = row(r, &mut x);
            (dot(&w, &x) >= 0.0) == (label == 1.0)
        })
        .count();
    let noisy_correct = correct as f64 + count_noise.sample(entropy).to_i64() as f64;
    // The logit is Σ wⱼ·zⱼ/√(d+1) + w₀/√(d+1): rescale, then undo the
    // normalisation as for linear regression (centre 0, half-width 1).
    let scaled: Vec<f64> = w.iter().map(|v| v / root).collect();
    let (intercept, coefficients) = to_original_units(&scaled, features, 0.0, 1.0);
    let released = Released::LogisticRegression {
        intercept,
        coefficients,
        above,
        units,
        accuracy: (noisy_correct / units).clamp(0.0, 1.0),
        iterations: params.iterations,
    };
    let noise = vec![
        Noise {
            statistic: "gradient sum per Newton step, normalised units".into(),
            values: steps * p,
            sigma: grad_sigma / SCALE,
        },
        Noise {
            statistic: "Hessian sum per Newton step (upper triangle), normalised units".into(),
            values: steps * triangle,
            sigma: hess_sigma / SCALE,
        },
        Noise {
            statistic: "count of units; count classified right".into(),
            values: 2,
            sigma: count_sigma,
        },
    ];
    (released, noise)
}

/// Noisy counts of units per equal-width bin of the declared range.
fn noisy_bins(
    frame: &Frame,
    feature: &Feature,
    bins: u32,
    rho: f64,
    entropy: &mut dyn Entropy,
) -> (Vec<i64>, f64, f64) {
    let bins = bins as usize;
    let width = (feature.upper - feature.lower) / bins as f64;
    let mut counts = vec![0i64; bins];
    for &v in frame.column(0) {
        let b = if width > 0.0 {
            (((feature.clamp(v) - feature.lower) / width) as usize).min(bins - 1)
        } else {
            0
        };
        counts[b] += 1;
    }
    let sigma = gaussian_sigma(rho, 1.0);
    let noise = gaussian(sigma);
    for c in &mut counts {
        *c += noise.sample(entropy).to_i64();
    }
    (counts, width, sigma)
}

pub(super) fn histogram(
    frame: &Frame,
    feature: &Feature,
    bins: u32,
    rho: f64,
    entropy: &mut dyn Entropy,
) -> (Released, Vec<Noise>) {
    let (counts, width, sigma) = noisy_bins(frame, feature, bins, rho, entropy);
    let edges = (0..=counts.len())
        .map(|i| feature.lower + width * i as f64)
        .collect();
    let noise = vec![Noise {
        statistic: "count of units per bin".into(),
        values: counts.len(),
        sigma,
    }];
    (Released::Histogram { edges, counts }, noise)
}

/// Quantiles read from the noisy histogram's cumulative counts
/// ([`crate::dp::histogram`]). The rank error of a cumulative count over m
/// bins has standard deviation σ·√m, which the release reports for the
/// middle of the range.
pub(super) fn quantiles(
    frame: &Frame,
    feature: &Feature,
    params: &Params,
    rho: f64,
    entropy: &mut dyn Entropy,
) -> (Released, Vec<Noise>) {
    use crate::dp::histogram::{cumulative, quantile};
    let (counts, width, sigma) = noisy_bins(frame, feature, params.bins, rho, entropy);
    let cumulative = cumulative(&counts);
    let top = cumulative.last().copied().unwrap_or(0.0) as i64;
    let quantiles = params
        .quantiles
        .iter()
        .map(|&q| (q, quantile(&cumulative, feature.lower, width, q)))
        .collect();
    let noise = vec![Noise {
        statistic: "count of units per bin".into(),
        values: counts.len(),
        sigma,
    }];
    let released = Released::Quantiles {
        quantiles,
        resolution: width,
        units: top,
        rank_error: sigma * (counts.len() as f64 / 2.0).sqrt(),
    };
    (released, noise)
}

/// Solves A x = b for a symmetric matrix released with noise σ per entry,
/// and returns the ridge λ it added. The noise matrix's spectral norm is
/// about 2σ√n: λ lifts A's smallest eigenvalue to at least that (as AdaSSP
/// does, Wang 2018), so the solution does not amplify the noise, and is 0
/// when the data already dominate. It doubles in the unlikely case the
/// factorisation still fails. Post-processing of released values only.
fn solve_noisy(a: &[Vec<f64>], b: &[f64], sigma: f64) -> (Vec<f64>, f64) {
    let floor = 2.0 * sigma * (b.len() as f64).sqrt();
    let mut ridge = (floor - smallest_eigenvalue(a)).max(0.0);
    loop {
        let mut lifted = a.to_vec();
        for (i, row) in lifted.iter_mut().enumerate() {
            row[i] += ridge;
        }
        if let Some(x) = solve_spd(lifted, b) {
            return (x, ridge);
        }
        ridge = (ridge * 2.0).max(floor);
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The smallest eigenvalue of a symmetric matrix, by bisection on the
/// shift t for which A − tI stops being positive definite.
fn smallest_eigenvalue(a: &[Vec<f64>]) -> f64 {
    let n = a.len();
    let shifted = |t: f64| -> bool {
        let mut m = a.to_vec();
        for (i, row) in m.iter_mut().enumerate() {
            row[i] -= t;
        }
        solve_spd(m, &vec![0.0; n]).is_some()
    };
    // Gershgorin bounds every eigenvalue.
    let radius = a
        .iter()
        .map(|row| row.iter().map(|v| v.abs()).sum::<f64>())
        .fold(0.0, f64::max);
    let (mut lo, mut hi) = (-radius - 1.0, radius + 1.0);
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if shifted(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Solves A x = b for symmetric positive definite A by Cholesky; `None`
/// when A is not positive definite.
fn solve_spd(mut a: Vec<Vec<f64>>, b: &[f64]) -> Option<Vec<f64>> {
    let n = b.len();
    for j in 0..n {
        let diag = a[j][j] - (0..j).map(|k| a[j][k] * a[j][k]).sum::<f64>();
        if !(diag > 0.0 && diag.is_finite()) {
            return None;
        }
        let l = diag.sqrt();
        a[j][j] = l;
        for i in j + 1..n {
            a[i][j] = (a[i][j] - (0..j).map(|k| a[i][k] * a[j][k]).sum::<f64>()) / l;
        }
    }
    let mut z = vec![0.0; n];
    for i in 0..n {
        z[i] = (b[i] - (0..i).map(|k| a[i][k] * z[k]).sum::<f64>()) / a[i][i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        x[i] = (z[i] - (i + 1..n).map(|k| a[k][i] * x[k]).sum::<f64>()) / a[i][i];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves_and_refuses_indefinite_matrices() {
        let a = vec![
            vec![4.0, 2.0, 0.6],
            vec![2.0, 5.0, 1.0],
            vec![0.6, 1.0, 3.0],
        ];
        let x = solve_spd(a.clone(), &[1.0, 2.0, 3.0]).unwrap();
        for (row, b) in a.iter().zip([1.0, 2.0, 3.0]) {
            assert!((dot(row, &x) - b).abs() < 1e-12);
        }
        assert!(solve_spd(vec![vec![1.0, 2.0], vec![2.0, 1.0]], &[1.0, 1.0]).is_none());
    }

    #[test]
    fn smallest_eigenvalues() {
        // Eigenvalues of [[2, 1], [1, 2]] are 1 and 3; of [[1, 2], [2, 1]], -1 and 3.
        let e = smallest_eigenvalue(&[vec![2.0, 1.0], vec![1.0, 2.0]]);
        assert!((e - 1.0).abs() < 1e-9, "{e}");
        let e = smallest_eigenvalue(&[vec![1.0, 2.0], vec![2.0, 1.0]]);
        assert!((e + 1.0).abs() < 1e-9, "{e}");
    }

    #[test]
    fn sigmoid_is_stable_at_the_extremes() {
        assert_eq!(sigmoid(0.0), 0.5);
        assert!(sigmoid(800.0) == 1.0 && sigmoid(-800.0) == 0.0);
        assert!((sigmoid(2.0) + sigmoid(-2.0) - 1.0).abs() < 1e-15);
    }
}
