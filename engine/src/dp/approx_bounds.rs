//! Automatic clamping bounds, estimated under DP from a share of the
//! answer's ε (Google's ApproxBounds): a noisy histogram of the values'
//! magnitudes on a log scale, read from both ends.
//!
//! The bins, in the order of the values they hold: negative values by
//! magnitude, [-2^(k+1), -2^k), then the values of magnitude below
//! 2^[`LOWEST`], then positive values by magnitude, [2^k, 2^(k+1)), for k
//! from [`LOWEST`] to [`HIGHEST`] (the last bins also hold everything
//! beyond). Each privacy unit adds at most Linf rows to the histogram (the
//! estimation is bounded like a query without keys, each bin's share
//! floored on a grid of 1/[`WEIGHT`] rows so that a unit's bins add to at
//! most Linf), so its L1 and L2 sensitivities are both Linf, and its noise
//! is that of one count, at one share of ε.
//!
//! The bounds are the outer edges of the lowest and of the highest bin
//! whose noisy count passes a threshold that an empty bin passes with
//! probability at most [`FALSE_BIN`] (over all bins together). What the
//! histogram releases is post-processed into two numbers, so the bounds
//! are as private as the histogram; they are then used as declared bounds
//! would be, and said in the answer. Values outside them are clamped: a
//! bias, not a leak.

/// The smallest magnitude told apart from zero is 2^LOWEST (about 0.001).
pub(crate) const LOWEST: i32 = -10;
/// Magnitudes from 2^HIGHEST (about 1.1e15) up share the outer bins.
pub(crate) const HIGHEST: i32 = 50;
/// Magnitude levels on each side of zero.
const LEVELS: usize = (HIGHEST - LOWEST + 1) as usize;
/// Bins of the histogram: both sides and the one around zero.
pub(crate) const BINS: usize = 2 * LEVELS + 1;
/// The probability that some empty bin passes the threshold.
pub(crate) const FALSE_BIN: f64 = 1e-3;

/// What one row adds to its bin: a unit's rows, scaled down to Linf with
/// floor, then add their share to each bin on a grid of 1/64 of a row
/// (one row's worth would floor a unit spread over several bins to
/// nothing). The sensitivity is Linf · WEIGHT on that grid.
pub(crate) const WEIGHT: f64 = 64.0;

/// The index of the zero bin.
pub(crate) const ZERO: usize = LEVELS;

/// The bin of the value `x` as the SQL rewrite computes it: the level of a
/// magnitude `m` is floor(log2(m)) clamped to [LOWEST, HIGHEST].
#[cfg(test)]
fn bin_of(x: f64) -> Option<usize> {
    if x.is_nan() {
        return None;
    }
    let m = x.abs();
    if m < 2f64.powi(LOWEST) {
        return Some(ZERO);
    }
    let level = (m.log2().floor() as i32).clamp(LOWEST, HIGHEST);
    let offset = (level - LOWEST) as usize;
    Some(if x > 0.0 {
        ZERO + 1 + offset
    } else {
        ZERO - 1 - offset
    })
}

/// The lowest and highest value of bin `i`.
pub(crate) fn edges(i: usize) -> (f64, f64) {
    let level = |offset: usize| LOWEST + offset as i32;
    match i.cmp(&ZERO) {
        std::cmp::Ordering::Equal => (-(2f64.powi(LOWEST)), 2f64.powi(LOWEST)),
        std::cmp::Ordering::Greater => {
            let k = level(i - ZERO - 1);
            (2f64.powi(k), 2f64.powi(k + 1))
        }
        std::cmp::Ordering::Less => {
            let k = level(ZERO - 1 - i);
            (-(2f64.powi(k + 1)), -(2f64.powi(k)))
        }
    }
}

/// The bounds read from noisy bin counts: from the lowest edge of the first
/// bin above `threshold` to the highest edge of the last; `None` when no
/// bin is above it.
pub(crate) fn choose(noisy: &[i64], threshold: i64) -> Option<(f64, f64)> {
    let first = noisy.iter().position(|&c| c > threshold)?;
    let last = noisy.iter().rposition(|&c| c > threshold)?;
    Some((edges(first).0, edges(last).1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_cover_the_line_in_order() {
        assert_eq!(bin_of(0.0), Some(ZERO));
        assert_eq!(bin_of(f64::NAN), None);
        let mut previous = (f64::NEG_INFINITY, f64::NEG_INFINITY);
        for i in 0..BINS {
            let (lo, hi) = edges(i);
            assert!(lo < hi, "bin {i}");
            if i > 0 {
                assert_eq!(previous.1, lo, "bin {i} starts where {} ends", i - 1);
            }
            previous = (lo, hi);
        }
        // Every value inside the range falls in the bin whose edges hold it.
        for x in [
            -1e12, -3.5, -1.0, -0.0009, 0.0, 0.0009, 0.001, 1.0, 1.5, 2.0, 1e6, 7e14,
        ] {
            let i = bin_of(x).unwrap();
            let (lo, hi) = edges(i);
            assert!(lo <= x && x <= hi, "{x} in bin {i} = [{lo}, {hi}]");
        }
        // Beyond the range, the outer bins.
        assert_eq!(bin_of(1e300), Some(BINS - 1));
        assert_eq!(bin_of(-1e300), Some(0));
        assert_eq!(bin_of(f64::INFINITY), Some(BINS - 1));
    }

    #[test]
    fn bounds_span_the_bins_above_the_threshold() {
        let mut noisy = vec![0i64; BINS];
        noisy[ZERO + 1 + 10] = 50; // [1, 2)
        noisy[ZERO + 1 + 19] = 40; // [512, 1024)
        noisy[ZERO + 1 + 30] = 3; // below the threshold
        assert_eq!(choose(&noisy, 10), Some((1.0, 1024.0)));
        noisy[ZERO - 1 - 12] = 11; // [-8, -4)
        assert_eq!(choose(&noisy, 10), Some((-8.0, 1024.0)));
        assert_eq!(choose(&vec![5; BINS], 10), None);
    }
}
