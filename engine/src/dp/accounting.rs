//! Privacy accounting in approximate zero-concentrated DP.
//!
//! Each release spends ρ (zCDP, Bun and Steinke, "Concentrated Differential
//! Privacy", TCC 2016) and possibly a δ₀ that zCDP does not capture (the
//! partition selection of keys without a public domain). Compositions add
//! both. A history with total (ρ, δ₀) is (ε, δ)-DP for every δ > δ₀ with
//! ε = ρ + 2·√(ρ·ln(1/(δ - δ₀))) (Bun and Steinke, Proposition 1.3).
//!
//! A budget is the policy's (ε_B, δ_B) per principal and dataset; a query
//! fits while the whole history, itself included, stays within it. This is
//! tighter than adding ε's (basic composition): k queries at ρ each cost
//! about √k times one query's ε, not k times.
//!
//! These are floating-point computations on public parameters, never on
//! data; every rounding goes the conservative way (more noise, more spent).

/// ε of a ρ-zCDP history at δ (δ₀ already taken out).
pub fn epsilon_of(rho: f64, delta: f64) -> f64 {
    if rho <= 0.0 {
        return 0.0;
    }
    if delta <= 0.0 {
        return f64::INFINITY;
    }
    rho + 2.0 * (rho * (1.0 / delta).ln()).sqrt()
}

/// The largest ρ whose ε at δ is at most `epsilon`: the inverse of
/// [`epsilon_of`], ρ = (√(L + ε) − √L)² with L = ln(1/δ).
pub fn rho_for(epsilon: f64, delta: f64) -> f64 {
    if epsilon <= 0.0 || delta <= 0.0 {
        return 0.0;
    }
    let l = (1.0 / delta).ln();
    let rho = ((l + epsilon).sqrt() - l.sqrt()).powi(2);
    // Round down: never charge less than the guarantee needs.
    rho * (1.0 - 1e-12)
}

/// The σ of a discrete Gaussian that makes a release with L2 sensitivity
/// `sensitivity` ρ-zCDP (Canonne, Kamath, Steinke 2020, Theorem 14):
/// ρ = Δ² / (2σ²). Rounded up.
pub fn gaussian_sigma(rho: f64, sensitivity: f64) -> f64 {
    (sensitivity / (2.0 * rho).sqrt()) * (1.0 + 1e-12)
}

/// The upper tail Q(x) = P[N(0, 1) ≥ x], from erfc.
pub fn gaussian_tail(x: f64) -> f64 {
    0.5 * erfc(x / std::f64::consts::SQRT_2)
}

/// The x with Q(x) = p, by bisection (Q is decreasing).
pub fn gaussian_tail_inverse(p: f64) -> f64 {
    let (mut lo, mut hi) = (-40.0, 40.0);
    for _ in 0..200 {
        let mid = (lo + hi) / 2.0;
        if gaussian_tail(mid) > p {
            lo = mid
        } else {
            hi = mid
        }
    }
    hi
}

/// Complementary error function (W. J. Cody's rational approximations via
/// the Numerical Recipes `erfcc` form), relative error below 1.2e-7, which
/// is conservative enough for thresholds that are then rounded up.
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// Partition selection by Gaussian thresholding: a group is released only
/// when its noisy count of distinct units reaches `threshold`. With each unit
/// in at most `max_groups` groups, noise σ on those counts costs
/// ρ = max_groups / (2σ²), and a group that only one unit makes up passes
/// with probability at most δ₀ / max_groups, so the selection is
/// (ρ, δ₀)-approximate zCDP.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Selection {
    pub sigma: f64,
    pub threshold: i64,
    pub rho: f64,
    pub delta: f64,
}

pub fn selection(rho: f64, delta: f64, max_groups: u64) -> Selection {
    let sigma = gaussian_sigma(rho, (max_groups as f64).sqrt());
    // P[1 + N(0, σ²) ≥ τ] ≤ δ / L0, rounded up to an integer threshold and
    // with a margin for the discrete Gaussian's slightly heavier tail.
    let x = gaussian_tail_inverse(delta / max_groups as f64 / 2.0);
    let threshold = (1.0 + x * sigma).ceil() as i64 + 1;
    Selection {
        sigma,
        threshold,
        rho,
        delta,
    }
}

/// The 95% confidence half-width of a value noised with discrete Gaussian σ.
pub fn ci95(sigma: f64) -> f64 {
    1.96 * sigma
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epsilon_and_rho_are_inverse() {
        for (eps, delta) in [(0.1, 1e-6), (1.0, 1e-7), (5.0, 1e-8), (0.01, 1e-5)] {
            let rho = rho_for(eps, delta);
            let back = epsilon_of(rho, delta);
            assert!(
                back <= eps && back > eps * 0.999_999,
                "{eps} {delta}: {back}"
            );
        }
        assert_eq!(epsilon_of(0.0, 1e-6), 0.0);
        assert!(epsilon_of(0.1, 0.0).is_infinite());
    }

    #[test]
    fn zcdp_composition_beats_adding_epsilons() {
        let (eps, delta) = (0.5, 1e-6);
        let rho = rho_for(eps, delta);
        let total = epsilon_of(16.0 * rho, delta);
        assert!(
            total < 16.0 * eps / 2.0,
            "16 queries cost {total}, basic composition {}",
            16.0 * eps
        );
    }

    #[test]
    fn gaussian_calibration_matches_the_theorem() {
        let sigma = gaussian_sigma(0.5, 2.0);
        assert!((2.0f64.powi(2) / (2.0 * sigma * sigma) - 0.5).abs() < 1e-9);
        assert!(2.0f64.powi(2) / (2.0 * sigma * sigma) <= 0.5);
    }

    #[test]
    fn gaussian_tails() {
        assert!((gaussian_tail(0.0) - 0.5).abs() < 1e-7);
        assert!((gaussian_tail(1.96) - 0.025).abs() < 1e-4);
        assert!((gaussian_tail_inverse(0.025) - 1.96).abs() < 1e-3);
        assert!(gaussian_tail(-3.0) > 0.99);
    }

    #[test]
    fn selection_thresholds_grow_with_privacy() {
        let loose = selection(1.0, 1e-6, 1);
        let tight = selection(0.01, 1e-6, 1);
        let many = selection(1.0, 1e-6, 10);
        assert!(tight.threshold > loose.threshold);
        assert!(many.threshold > loose.threshold);
        // One unit alone passes with probability below delta.
        let p = gaussian_tail((loose.threshold as f64 - 1.0) / loose.sigma);
        assert!(p < 1e-6, "{p}");
    }
}
