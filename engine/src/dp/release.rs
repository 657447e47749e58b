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
    pub noise: Vec<ColumnNoise>,
    pub cost: QueryCost,
    /// What the calibration was given besides ε, to price another ε.
    delta: f64,
    max_groups: u64,
    max_rows: u64,
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
                epsilon,
                self.delta,
                self.max_groups,
                self.max_rows,
            )
            .noise
        };
        let (lo, hi) = (*super::EPSILON_RANGE.start(), *super::EPSILON_RANGE.end());
        let widest = at(hi);
        (0..self.noise.len())
            .map(|i| {
                if target.is_nan() || target <= 0.0 || widest[i].ci95 > target {
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

/// Splits `epsilon` over the statistics of the answer (and the partition
/// selection), picks the mechanism with less noise for it, and computes
/// every scale. `delta` is the dataset budget's δ: a Gaussian answer is
/// (ε, δ/2)-DP alone; a partition selection spends δ/100 more.
#[allow(clippy::too_many_arguments)]
pub(crate) fn calibrate(
    bounded: Bounded,
    outputs: Vec<(String, DpSource)>,
    kinds: Vec<DpKind>,
    domains: Option<Vec<Vec<String>>>,
    epsilon: f64,
    delta: f64,
    max_groups: u64,
    max_rows: u64,
) -> DpRelease {
    let statistics: usize = kinds.iter().map(|k| k.statistics()).sum();
    let shares = (statistics + usize::from(domains.is_none())).max(1) as f64;
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
                DpKind::Count | DpKind::Quantile { .. } => (scale(linf), None, None),
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
        noise,
        cost,
        delta,
        max_groups,
        max_rows,
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
    for g in &mut groups {
        for (j, kind) in plan.kinds.iter().enumerate() {
            let stats = &b.stats[j];
            let mut noisy = |i: usize, exact: i64| {
                exact + samplers[j][i].as_ref().map_or(0, |n| n.sample(entropy))
            };
            let [sum, count, squares] = g.sums[j];
            let value = match *kind {
                DpKind::Count if stats.sum.is_some() => noisy(0, sum) as f64,
                DpKind::Count => noisy(0, g.rows) as f64,
                DpKind::CountUnits => noisy(0, g.units) as f64,
                DpKind::Sum { .. } => noisy(0, sum) as f64 * stats.grid,
                DpKind::Avg { lo, hi } => {
                    let noisy_sum = noisy(0, sum) as f64 * stats.grid;
                    let noisy_count = noisy(1, count);
                    (noisy_sum / noisy_count.max(1) as f64).clamp(lo, hi)
                }
                DpKind::Variance {
                    lo,
                    hi,
                    sample,
                    root,
                } => {
                    // Of values centred in their bounds (|x - m| <= r):
                    // E[c²] - E[c]², within [0, r²].
                    let r = (hi - lo) / 2.0;
                    let s = noisy(0, sum) as f64 * stats.grid;
                    let n = noisy(1, count).max(1) as f64;
                    let q = noisy(2, squares) as f64 * stats.square_grid;
                    let mean = (s / n).clamp(-r, r);
                    let mut variance = (q / n - mean * mean).clamp(0.0, r * r);
                    if sample && n > 1.0 {
                        variance *= n / (n - 1.0);
                    }
                    if root { variance.sqrt() } else { variance }
                }
                DpKind::Quantile { lo, hi, p } => {
                    let counts: Vec<i64> = g.bins[j].iter().map(|&c| noisy(0, c)).collect();
                    let width = (hi - lo) / counts.len().max(1) as f64;
                    super::histogram::quantile(&super::histogram::cumulative(&counts), lo, width, p)
                }
            };
            columns[j].push(Some(value));
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
                DpKind::Count | DpKind::CountUnits => Arc::new(
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
    RecordBatch::try_new(schema, arrays).map_err(internal)
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
                    DpKind::Count | DpKind::CountUnits => DataType::Int64,
                    DpKind::Sum { .. }
                    | DpKind::Avg { .. }
                    | DpKind::Variance { .. }
                    | DpKind::Quantile { .. } => DataType::Float64,
                },
            };
            Field::new(name, t, true)
        })
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
            epsilon,
            1e-6,
            1,
            1,
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
            1.0,
            1e-3,
            100,
            1,
        );
        assert_eq!(many.mechanism, Mechanism::Gaussian);
        assert!(many.cost.rho < many.cost.epsilon * many.cost.epsilon / 2.0);
    }
}
