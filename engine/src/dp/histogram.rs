//! Quantiles read from a noisy histogram: post-processing of released
//! counts only, shared by the SQL release and the quantiles model template.

/// The running maximum of the cumulative counts. The counts are used as
/// released, negative ones included, so each cumulative count is unbiased
/// (clipping them at zero would add the positive half of every empty bin's
/// noise); the running maximum keeps it monotone.
pub(crate) fn cumulative(counts: &[i64]) -> Vec<f64> {
    let (mut sum, mut top) = (0i64, 0i64);
    counts
        .iter()
        .map(|&c| {
            sum = sum.saturating_add(c);
            top = top.max(sum);
            top as f64
        })
        .collect()
}

/// The `q` quantile of bins of `width` from `lower`, given their
/// cumulative counts (from [`cumulative`]): the bin where the cumulative
/// count reaches q times the total, and within it the linear interpolation.
/// With no positive count at all, the middle of the first bin.
pub(crate) fn quantile(cumulative: &[f64], lower: f64, width: f64, q: f64) -> f64 {
    let Some(&total) = cumulative.last() else {
        return lower;
    };
    let goal = q.clamp(0.0, 1.0) * total.max(1.0);
    let i = cumulative
        .partition_point(|&c| c < goal)
        .min(cumulative.len() - 1);
    let below = if i == 0 { 0.0 } else { cumulative[i - 1] };
    let inside = cumulative[i] - below;
    let share = if inside > 0.0 {
        ((goal - below) / inside).clamp(0.0, 1.0)
    } else {
        0.5
    };
    lower + width * (i as f64 + share)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_their_bin_and_stay_in_range() {
        // 10 values in [0, 1), 10 in [1, 2), 20 in [3, 4).
        let c = cumulative(&[10, 10, 0, 20]);
        assert_eq!(c, [10.0, 20.0, 20.0, 40.0]);
        assert_eq!(quantile(&c, 0.0, 1.0, 0.5), 2.0);
        assert_eq!(quantile(&c, 0.0, 1.0, 0.25), 1.0);
        assert_eq!(quantile(&c, 0.0, 1.0, 0.75), 3.5);
        assert_eq!(quantile(&c, 0.0, 1.0, 1.0), 4.0);
        assert_eq!(quantile(&c, 0.0, 1.0, 0.0), 0.0);
        // Negative noise never makes the cumulative count fall.
        let c = cumulative(&[5, -3, 4, -10]);
        assert!(c.windows(2).all(|w| w[0] <= w[1]), "{c:?}");
        // All noise, no data: still a value within the bins.
        let c = cumulative(&[-2, -1, -4]);
        let q = quantile(&c, 10.0, 2.0, 0.5);
        assert!((10.0..=16.0).contains(&q), "{q}");
        assert_eq!(quantile(&[], 3.0, 1.0, 0.5), 3.0);
    }
}
