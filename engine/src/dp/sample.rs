//! Exact samplers for differential privacy: discrete Laplace and discrete
//! Gaussian, using only integer arithmetic on unbiased uniform integers from
//! a cryptographically secure source. No floating-point number is ever
//! sampled: floating-point noise leaks through the gaps between doubles
//! (Mironov, "On significance of the least significant bits for
//! differential privacy", CCS 2012).
//!
//! The algorithms are those of Canonne, Kamath and Steinke, "The Discrete
//! Gaussian for Differential Privacy", NeurIPS 2020 (arXiv:2004.00010):
//! Algorithm 1 (Bernoulli(exp(-γ)) for rational γ), Algorithm 2 (discrete
//! Laplace with scale t/s) and Algorithm 3 (discrete Gaussian with rational
//! σ²). Parameters are exact rationals; a floating-point parameter is taken
//! at its exact binary value.

use num_bigint::BigUint;
use ring::rand::{SecureRandom, SystemRandom};

/// A source of uniform random bits.
pub trait Entropy {
    fn next_u64(&mut self) -> u64;
}

/// The operating system's CSPRNG (ring's `SystemRandom`), buffered.
pub struct SecureEntropy {
    rng: SystemRandom,
    buf: [u8; 4096],
    pos: usize,
}

impl SecureEntropy {
    pub fn new() -> Self {
        SecureEntropy {
            rng: SystemRandom::new(),
            buf: [0; 4096],
            pos: 4096,
        }
    }
}

impl Default for SecureEntropy {
    fn default() -> Self {
        Self::new()
    }
}

impl Entropy for SecureEntropy {
    fn next_u64(&mut self) -> u64 {
        if self.pos + 8 > self.buf.len() {
            // A failing system random source is not something to recover
            // from: releasing unnoised or badly noised values would be worse.
            self.rng
                .fill(&mut self.buf)
                .expect("the system random source works");
            self.pos = 0;
        }
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.buf[self.pos..self.pos + 8]);
        self.pos += 8;
        u64::from_le_bytes(b)
    }
}

/// A positive rational number, exact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rational {
    pub num: BigUint,
    pub den: BigUint,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParameterError {
    #[error("{what} must be a positive finite number")]
    NotPositive { what: &'static str },
}

impl Rational {
    pub fn new(num: u64, den: u64) -> Self {
        Rational {
            num: BigUint::from(num),
            den: BigUint::from(den.max(1)),
        }
    }

    /// The exact value of a positive finite double.
    pub fn from_f64(x: f64, what: &'static str) -> Result<Self, ParameterError> {
        if !(x.is_finite() && x > 0.0) {
            return Err(ParameterError::NotPositive { what });
        }
        let bits = x.to_bits();
        let exponent = ((bits >> 52) & 0x7ff) as i64;
        let fraction = bits & ((1u64 << 52) - 1);
        let (mantissa, exp) = if exponent == 0 {
            (fraction, -1074)
        } else {
            (fraction | (1u64 << 52), exponent - 1075)
        };
        let (num, den) = if exp >= 0 {
            (BigUint::from(mantissa) << exp as usize, BigUint::from(1u8))
        } else {
            (
                BigUint::from(mantissa),
                BigUint::from(1u8) << (-exp) as usize,
            )
        };
        // The denominator is a power of two: dividing out the common twos
        // gives the lowest terms.
        let twos = num
            .trailing_zeros()
            .unwrap_or(0)
            .min(den.trailing_zeros().unwrap_or(0));
        Ok(Rational {
            num: num >> twos as usize,
            den: den >> twos as usize,
        })
    }

    pub fn to_f64(&self) -> f64 {
        let n = self.num.to_string().parse::<f64>().unwrap_or(f64::INFINITY);
        let d = self.den.to_string().parse::<f64>().unwrap_or(f64::INFINITY);
        n / d
    }
}

/// A uniform integer in `[0, n)`, by rejection (no modulo bias).
fn uniform_below(e: &mut dyn Entropy, n: &BigUint) -> BigUint {
    debug_assert!(*n > BigUint::ZERO);
    let bits = n.bits();
    let words = bits.div_ceil(64) as usize;
    loop {
        let mut digits: Vec<u64> = (0..words).map(|_| e.next_u64()).collect();
        let spare = (words as u64) * 64 - bits;
        if let Some(last) = digits.last_mut() {
            *last >>= spare;
        }
        let candidate = BigUint::from_slice(
            &digits
                .iter()
                .flat_map(|d| [*d as u32, (*d >> 32) as u32])
                .collect::<Vec<_>>(),
        );
        if candidate < *n {
            return candidate;
        }
    }
}

/// Bernoulli(num/den), for num ≤ den.
fn bernoulli(e: &mut dyn Entropy, num: &BigUint, den: &BigUint) -> bool {
    uniform_below(e, den) < *num
}

/// Bernoulli(exp(-num/den)): CKS20 Algorithm 1, with the γ > 1 reduction.
fn bernoulli_exp_neg(e: &mut dyn Entropy, num: &BigUint, den: &BigUint) -> bool {
    let mut num = num.clone();
    while num > *den {
        if !bernoulli_exp_neg_at_most_one(e, den, den) {
            return false;
        }
        num -= den;
    }
    bernoulli_exp_neg_at_most_one(e, &num, den)
}

/// Bernoulli(exp(-γ)) for γ = num/den in [0, 1].
fn bernoulli_exp_neg_at_most_one(e: &mut dyn Entropy, num: &BigUint, den: &BigUint) -> bool {
    let mut k = BigUint::from(1u8);
    loop {
        if !bernoulli(e, num, &(den * &k)) {
            break;
        }
        k += 1u8;
    }
    k.bit(0)
}

/// The discrete Laplace distribution: P(y) ∝ exp(-|y| / scale).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscreteLaplace {
    scale: Rational,
}

impl DiscreteLaplace {
    pub fn new(scale: Rational) -> Result<Self, ParameterError> {
        if scale.num == BigUint::ZERO {
            return Err(ParameterError::NotPositive {
                what: "the discrete Laplace scale",
            });
        }
        Ok(DiscreteLaplace { scale })
    }

    pub fn scale(&self) -> &Rational {
        &self.scale
    }

    /// CKS20 Algorithm 2 with scale t/s: here t = scale.num, s = scale.den.
    pub fn sample(&self, e: &mut dyn Entropy) -> BigInt {
        let (t, s) = (&self.scale.num, &self.scale.den);
        loop {
            let u = uniform_below(e, t);
            if !bernoulli_exp_neg(e, &u, t) {
                continue;
            }
            let mut v = BigUint::ZERO;
            let one = BigUint::from(1u8);
            while bernoulli_exp_neg(e, &one, &one) {
                v += 1u8;
            }
            let x = u + t * v;
            let y = x / s;
            let negative = e.next_u64() & 1 == 1;
            if negative && y == BigUint::ZERO {
                continue;
            }
            return BigInt {
                negative,
                magnitude: y,
            };
        }
    }
}

/// The discrete Gaussian distribution: P(y) ∝ exp(-y² / (2σ²)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscreteGaussian {
    sigma2: Rational,
}

impl DiscreteGaussian {
    pub fn new(sigma2: Rational) -> Result<Self, ParameterError> {
        if sigma2.num == BigUint::ZERO {
            return Err(ParameterError::NotPositive {
                what: "the discrete Gaussian variance",
            });
        }
        Ok(DiscreteGaussian { sigma2 })
    }

    pub fn sigma2(&self) -> &Rational {
        &self.sigma2
    }

    /// CKS20 Algorithm 3: discrete Laplace proposals with t = ⌊σ⌋ + 1,
    /// accepted with probability exp(-(|y| - σ²/t)² / (2σ²)).
    pub fn sample(&self, e: &mut dyn Entropy) -> BigInt {
        let (a, b) = (&self.sigma2.num, &self.sigma2.den);
        // t = floor(sqrt(a / b)) + 1
        let t = (a / b).sqrt() + 1u8;
        let laplace = DiscreteLaplace {
            scale: Rational {
                num: t.clone(),
                den: BigUint::from(1u8),
            },
        };
        loop {
            let y = laplace.sample(e);
            // γ = (|y|·b·t - a)² / (2·a·b·t²)
            let ybt = &y.magnitude * b * &t;
            let diff = if ybt >= *a { &ybt - a } else { a - &ybt };
            let num = &diff * &diff;
            let den = BigUint::from(2u8) * a * b * &t * &t;
            if bernoulli_exp_neg(e, &num, &den) {
                return y;
            }
        }
    }
}

/// A signed integer sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BigInt {
    pub negative: bool,
    pub magnitude: BigUint,
}

impl BigInt {
    /// The sample as an `i64`, saturating (a noise value beyond ±2^63 has
    /// probability far below 2^-1000 for any scale veil uses).
    pub fn to_i64(&self) -> i64 {
        let m: i64 = i64::try_from(self.magnitude.clone()).unwrap_or(i64::MAX);
        if self.negative { -m } else { m }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Deterministic entropy for tests: the test controls the randomness.
    pub struct Seeded(pub rand_chacha::ChaCha20Rng);

    impl Seeded {
        pub fn new(seed: u64) -> Self {
            Seeded(rand_chacha::ChaCha20Rng::seed_from_u64(seed))
        }
    }

    impl Entropy for Seeded {
        fn next_u64(&mut self) -> u64 {
            self.0.next_u64()
        }
    }

    fn histogram(n: usize, mut draw: impl FnMut() -> i64) -> std::collections::BTreeMap<i64, u64> {
        let mut h = std::collections::BTreeMap::new();
        for _ in 0..n {
            *h.entry(draw()).or_insert(0) += 1;
        }
        h
    }

    /// Pearson's chi-square over the cells with expected count ≥ 5 (and the
    /// rest pooled), against `pmf`; returns (statistic, degrees of freedom).
    fn chi_square(
        h: &std::collections::BTreeMap<i64, u64>,
        n: usize,
        pmf: impl Fn(i64) -> f64,
        range: i64,
    ) -> (f64, usize) {
        let (mut stat, mut cells, mut pooled_obs, mut pooled_exp) = (0.0, 0usize, 0.0, 0.0);
        for y in -range..=range {
            let expected = pmf(y) * n as f64;
            let observed = *h.get(&y).unwrap_or(&0) as f64;
            if expected >= 5.0 {
                stat += (observed - expected).powi(2) / expected;
                cells += 1;
            } else {
                pooled_obs += observed;
                pooled_exp += expected;
            }
        }
        let outside: f64 = h
            .iter()
            .filter(|(y, _)| y.abs() > range)
            .map(|(_, c)| *c as f64)
            .sum();
        pooled_obs += outside;
        pooled_exp += n as f64 - (-range..=range).map(|y| pmf(y) * n as f64).sum::<f64>();
        if pooled_exp >= 5.0 {
            stat += (pooled_obs - pooled_exp).powi(2) / pooled_exp;
            cells += 1;
        }
        (stat, cells - 1)
    }

    /// A generous upper quantile of chi-square(df): mean + 6 standard
    /// deviations. With a fixed seed the test is deterministic; the margin
    /// keeps it meaningful (a wrong distribution exceeds it by far).
    fn chi_square_limit(df: usize) -> f64 {
        df as f64 + 6.0 * (2.0 * df as f64).sqrt()
    }

    #[test]
    fn discrete_laplace_matches_its_distribution() {
        for (scale, seed) in [(1.0, 1), (3.5, 2), (0.4, 3)] {
            let d = DiscreteLaplace::new(Rational::from_f64(scale, "scale").unwrap()).unwrap();
            let mut e = Seeded::new(seed);
            let n = 40_000;
            let h = histogram(n, || d.sample(&mut e).to_i64());
            let p = (-1.0f64 / scale).exp();
            let pmf = |y: i64| (1.0 - p) / (1.0 + p) * p.powi(y.abs() as i32);
            let (stat, df) = chi_square(&h, n, pmf, 60);
            assert!(
                stat < chi_square_limit(df),
                "scale {scale}: chi-square {stat} with {df} df"
            );
            // Symmetry: as many positive as negative draws, within 5 sd.
            let pos: u64 = h.iter().filter(|(y, _)| **y > 0).map(|(_, c)| c).sum();
            let neg: u64 = h.iter().filter(|(y, _)| **y < 0).map(|(_, c)| c).sum();
            let sd = ((pos + neg) as f64).sqrt();
            assert!((pos as f64 - neg as f64).abs() < 5.0 * sd, "{pos} vs {neg}");
            // Variance 2p / (1-p)^2.
            let mean: f64 = h.iter().map(|(y, c)| *y as f64 * *c as f64).sum::<f64>() / n as f64;
            let var: f64 = h
                .iter()
                .map(|(y, c)| (*y as f64 - mean).powi(2) * *c as f64)
                .sum::<f64>()
                / n as f64;
            let expected = 2.0 * p / (1.0 - p).powi(2);
            assert!(
                (var / expected - 1.0).abs() < 0.08,
                "scale {scale}: variance {var} vs {expected}"
            );
        }
    }

    #[test]
    fn discrete_gaussian_matches_its_distribution() {
        for (sigma, seed) in [(1.0, 4), (2.5, 5), (7.0, 6)] {
            let d = DiscreteGaussian::new(Rational::from_f64(sigma * sigma, "variance").unwrap())
                .unwrap();
            let mut e = Seeded::new(seed);
            let n = 30_000;
            let h = histogram(n, || d.sample(&mut e).to_i64());
            let weight = |y: i64| (-(y as f64).powi(2) / (2.0 * sigma * sigma)).exp();
            let norm: f64 = (-400..=400).map(weight).sum();
            let (stat, df) = chi_square(&h, n, |y| weight(y) / norm, 60);
            assert!(
                stat < chi_square_limit(df),
                "sigma {sigma}: chi-square {stat} with {df} df"
            );
            let var: f64 = h
                .iter()
                .map(|(y, c)| (*y as f64).powi(2) * *c as f64)
                .sum::<f64>()
                / n as f64;
            let expected: f64 = (-400..=400)
                .map(|y| (y as f64).powi(2) * weight(y))
                .sum::<f64>()
                / norm;
            assert!(
                (var / expected - 1.0).abs() < 0.08,
                "sigma {sigma}: variance {var} vs {expected}"
            );
        }
    }

    #[test]
    fn a_wrong_distribution_fails_the_same_check() {
        // The check is not vacuous: Laplace draws tested against a Gaussian
        // of the same variance are rejected.
        let d = DiscreteLaplace::new(Rational::new(3, 1)).unwrap();
        let mut e = Seeded::new(7);
        let n = 30_000;
        let h = histogram(n, || d.sample(&mut e).to_i64());
        let p = (-1.0f64 / 3.0).exp();
        let sigma2 = 2.0 * p / (1.0 - p).powi(2);
        let weight = |y: i64| (-(y as f64).powi(2) / (2.0 * sigma2)).exp();
        let norm: f64 = (-400..=400).map(weight).sum();
        let (stat, df) = chi_square(&h, n, |y| weight(y) / norm, 60);
        assert!(
            stat > chi_square_limit(df),
            "chi-square {stat} with {df} df"
        );
    }

    #[test]
    fn bernoulli_exp_is_exact_in_expectation() {
        let mut e = Seeded::new(8);
        for (num, den) in [(1u64, 2u64), (3, 1), (7, 3)] {
            let n = 50_000;
            let hits = (0..n)
                .filter(|_| bernoulli_exp_neg(&mut e, &BigUint::from(num), &BigUint::from(den)))
                .count();
            let p = (-(num as f64) / den as f64).exp();
            let sd = (p * (1.0 - p) / n as f64).sqrt();
            assert!(
                (hits as f64 / n as f64 - p).abs() < 5.0 * sd,
                "exp(-{num}/{den})"
            );
        }
    }

    #[test]
    fn invalid_parameters_are_refused() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(Rational::from_f64(bad, "scale").is_err(), "{bad}");
        }
        assert!(
            DiscreteLaplace::new(Rational {
                num: BigUint::ZERO,
                den: BigUint::from(1u8)
            })
            .is_err()
        );
        assert!(
            DiscreteGaussian::new(Rational {
                num: BigUint::ZERO,
                den: BigUint::from(1u8)
            })
            .is_err()
        );
        let r = Rational::from_f64(0.1, "x").unwrap();
        assert_eq!(r.to_f64(), 0.1);
        assert_eq!(Rational::from_f64(3.0, "x").unwrap(), Rational::new(3, 1));
    }

    #[test]
    fn secure_entropy_gives_distinct_words() {
        let mut e = SecureEntropy::new();
        let words: std::collections::HashSet<u64> = (0..1000).map(|_| e.next_u64()).collect();
        assert_eq!(words.len(), 1000);
    }
}
