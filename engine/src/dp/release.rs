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
use crate::policy::{DpKind, DpSource};

/// Largest number of groups a public domain may enumerate.
pub(crate) const MAX_DOMAIN_GROUPS: usize = 100_000;

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
    /// Half-width of a 95% confidence interval (for an average, of its sum).
    pub ci95: f64,
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
    /// The noise scale on the grid of each aggregate's statistics: the sum
    /// or count, and the count of values for an average.
    pub scales: Vec<(f64, Option<f64>)>,
    pub selection: Option<Threshold>,
    pub noise: Vec<ColumnNoise>,
    pub cost: QueryCost,
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
    let statistics: usize = kinds
        .iter()
        .map(|k| {
            if matches!(k, DpKind::Avg { .. }) {
                2
            } else {
                1
            }
        })
        .sum();
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
    let scales: Vec<(f64, Option<f64>)> = kinds
        .iter()
        .zip(&bounded.stats)
        .map(|(k, s)| match k {
            DpKind::Count => (scale(linf), None),
            DpKind::CountUnits => (scale(1.0), None),
            DpKind::Sum { .. } => (scale(linf * s.row_bound), None),
            DpKind::Avg { .. } => (scale(linf * s.row_bound), Some(scale(linf))),
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
    let mut noise = Vec::new();
    for (name, source) in &outputs {
        if let DpSource::Aggregate(j) = source {
            let grid = bounded.stats[*j].grid;
            let (scale, _) = scales[*j];
            let (statistic, scale) = match kinds[*j] {
                DpKind::Count => ("count", scale),
                DpKind::CountUnits => ("count of privacy units", scale),
                DpKind::Sum { .. } => ("sum", scale * grid),
                DpKind::Avg { .. } => ("average (noisy sum / noisy count)", scale * grid),
            };
            let (std, ci95) = spread(scale);
            noise.push(ColumnNoise {
                column: name.clone(),
                statistic,
                scale,
                std,
                ci95,
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
    sums: Vec<(i64, i64)>,
}

fn int_at(batch: &RecordBatch, column: &str, row: usize) -> i64 {
    let Some(array) = batch.column_by_name(column) else {
        return 0;
    };
    let Ok(array) = arrow::compute::cast(array, &DataType::Int64) else {
        return 0;
    };
    let array = array.as_primitive::<Int64Type>();
    if array.is_null(row) {
        0
    } else {
        array.value(row)
    }
}

fn sum_of(stats: &Stats, batch: &RecordBatch, row: usize) -> (i64, i64) {
    (
        stats.sum.as_deref().map_or(0, |c| int_at(batch, c, row)),
        stats.count.as_deref().map_or(0, |c| int_at(batch, c, row)),
    )
}

/// Noises the exact per-group statistics in `batches` into the answer.
pub(crate) fn release(
    plan: &DpRelease,
    schema_types: &[DataType],
    batches: &[RecordBatch],
    entropy: &mut dyn Entropy,
) -> Result<RecordBatch, QueryError> {
    let b = &plan.bounded;
    let key_types: Vec<DataType> = (0..b.keys.len())
        .map(|i| schema_types.get(i).cloned().unwrap_or(DataType::Utf8))
        .collect();
    let mut exact: BTreeMap<String, GroupStats> = BTreeMap::new();
    for batch in batches {
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
                rows: int_at(batch, &b.rows_column, row),
                units: int_at(batch, &b.units_column, row),
                sums: b.stats.iter().map(|s| sum_of(s, batch, row)).collect(),
                keys,
            };
            exact.insert(label, stats);
        }
    }

    // Which groups are released.
    let mut groups: Vec<GroupStats> = match &plan.domains {
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
                    sums: vec![(0, 0); b.stats.len()],
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
    let samplers: Vec<(Noise, Option<Noise>)> = plan
        .scales
        .iter()
        .map(|(s, c)| {
            Ok((
                Noise::new(plan.mechanism, *s)?,
                c.map(|c| Noise::new(plan.mechanism, c)).transpose()?,
            ))
        })
        .collect::<Result<_, QueryError>>()?;
    let mut columns: Vec<Vec<Option<f64>>> =
        vec![Vec::with_capacity(groups.len()); plan.kinds.len()];
    for g in &mut groups {
        for (j, kind) in plan.kinds.iter().enumerate() {
            let (noise, count_noise) = &samplers[j];
            let grid = b.stats[j].grid;
            let (sum, count) = g.sums[j];
            let value = match kind {
                DpKind::Count if b.stats[j].sum.is_some() => {
                    Some((sum + noise.sample(entropy)) as f64)
                }
                DpKind::Count => Some((g.rows + noise.sample(entropy)) as f64),
                DpKind::CountUnits => Some((g.units + noise.sample(entropy)) as f64),
                DpKind::Sum { .. } => Some((sum + noise.sample(entropy)) as f64 * grid),
                DpKind::Avg { lo, hi } => {
                    let noisy_sum = (sum + noise.sample(entropy)) as f64 * grid;
                    let noisy_count = count + count_noise.as_ref().map_or(0, |n| n.sample(entropy));
                    Some((noisy_sum / noisy_count.max(1) as f64).clamp(*lo, *hi))
                }
            };
            columns[j].push(value);
        }
    }

    let mut fields = Vec::with_capacity(plan.outputs.len());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(plan.outputs.len());
    for (name, source) in &plan.outputs {
        match source {
            DpSource::Key(i) => {
                let values: Vec<ScalarValue> = groups.iter().map(|g| g.keys[*i].clone()).collect();
                let array = if values.is_empty() {
                    arrow::array::new_empty_array(&key_types[*i])
                } else {
                    ScalarValue::iter_to_array(values).map_err(|e| QueryError::Internal {
                        detail: e.to_string(),
                    })?
                };
                fields.push(Field::new(name, array.data_type().clone(), true));
                arrays.push(array);
            }
            DpSource::Aggregate(j) => match plan.kinds[*j] {
                DpKind::Count | DpKind::CountUnits => {
                    fields.push(Field::new(name, DataType::Int64, true));
                    arrays.push(Arc::new(
                        columns[*j]
                            .iter()
                            .map(|v| v.map(|x| x as i64))
                            .collect::<Int64Array>(),
                    ));
                }
                DpKind::Sum { .. } | DpKind::Avg { .. } => {
                    fields.push(Field::new(name, DataType::Float64, true));
                    arrays.push(Arc::new(
                        columns[*j].iter().copied().collect::<Float64Array>(),
                    ));
                }
            },
        }
    }
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    RecordBatch::try_new(schema, arrays).map_err(|e| QueryError::Internal {
        detail: e.to_string(),
    })
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
            stats: vec![Stats {
                sum: None,
                count: None,
                grid: 1.0,
                row_bound: 1.0,
            }],
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
                let out = release(plan, &[], std::slice::from_ref(&batch), &mut e).unwrap();
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
