//! The release of a DP answer: which groups appear (all of a public domain,
//! empty ones included; or those that pass partition selection), and the
//! noise on every statistic, drawn only after the budget was charged.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::scalar::ScalarValue;

use super::accounting::{ci95, gaussian_sigma, rho_for, selection};
use super::bound_contributions::{Bounded, Stats};
use super::sample::{DiscreteGaussian, DiscreteLaplace, Entropy, Rational};
use crate::error::QueryError;
use crate::policy::{DpKind, DpSource, QUANTILE_BINS};

/// Largest number of groups a public domain may enumerate.
pub(crate) const MAX_DOMAIN_GROUPS: usize = 100_000;

/// Largest number of noisy values an enumerated answer draws (groups times
/// each group's statistics, a quantile's bins included). The exact samplers
/// run between two awaits, where no time limit can stop them: this bounds
/// how long they run.
pub(crate) const MAX_NOISY_VALUES: usize = 1_000_000;

/// How many noisy values one group of an answer with these aggregates
/// draws.
pub(crate) fn draws_per_group(kinds: &[DpKind]) -> usize {
    kinds
        .iter()
        .map(|k| match k {
            DpKind::Quantile { .. } => QUANTILE_BINS,
            k => k.statistics(),
        })
        .sum::<usize>()
        .max(1)
}

/// Whether `cells` groups of these aggregates may be enumerated.
pub(crate) fn enumerable(cells: usize, kinds: &[DpKind]) -> bool {
    cells <= MAX_DOMAIN_GROUPS && cells.saturating_mul(draws_per_group(kinds)) <= MAX_NOISY_VALUES
}

/// The noise of a whole answer: one mechanism for every statistic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// Discrete Laplace: pure ε-DP; costs ε (basic composition) or ε²/2
    /// (zCDP).
    Laplace,
    /// Discrete Gaussian: ρ-zCDP.
    Gaussian,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Laplace => "discrete Laplace",
            Mechanism::Gaussian => "discrete Gaussian",
        }
    }
}

/// How one released statistic is noised.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnNoise {
    pub column: String,
    /// `count`, `count of privacy units`, `sum` or `average (noisy sum / noisy count)`.
    pub statistic: &'static str,
    /// The scale of the noise in the column's units: b of the Laplace or σ
    /// of the Gaussian.
    pub scale: f64,
    /// Its standard deviation.
    pub std: f64,
    /// Half-width of a 95% confidence interval (for an average, of its sum;
    /// for a quantile, of its rank, in rows).
    pub ci95: f64,
    /// For a quantile: the width of its histogram's bins, within which it
    /// is interpolated.
    pub resolution: Option<f64>,
    /// The aggregate of the query it releases.
    pub aggregate: usize,
    /// The clamping bounds, for the aggregates that clamp: `None` while
    /// automatic bounds are not estimated yet (the scales are then NaN:
    /// they depend on the bounds).
    pub bounds: Option<(f64, f64)>,
    /// Whether the bounds were estimated under DP (`approx_bounds`).
    pub auto_bounds: bool,
}

/// What one answer spends, under each accountant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueryCost {
    /// ε and δ under basic composition.
    pub epsilon: f64,
    pub delta: f64,
    /// ρ under zCDP, and the δ₀ it does not cover (partition selection).
    pub rho: f64,
    pub delta0: f64,
}

/// A partition-selection threshold on noisy counts of privacy units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Threshold {
    pub scale: f64,
    pub threshold: i64,
}

/// What an answer may spend and how contributions are bounded, as the
/// calibration is given them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Spend {
    pub epsilon: f64,
    /// The dataset budget's δ.
    pub delta: f64,
    pub max_groups: u64,
    pub max_rows: u64,
    /// Histograms that estimate automatic bounds (`approx_bounds`): each
    /// takes one share of ε, like a statistic.
    pub estimates: usize,
}

/// Everything the DP release needs, fixed at prepare time.
pub(crate) struct DpRelease {
    pub bounded: Bounded,
    pub outputs: Vec<(String, DpSource)>,
    pub kinds: Vec<DpKind>,
    /// The public domain of every key, when all keys have one.
    pub domains: Option<Vec<Vec<String>>>,
    pub mechanism: Mechanism,
    /// The noise scale on the grid of each aggregate's statistics.
    pub scales: Vec<Scales>,
    pub selection: Option<Threshold>,
    /// The noise on each bin of the histograms that estimate automatic
    /// bounds, and the count an empty bin passes with probability at most
    /// `approx_bounds::FALSE_BIN` over all bins.
    pub estimation: Option<Threshold>,
    pub noise: Vec<ColumnNoise>,
    pub cost: QueryCost,
    /// Whether the answer carries, per noisy cell, a 95% interval of the
    /// bounded statistic (hidden columns `__veil_ci{j}_lo` and `_hi`).
    pub intervals: bool,
    /// What the calibration was given, to price another ε.
    pub spend: Spend,
}

impl DpRelease {
    /// Per noisy column (as in `noise`), the smallest ε whose 95% half-width
    /// is at most `target`, the query otherwise unchanged; `None` when even
    /// the largest ε allowed is not enough. The half-width falls as ε grows,
    /// so a bisection on log ε finds it (to 0.1%).
    pub(crate) fn epsilon_for(&self, target: f64) -> Vec<Option<f64>> {
        let at = |epsilon: f64| {
            calibrate(
                self.bounded.clone(),
                self.outputs.clone(),
                self.kinds.clone(),
                self.domains.clone(),
                Spend {
                    epsilon,
                    ..self.spend
                },
            )
            .noise
        };
        let (lo, hi) = (*super::EPSILON_RANGE.start(), *super::EPSILON_RANGE.end());
        let widest = at(hi);
        (0..self.noise.len())
            .map(|i| {
                if target.is_nan()
                    || target <= 0.0
                    || widest[i].ci95.is_nan()
                    || widest[i].ci95 > target
                {
                    return None;
                }
                let (mut a, mut b) = (lo.ln(), hi.ln());
                if at(lo)[i].ci95 <= target {
                    return Some(lo);
                }
                while b - a > 1e-3 {
                    let m = (a + b) / 2.0;
                    if at(m.exp())[i].ci95 <= target {
                        b = m;
                    } else {
                        a = m;
                    }
                }
                Some(b.exp())
            })
            .collect()
    }
}

/// The noise scales of one aggregate's statistics, each on its grid: the
/// sum or count (or each bin of a quantile's histogram), the count of
/// values (AVG, VAR) and the sum of squares (VAR).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Scales {
    pub sum: f64,
    pub count: Option<f64>,
    pub squares: Option<f64>,
}

/// Splits `epsilon` over the statistics of the answer (the partition
/// selection and the estimation of automatic bounds included), picks the
/// mechanism with less noise for it, and computes every scale. `delta` is
/// the dataset budget's δ: a Gaussian answer is (ε, δ/2)-DP alone; a
/// partition selection spends δ/100 more. The shares compose to the whole
/// ε (basic composition) and ρ (zCDP).
pub(crate) fn calibrate(
    bounded: Bounded,
    outputs: Vec<(String, DpSource)>,
    kinds: Vec<DpKind>,
    domains: Option<Vec<Vec<String>>>,
    spend: Spend,
) -> DpRelease {
    let Spend {
        epsilon,
        delta,
        max_groups,
        max_rows,
        estimates,
    } = spend;
    let statistics: usize = kinds.iter().map(|k| k.statistics()).sum();
    let shares = (statistics + usize::from(domains.is_none()) + estimates).max(1) as f64;
    let (l0, linf) = (max_groups as f64, max_rows as f64);
    let rho = rho_for(epsilon, delta / 2.0);
    let (rho_share, epsilon_share) = (rho / shares, epsilon / shares);
    let delta0 = if domains.is_none() {
        delta / 100.0
    } else {
        0.0
    };
    // The mechanism with the smaller standard deviation on a row count.
    let gaussian_std = gaussian_sigma(rho_share, l0.sqrt() * linf);
    let laplace_std = std::f64::consts::SQRT_2 * l0 * linf / epsilon_share;
    let mechanism = if laplace_std <= gaussian_std {
        Mechanism::Laplace
    } else {
        Mechanism::Gaussian
    };
    // Noise scale for a statistic to which one unit adds at most `per_group`
    // in each of at most L0 groups.
    let scale = |per_group: f64| match mechanism {
        Mechanism::Laplace => l0 * per_group / epsilon_share,
        Mechanism::Gaussian => gaussian_sigma(rho_share, l0.sqrt() * per_group),
    };
    let scales: Vec<Scales> = kinds
        .iter()
        .zip(&bounded.stats)
        .map(|(k, s)| {
            let (sum, count, squares) = match k {
                // A unit's rows in a group add at most Linf across a
                // histogram's bins (floored when scaled), as to one count:
                // its L1 and L2 norms are both at most Linf.
                DpKind::Count | DpKind::Quantile { .. } | DpKind::Magnitudes => {
                    (scale(linf), None, None)
                }
                DpKind::CountUnits => (scale(1.0), None, None),
                DpKind::Sum { .. } => (scale(linf * s.row_bound), None, None),
                DpKind::Avg { .. } => (scale(linf * s.row_bound), Some(scale(linf)), None),
                DpKind::Variance { .. } => (
                    scale(linf * s.row_bound),
                    Some(scale(linf)),
                    Some(scale(linf * s.square_bound)),
                ),
            };
            Scales {
                sum,
                count,
                squares,
            }
        })
        .collect();
    let selection = domains.is_none().then(|| match mechanism {
        // P[1 + DL(b) ≥ τ] ≤ exp(-(τ-1)/b) ≤ δ₀/L0 for τ ≥ 1 + b·ln(L0/δ₀).
        Mechanism::Laplace => {
            let b = l0 / epsilon_share;
            Threshold {
                scale: b,
                threshold: (1.0 + b * (l0 / delta0).ln()).ceil() as i64 + 1,
            }
        }
        Mechanism::Gaussian => {
            let s = selection(rho_share, delta0, max_groups);
            Threshold {
                scale: s.sigma,
                threshold: s.threshold,
            }
        }
    });
    // A histogram of magnitudes has no keys: a unit adds at most Linf rows
    // to it in all (L1 and L2), whatever L0.
    let estimation = (estimates > 0).then(|| {
        let bins = super::approx_bounds::BINS as f64;
        // On the histogram's grid (`approx_bounds::WEIGHT` per row).
        let linf = linf * super::approx_bounds::WEIGHT;
        let beta = super::approx_bounds::FALSE_BIN / bins;
        match mechanism {
            // P[DL(b) ≥ t] = e^(-t/b) / (1 + e^(-1/b)) ≤ e^(-t/b).
            Mechanism::Laplace => {
                let b = linf / epsilon_share;
                Threshold {
                    scale: b,
                    threshold: (b * (1.0 / beta).ln()).ceil() as i64,
                }
            }
            // The discrete Gaussian is σ-subgaussian (Canonne, Kamath,
            // Steinke 2020): P[X ≥ t] ≤ e^(-t²/2σ²).
            Mechanism::Gaussian => {
                let sigma = gaussian_sigma(rho_share, linf);
                Threshold {
                    scale: sigma,
                    threshold: (sigma * (2.0 * (1.0 / beta).ln()).sqrt()).ceil() as i64,
                }
            }
        }
    });
    // Standard deviation and 95% half-width from the scale: the discrete
    // Laplace's tail is exp(-t/b), so t = b·ln(20) leaves 5% outside.
    let spread = |scale: f64| match mechanism {
        Mechanism::Laplace => (std::f64::consts::SQRT_2 * scale, scale * 20f64.ln()),
        Mechanism::Gaussian => (scale, ci95(scale)),
    };
    let bins = QUANTILE_BINS as f64;
    let mut noise = Vec::new();
    for (name, source) in &outputs {
        if let DpSource::Aggregate(j) = source {
            let stats = &bounded.stats[*j];
            let Scales { sum, squares, .. } = scales[*j];
            let (statistic, scale) = match kinds[*j] {
                DpKind::Count => ("count", sum),
                DpKind::CountUnits => ("count of privacy units", sum),
                DpKind::Sum { .. } => ("sum", sum * stats.grid),
                DpKind::Avg { .. } => ("average (noisy sum / noisy count)", sum * stats.grid),
                DpKind::Variance { root, .. } => (
                    if root {
                        "standard deviation (from noisy sums of centred values and their squares over a noisy count)"
                    } else {
                        "variance (noisy sums of centred values and their squares over a noisy count)"
                    },
                    squares.unwrap_or(0.0) * stats.square_grid,
                ),
                DpKind::Quantile { .. } => (
                    "quantile (from a noisy histogram of 32 equal bins over the bounds, interpolated within its bin; scale is each bin's, std and ci95 are of its rank, in rows)",
                    sum,
                ),
                DpKind::Magnitudes => ("histogram of magnitudes", sum),
            };
            let (mut std, mut ci95) = spread(scale);
            let mut resolution = None;
            if let DpKind::Quantile { lo, hi, .. } = kinds[*j] {
                // The rank is a cumulative count: the noise of the bins
                // below it adds up, half of them in the middle of the range
                // (a sum of several noises, nearly normal).
                std *= (bins / 2.0).sqrt();
                ci95 = 1.959_964 * std;
                resolution = Some((hi - lo) / bins);
            }
            noise.push(ColumnNoise {
                column: name.clone(),
                statistic,
                scale,
                std,
                ci95,
                resolution,
                aggregate: *j,
                bounds: kinds[*j].bounds(),
                auto_bounds: false,
            });
        }
    }
    let cost = match mechanism {
        Mechanism::Laplace => QueryCost {
            epsilon,
            delta: delta0,
            rho: epsilon * epsilon / 2.0,
            delta0,
        },
        Mechanism::Gaussian => QueryCost {
            epsilon,
            delta: delta / 2.0 + delta0,
            rho,
            delta0,
        },
    };
    DpRelease {
        bounded,
        outputs,
        kinds,
        domains,
        mechanism,
        scales,
        selection,
        estimation,
        noise,
        cost,
        intervals: false,
        spend,
    }
}

/// A sampler of the answer's mechanism at one scale (on the grid).
enum Noise {
    Laplace(DiscreteLaplace),
    Gaussian(DiscreteGaussian),
}

impl Noise {
    fn new(mechanism: Mechanism, scale: f64) -> Result<Noise, QueryError> {
        let fail = |e: super::sample::ParameterError| QueryError::Internal {
            detail: e.to_string(),
        };
        Ok(match mechanism {
            Mechanism::Laplace => Noise::Laplace(
                DiscreteLaplace::new(Rational::from_f64(scale, "the noise scale").map_err(fail)?)
                    .map_err(fail)?,
            ),
            Mechanism::Gaussian => Noise::Gaussian(
                DiscreteGaussian::new(
                    Rational::from_f64(scale * scale, "the noise variance").map_err(fail)?,
                )
                .map_err(fail)?,
            ),
        })
    }

    fn sample(&self, e: &mut dyn Entropy) -> i64 {
        match self {
            Noise::Laplace(d) => d.sample(e).to_i64(),
            Noise::Gaussian(d) => d.sample(e).to_i64(),
        }
    }
}

/// Exact statistics of one group, as integers on the grid.
#[derive(Debug, Clone, Default)]
struct GroupStats {
    keys: Vec<ScalarValue>,
    rows: i64,
    units: i64,
    /// Per aggregate: the sum (or count), the count of values, the sum of
    /// squares.
    sums: Vec<[i64; 3]>,
    /// Per aggregate: its histogram's bins (none but for a quantile).
    bins: Vec<Vec<i64>>,
}

/// One integer column of a batch of exact statistics (absent: zeros).
struct Ints(Option<ArrayRef>);

impl Ints {
    fn of(batch: &RecordBatch, column: Option<&str>) -> Ints {
        Ints(
            column
                .and_then(|c| batch.column_by_name(c))
                .and_then(|a| arrow::compute::cast(a, &DataType::Int64).ok()),
        )
    }

    fn at(&self, row: usize) -> i64 {
        match &self.0 {
            Some(a) if !a.is_null(row) => a.as_primitive::<Int64Type>().value(row),
            _ => 0,
        }
    }
}

fn stats_columns(stats: &Stats, batch: &RecordBatch) -> [Ints; 3] {
    [
        Ints::of(batch, stats.sum.as_deref()),
        Ints::of(batch, stats.count.as_deref()),
        Ints::of(batch, stats.squares.as_deref()),
    ]
}

/// Noises the exact per-group statistics in `batches` into the answer.
/// The groups are every combination of the keys' declared domains, or of
/// `public` (the values of each key, read from columns the caller may read
/// in the clear) when there is no declared one for every key; otherwise
/// those that pass partition selection.
pub(crate) fn release(
    plan: &DpRelease,
    schema_types: &[DataType],
    batches: &[RecordBatch],
    public: Option<&[Vec<String>]>,
    entropy: &mut dyn Entropy,
) -> Result<RecordBatch, QueryError> {
    let b = &plan.bounded;
    let key_types: Vec<DataType> = (0..b.keys.len())
        .map(|i| schema_types.get(i).cloned().unwrap_or(DataType::Utf8))
        .collect();
    let mut exact: BTreeMap<String, GroupStats> = BTreeMap::new();
    for batch in batches {
        let rows = Ints::of(batch, Some(&b.rows_column));
        let units = Ints::of(batch, Some(&b.units_column));
        let sums: Vec<[Ints; 3]> = b.stats.iter().map(|s| stats_columns(s, batch)).collect();
        let bins: Vec<Vec<Ints>> = b
            .stats
            .iter()
            .map(|s| s.bins.iter().map(|c| Ints::of(batch, Some(c))).collect())
            .collect();
        for row in 0..batch.num_rows() {
            let keys: Vec<ScalarValue> = b
                .keys
                .iter()
                .map(|k| {
                    batch.column_by_name(k).map_or(Ok(ScalarValue::Null), |c| {
                        ScalarValue::try_from_array(c, row)
                    })
                })
                .collect::<Result<_, _>>()
                .map_err(|e| QueryError::Internal {
                    detail: e.to_string(),
                })?;
            let label = keys
                .iter()
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
                .join("\u{1f}");
            let stats = GroupStats {
                rows: rows.at(row),
                units: units.at(row),
                sums: sums
                    .iter()
                    .map(|[s, n, q]| [s.at(row), n.at(row), q.at(row)])
                    .collect(),
                bins: bins
                    .iter()
                    .map(|b| b.iter().map(|c| c.at(row)).collect())
                    .collect(),
                keys,
            };
            exact.insert(label, stats);
        }
    }

    // Which groups are released.
    let mut groups: Vec<GroupStats> = match plan.domains.as_deref().or(public) {
        Some(domains) => {
            let mut combos: Vec<Vec<String>> = vec![vec![]];
            for domain in domains {
                combos = combos
                    .into_iter()
                    .flat_map(|c| {
                        domain
                            .iter()
                            .map(move |v| [c.clone(), vec![v.clone()]].concat())
                    })
                    .collect();
            }
            let mut out = Vec::with_capacity(combos.len());
            for combo in combos {
                let keys: Vec<ScalarValue> = combo
                    .iter()
                    .zip(&key_types)
                    .map(|(v, t)| {
                        ScalarValue::Utf8(Some(v.clone()))
                            .cast_to(t)
                            .unwrap_or(ScalarValue::Null)
                    })
                    .collect();
                let label = keys
                    .iter()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
                    .join("\u{1f}");
                let found = exact.remove(&label).unwrap_or_else(|| GroupStats {
                    keys: keys.clone(),
                    sums: vec![[0; 3]; b.stats.len()],
                    bins: b.stats.iter().map(|s| vec![0; s.bins.len()]).collect(),
                    ..GroupStats::default()
                });
                out.push(GroupStats { keys, ..found });
            }
            out
        }
        None => {
            let selection = plan
                .selection
                .as_ref()
                .expect("keys without a domain are selected");
            let noise = Noise::new(plan.mechanism, selection.scale)?;
            exact
                .into_values()
                .filter(|g| g.units + noise.sample(entropy) >= selection.threshold)
                .collect()
        }
    };

    // Noise on every released statistic.
    let sampler = |scale: Option<f64>| scale.map(|s| Noise::new(plan.mechanism, s)).transpose();
    let samplers: Vec<[Option<Noise>; 3]> = plan
        .scales
        .iter()
        .map(|s| {
            Ok([
                sampler(Some(s.sum))?,
                sampler(s.count)?,
                sampler(s.squares)?,
            ])
        })
        .collect::<Result<_, QueryError>>()?;
    let mut columns: Vec<Vec<Option<f64>>> =
        vec![Vec::with_capacity(groups.len()); plan.kinds.len()];
    // Per aggregate, the 95% interval of each cell, when asked.
    let mut intervals: Vec<Vec<(f64, f64)>> = vec![Vec::new(); plan.kinds.len()];
    for g in &mut groups {
        for (j, kind) in plan.kinds.iter().enumerate() {
            let stats = &b.stats[j];
            let mut noisy = |i: usize, exact: i64| {
                exact + samplers[j][i].as_ref().map_or(0, |n| n.sample(entropy))
            };
            let [sum, count, squares] = g.sums[j];
            let noisy_sums = match *kind {
                DpKind::Count if stats.sum.is_some() => [noisy(0, sum), 0, 0],
                DpKind::Count => [noisy(0, g.rows), 0, 0],
                DpKind::CountUnits => [noisy(0, g.units), 0, 0],
                DpKind::Sum { .. } => [noisy(0, sum), 0, 0],
                DpKind::Avg { .. } => [noisy(0, sum), noisy(1, count), 0],
                DpKind::Variance { .. } => [noisy(0, sum), noisy(1, count), noisy(2, squares)],
                DpKind::Quantile { .. } | DpKind::Magnitudes => [0; 3],
            };
            let noisy_bins: Vec<i64> = g.bins[j].iter().map(|&c| noisy(0, c)).collect();
            let cell = Cell {
                kind: *kind,
                stats,
                sums: noisy_sums,
                bins: &noisy_bins,
            };
            columns[j].push(Some(cell.value()));
            if plan.intervals {
                intervals[j].push(cell.interval(plan.mechanism, &plan.scales[j]));
            }
        }
    }

    let schema = released_schema(plan, &key_types);
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(plan.outputs.len());
    for (source, field) in plan.outputs.iter().map(|o| o.1).zip(schema.fields()) {
        let array: ArrayRef = match source {
            DpSource::Key(i) => {
                let values: Vec<ScalarValue> = groups.iter().map(|g| g.keys[i].clone()).collect();
                if values.is_empty() {
                    arrow::array::new_empty_array(field.data_type())
                } else {
                    let array = ScalarValue::iter_to_array(values).map_err(internal)?;
                    arrow::compute::cast(&array, field.data_type()).map_err(internal)?
                }
            }
            DpSource::Aggregate(j) => match plan.kinds[j] {
                DpKind::Count | DpKind::CountUnits | DpKind::Magnitudes => Arc::new(
                    columns[j]
                        .iter()
                        .map(|v| v.map(|x| x as i64))
                        .collect::<Int64Array>(),
                ),
                DpKind::Sum { .. }
                | DpKind::Avg { .. }
                | DpKind::Variance { .. }
                | DpKind::Quantile { .. } => {
                    Arc::new(columns[j].iter().copied().collect::<Float64Array>())
                }
            },
        };
        arrays.push(array);
    }
    if plan.intervals {
        for cells in &intervals {
            arrays.push(Arc::new(
                cells.iter().map(|c| c.0).collect::<Float64Array>(),
            ));
            arrays.push(Arc::new(
                cells.iter().map(|c| c.1).collect::<Float64Array>(),
            ));
        }
    }
    RecordBatch::try_new(schema, arrays).map_err(internal)
}

/// The noisy statistics of one cell of one aggregate.
struct Cell<'a> {
    kind: DpKind,
    stats: &'a Stats,
    /// The noisy sum (or count), count of values and sum of squares, on
    /// their grids.
    sums: [i64; 3],
    /// A quantile's noisy bins.
    bins: &'a [i64],
}

impl Cell<'_> {
    /// The released value: post-processing of the noisy statistics.
    fn value(&self) -> f64 {
        let [s, n, q] = self.sums;
        let grid = self.stats.grid;
        match self.kind {
            DpKind::Count | DpKind::CountUnits | DpKind::Magnitudes => s as f64,
            DpKind::Sum { .. } => s as f64 * grid,
            DpKind::Avg { lo, hi } => (s as f64 * grid / n.max(1) as f64).clamp(lo, hi),
            DpKind::Variance {
                lo,
                hi,
                sample,
                root,
            } => {
                // Of values centred in their bounds (|x - m| <= r):
                // E[c²] - E[c]², within [0, r²].
                let r = (hi - lo) / 2.0;
                let n = n.max(1) as f64;
                let mean = (s as f64 * grid / n).clamp(-r, r);
                let mut variance =
                    (q as f64 * self.stats.square_grid / n - mean * mean).clamp(0.0, r * r);
                if sample && n > 1.0 {
                    variance *= n / (n - 1.0);
                }
                if root { variance.sqrt() } else { variance }
            }
            DpKind::Quantile { lo, hi, p } => {
                let width = (hi - lo) / self.bins.len().max(1) as f64;
                super::histogram::quantile(&super::histogram::cumulative(self.bins), lo, width, p)
            }
        }
    }

    /// An interval that holds the exact bounded statistic (the answer
    /// without noise, after clamping and bounding contributions) with
    /// probability at least 95%: the noisy value plus or minus a tail
    /// bound of its noise; for an average or a variance, the range of the
    /// value over the box of each statistic's interval, at 95% over all
    /// of them (a union bound). For a quantile it is approximate: the bins
    /// that the rank's interval (each cumulative count's noise taken as
    /// normal) reaches, edge to edge.
    fn interval(&self, mechanism: Mechanism, scales: &Scales) -> (f64, f64) {
        let [s, n, q] = self.sums.map(|x| x as f64);
        let grid = self.stats.grid;
        let h = |scale: Option<f64>, alpha: f64| {
            scale.map_or(0.0, |scale| half_width(mechanism, scale, alpha))
        };
        // The box of a ratio x / y over x in [x0, x1] and y in [y0, y1]
        // with y0 > 0: its extremes are at the corners.
        let ratio = |(x0, x1): (f64, f64), (y0, y1): (f64, f64)| {
            let c = [x0 / y0, x0 / y1, x1 / y0, x1 / y1];
            (
                c.iter().copied().fold(f64::INFINITY, f64::min),
                c.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            )
        };
        match self.kind {
            DpKind::Count | DpKind::CountUnits | DpKind::Magnitudes => {
                let w = h(Some(scales.sum), 0.05);
                ((s - w).max(0.0), s + w)
            }
            DpKind::Sum { .. } => {
                let w = h(Some(scales.sum), 0.05);
                ((s - w) * grid, (s + w) * grid)
            }
            DpKind::Avg { lo, hi } => {
                let (ws, wn) = (h(Some(scales.sum), 0.025), h(scales.count, 0.025));
                if n - wn <= 0.0 {
                    return (lo, hi);
                }
                let (a, b) = ratio(((s - ws) * grid, (s + ws) * grid), (n - wn, n + wn));
                (a.clamp(lo, hi), b.clamp(lo, hi))
            }
            DpKind::Variance {
                lo,
                hi,
                sample,
                root,
            } => {
                let r = (hi - lo) / 2.0;
                let alpha = 0.05 / 3.0;
                let (ws, wn, wq) = (
                    h(Some(scales.sum), alpha),
                    h(scales.count, alpha),
                    h(scales.squares, alpha),
                );
                let (n0, n1) = (n - wn, n + wn);
                let (mut v0, mut v1) = if n0 <= 0.0 {
                    (0.0, r * r)
                } else {
                    let (m0, m1) = ratio(((s - ws) * grid, (s + ws) * grid), (n0, n1));
                    let (m0, m1) = (m0.clamp(-r, r), m1.clamp(-r, r));
                    let square_grid = self.stats.square_grid;
                    let (e0, e1) =
                        ratio(((q - wq) * square_grid, (q + wq) * square_grid), (n0, n1));
                    let least = if m0 <= 0.0 && 0.0 <= m1 {
                        0.0
                    } else {
                        (m0 * m0).min(m1 * m1)
                    };
                    let most = (m0 * m0).max(m1 * m1);
                    (
                        (e0 - most).clamp(0.0, r * r),
                        (e1 - least).clamp(0.0, r * r),
                    )
                };
                if sample {
                    // n / (n - 1) falls as n grows.
                    let factor = |n: f64| if n > 1.0 { n / (n - 1.0) } else { 2.0 };
                    v0 *= if n1 > 1.0 { factor(n1) } else { 1.0 };
                    v1 *= factor(n0);
                }
                if root {
                    (v0.sqrt(), v1.sqrt())
                } else {
                    (v0, v1)
                }
            }
            DpKind::Quantile { lo, hi, p } => {
                let bins = self.bins.len().max(1);
                let width = (hi - lo) / bins as f64;
                let cumulative = super::histogram::cumulative(self.bins);
                let std = match mechanism {
                    Mechanism::Laplace => std::f64::consts::SQRT_2 * scales.sum,
                    Mechanism::Gaussian => scales.sum,
                };
                // The noise of the cumulative count of bins 0..=i.
                let w = |i: usize| 1.959_964 * std * ((i + 1) as f64).sqrt();
                let total = cumulative.last().copied().unwrap_or(0.0);
                let (low_goal, high_goal) = (p * (total - w(bins - 1)), p * (total + w(bins - 1)));
                let first = (0..bins)
                    .find(|&i| cumulative[i] + w(i) >= low_goal)
                    .unwrap_or(0);
                let last = (0..bins)
                    .find(|&i| cumulative[i] - w(i) >= high_goal)
                    .unwrap_or(bins - 1);
                (lo + width * first as f64, lo + width * (last + 1) as f64)
            }
        }
    }
}

/// A half-width h with P[|noise| > h] ≤ `alpha` for the answer's
/// mechanism at `scale` (on the grid). The discrete Laplace's two tails
/// hold 2e^(-t/b) / (1 + e^(-1/b)) from t; the discrete Gaussian is
/// σ-subgaussian (Canonne, Kamath, Steinke 2020), each tail at most
/// e^(-t²/2σ²).
fn half_width(mechanism: Mechanism, scale: f64, alpha: f64) -> f64 {
    match mechanism {
        Mechanism::Laplace => {
            let q = (-1.0 / scale).exp();
            (scale * (2.0 / ((1.0 + q) * alpha)).ln()).max(0.0)
        }
        Mechanism::Gaussian => scale * (2.0 * (2.0 / alpha).ln()).sqrt(),
    }
}

/// The automatic bounds of each estimated aggregate, from the exact
/// histograms of magnitudes of the estimation's bounded plan (`estimation`,
/// one row or none) noised at `plan.estimation`'s scale; `None` for one
/// where no bin rose above the threshold.
pub(crate) fn estimate_bounds(
    plan: &DpRelease,
    estimation: &Bounded,
    batches: &[RecordBatch],
    entropy: &mut dyn Entropy,
) -> Result<Vec<Option<(f64, f64)>>, QueryError> {
    let Some(threshold) = plan.estimation else {
        return Ok(Vec::new());
    };
    let noise = Noise::new(plan.mechanism, threshold.scale)?;
    let mut out = Vec::with_capacity(estimation.stats.len());
    for stats in &estimation.stats {
        let mut exact = vec![0i64; stats.bins.len()];
        for batch in batches {
            for (i, column) in stats.bins.iter().enumerate() {
                let values = Ints::of(batch, Some(column));
                for row in 0..batch.num_rows() {
                    exact[i] = exact[i].saturating_add(values.at(row));
                }
            }
        }
        let noisy: Vec<i64> = exact.iter().map(|&c| c + noise.sample(entropy)).collect();
        out.push(super::approx_bounds::choose(&noisy, threshold.threshold));
    }
    Ok(out)
}

/// The schema of the released batch: each key as the bounded plan types it
/// (`key_types`), counts as integers, sums and averages as floats.
pub(crate) fn released_schema(plan: &DpRelease, key_types: &[DataType]) -> SchemaRef {
    let fields: Vec<Field> = plan
        .outputs
        .iter()
        .map(|(name, source)| {
            let t = match *source {
                DpSource::Key(i) => key_types.get(i).cloned().unwrap_or(DataType::Utf8),
                DpSource::Aggregate(j) => match plan.kinds[j] {
                    DpKind::Count | DpKind::CountUnits | DpKind::Magnitudes => DataType::Int64,
                    DpKind::Sum { .. }
                    | DpKind::Avg { .. }
                    | DpKind::Variance { .. }
                    | DpKind::Quantile { .. } => DataType::Float64,
                },
            };
            Field::new(name, t, true)
        })
        .chain(
            (0..plan.kinds.len())
                .filter(|_| plan.intervals)
                .flat_map(|j| {
                    [
                        Field::new(format!("__veil_ci{j}_lo"), DataType::Float64, true),
                        Field::new(format!("__veil_ci{j}_hi"), DataType::Float64, true),
                    ]
                }),
        )
        .collect();
    Arc::new(Schema::new(fields))
}

fn internal(e: impl std::fmt::Display) -> QueryError {
    QueryError::Internal {
        detail: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dp::sample::tests::Seeded;
    use arrow::array::Int64Array;

    /// A bounded plan with one COUNT(*) and no keys.
    fn one_count() -> Bounded {
        Bounded {
            plan: datafusion::logical_expr::LogicalPlanBuilder::empty(false)
                .build()
                .unwrap(),
            keys: vec![],
            rows_column: "__veil_rows".into(),
            units_column: "__veil_units".into(),
            stats: vec![Stats::plain(None)],
        }
    }

    fn count_release(epsilon: f64) -> DpRelease {
        let bounded = one_count();
        calibrate(
            bounded,
            vec![("n".into(), DpSource::Aggregate(0))],
            vec![DpKind::Count],
            Some(vec![]),
            Spend {
                epsilon,
                delta: 1e-6,
                max_groups: 1,
                max_rows: 1,
                estimates: 0,
            },
        )
    }

    fn exact(rows: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("__veil_rows", DataType::Int64, false),
            Field::new("__veil_units", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![rows])),
                Arc::new(Int64Array::from(vec![rows])),
            ],
        )
        .unwrap()
    }

    fn draws(plan: &DpRelease, rows: i64, n: usize, seed: u64) -> Vec<i64> {
        let mut e = Seeded::new(seed);
        let batch = exact(rows);
        (0..n)
            .map(|_| {
                let out = release(plan, &[], std::slice::from_ref(&batch), None, &mut e).unwrap();
                out.column(0).as_primitive::<Int64Type>().value(0)
            })
            .collect()
    }

    /// Neighbouring datasets (counts 100 and 99): for every outcome,
    /// P[D] ≤ e^ε·P[D'] + slack and back, with the randomness controlled.
    #[test]
    fn neighbouring_answers_are_within_e_to_the_epsilon() {
        let epsilon = 1.0;
        let plan = count_release(epsilon);
        assert_eq!(plan.mechanism, Mechanism::Laplace);
        let n = 20_000;
        let (a, b) = (draws(&plan, 100, n, 11), draws(&plan, 99, n, 12));
        let freq = |v: &[i64], x: i64| v.iter().filter(|&&y| y == x).count() as f64 / n as f64;
        for x in 90..=110 {
            let (pa, pb) = (freq(&a, x), freq(&b, x));
            // Sampling slack: five standard errors of the larger frequency.
            let slack = 5.0 * (pa.max(pb).max(1.0 / n as f64) / n as f64).sqrt();
            assert!(pa <= epsilon.exp() * pb + slack, "P[{x}]: {pa} vs {pb}");
            assert!(pb <= epsilon.exp() * pa + slack, "P[{x}]: {pb} vs {pa}");
        }
        // And the bound is nearly tight: a shift of one moves mass by e^ε.
        let (pa, pb) = (freq(&a, 102), freq(&b, 102));
        assert!(
            pb * epsilon.exp() / pa > 0.8 && pb * epsilon.exp() / pa < 1.25,
            "{pa} {pb}"
        );
    }

    #[test]
    fn the_mechanism_with_less_noise_is_chosen() {
        // One small query: Laplace; a Gaussian wins only when δ is generous
        // and many groups share a unit.
        assert_eq!(count_release(0.5).mechanism, Mechanism::Laplace);
        let bounded = one_count();
        let many = calibrate(
            bounded,
            vec![("n".into(), DpSource::Aggregate(0))],
            vec![DpKind::Count],
            Some(vec![]),
            Spend {
                epsilon: 1.0,
                delta: 1e-3,
                max_groups: 100,
                max_rows: 1,
                estimates: 0,
            },
        );
        assert_eq!(many.mechanism, Mechanism::Gaussian);
        assert!(many.cost.rho < many.cost.epsilon * many.cost.epsilon / 2.0);
    }

    /// A count and an average of values in [0, 10] over one group, with
    /// intervals, both mechanisms: each interval holds the exact statistic
    /// in at least 95% of releases.
    #[test]
    fn intervals_hold_the_exact_statistic_at_least_95_percent_of_the_time() {
        let stats = vec![
            Stats::plain(None),
            Stats {
                count: Some("n_s".into()),
                grid: 1.0,
                row_bound: 10.0,
                ..Stats::plain(Some("s_s".into()))
            },
        ];
        let bounded = Bounded {
            plan: datafusion::logical_expr::LogicalPlanBuilder::empty(false)
                .build()
                .unwrap(),
            keys: vec![],
            rows_column: "__veil_rows".into(),
            units_column: "__veil_units".into(),
            stats,
        };
        let (rows, total) = (40i64, 130i64);
        let schema = Arc::new(Schema::new(vec![
            Field::new("__veil_rows", DataType::Int64, false),
            Field::new("__veil_units", DataType::Int64, false),
            Field::new("s_s", DataType::Int64, false),
            Field::new("n_s", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![rows])),
                Arc::new(Int64Array::from(vec![rows])),
                Arc::new(Int64Array::from(vec![total])),
                Arc::new(Int64Array::from(vec![rows])),
            ],
        )
        .unwrap();
        for (delta, max_groups) in [(1e-6, 1), (1e-3, 100)] {
            let mut plan = calibrate(
                bounded.clone(),
                vec![
                    ("n".into(), DpSource::Aggregate(0)),
                    ("mean".into(), DpSource::Aggregate(1)),
                ],
                vec![DpKind::Count, DpKind::Avg { lo: 0.0, hi: 10.0 }],
                Some(vec![]),
                Spend {
                    epsilon: 0.5,
                    delta,
                    max_groups,
                    max_rows: 1,
                    estimates: 0,
                },
            );
            plan.intervals = true;
            let mut e = Seeded::new(max_groups);
            let trials = 4000;
            let (mut counts, mut means) = (0, 0);
            for _ in 0..trials {
                let out = release(&plan, &[], std::slice::from_ref(&batch), None, &mut e).unwrap();
                let at = |c: usize| {
                    out.column(c)
                        .as_primitive::<arrow::datatypes::Float64Type>()
                        .value(0)
                };
                assert_eq!(out.num_columns(), 6);
                counts += usize::from(at(2) <= rows as f64 && rows as f64 <= at(3));
                let mean = total as f64 / rows as f64;
                means += usize::from(at(4) <= mean && mean <= at(5));
                assert!(at(4) >= 0.0 && at(5) <= 10.0);
            }
            for (what, held) in [("count", counts), ("mean", means)] {
                let share = held as f64 / trials as f64;
                assert!(share >= 0.95, "{:?} {what}: {share}", plan.mechanism);
                // Not vacuous: the intervals are not the whole range.
                assert!(share < 1.0 || what == "mean", "{what}: {share}");
            }
        }
    }
}
