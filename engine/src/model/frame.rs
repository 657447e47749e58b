//! The training frame: one row per privacy unit, one column per feature.
//! Each dataset's rows are folded per unit (values clamped to the declared
//! bounds first), the caller's region scope applies as it does to queries,
//! and datasets are inner-joined on the unit. A unit missing a value in any
//! column is left out.

use std::collections::{HashMap, HashSet};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type};
use veil_policies::Principal;

use super::{Feature, ModelError, PerUnit};
use crate::engine::Engine;

pub(crate) struct Frame {
    units: Vec<Box<str>>,
    /// Per column, one value per row.
    values: Vec<Vec<f64>>,
}

impl Frame {
    pub fn rows(&self) -> usize {
        self.units.len()
    }

    pub fn unit(&self, row: usize) -> &str {
        &self.units[row]
    }

    pub fn value(&self, column: usize, row: usize) -> f64 {
        self.values[column][row]
    }

    pub fn column(&self, column: usize) -> &[f64] {
        &self.values[column]
    }
}

/// A fold of one unit's values of one column.
#[derive(Clone, Copy)]
struct Fold {
    sum: f64,
    n: u32,
    min: f64,
    max: f64,
}

impl Fold {
    const EMPTY: Fold = Fold {
        sum: 0.0,
        n: 0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
    };

    fn add(&mut self, v: f64) {
        self.sum += v;
        self.n += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    fn value(&self, per_unit: PerUnit) -> Option<f64> {
        (self.n > 0).then(|| match per_unit {
            PerUnit::Mean => self.sum / f64::from(self.n),
            PerUnit::Min => self.min,
            PerUnit::Max => self.max,
        })
    }
}

/// One dataset's columns folded per unit, in the order units first appear.
struct Folded {
    slots: HashMap<Box<str>, u32>,
    order: Vec<Box<str>>,
    /// `order.len() × columns` folds, row-major.
    folds: Vec<Fold>,
}

fn internal(detail: impl Into<String>) -> ModelError {
    ModelError::Internal {
        detail: detail.into(),
    }
}

/// Reads the frame of `columns` (checked by the caller). With `only`, just
/// those units are kept.
pub(crate) fn read(
    engine: &Engine,
    principal: &Principal,
    columns: &[&Feature],
    only: Option<&HashSet<&str>>,
) -> Result<Frame, ModelError> {
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, c) in columns.iter().enumerate() {
        match groups.iter_mut().find(|(d, _)| *d == c.column.dataset) {
            Some((_, cols)) => cols.push(i),
            None => groups.push((&c.column.dataset, vec![i])),
        }
    }
    let mut folded = Vec::new();
    for (name, cols) in &groups {
        let features: Vec<&Feature> = cols.iter().map(|&i| columns[i]).collect();
        folded.push(fold_dataset(engine, principal, name, &features, only)?);
    }
    // Inner join on the unit, in the first dataset's order.
    let mut units = Vec::new();
    let mut values = vec![Vec::new(); columns.len()];
    let mut row = vec![0.0; columns.len()];
    'units: for unit in &folded[0].order {
        for ((_, cols), f) in groups.iter().zip(&folded) {
            let Some(&slot) = f.slots.get(unit) else {
                continue 'units;
            };
            let width = cols.len();
            for (j, &c) in cols.iter().enumerate() {
                match f.folds[slot as usize * width + j].value(columns[c].column.per_unit) {
                    Some(v) => row[c] = v,
                    None => continue 'units,
                }
            }
        }
        units.push(unit.clone());
        for (c, v) in row.iter().enumerate() {
            values[c].push(*v);
        }
    }
    Ok(Frame { units, values })
}

fn fold_dataset(
    engine: &Engine,
    principal: &Principal,
    name: &str,
    features: &[&Feature],
    only: Option<&HashSet<&str>>,
) -> Result<Folded, ModelError> {
    let dataset = engine
        .dataset(name)
        .ok_or_else(|| internal(format!("`{name}` vanished")))?;
    let manifest = &dataset.manifest;
    let region = match (&principal.region, &manifest.region_field) {
        (Some(scope), Some(field)) => Some((scope, field.as_str())),
        _ => None,
    };
    let mut names: Vec<&str> = vec![manifest.privacy_unit.as_str()];
    names.extend(features.iter().map(|f| f.column.field.as_str()));
    if let Some((_, field)) = region {
        names.push(field);
    }
    let width = features.len();
    let mut out = Folded {
        slots: HashMap::new(),
        order: Vec::new(),
        folds: Vec::new(),
    };
    let text = |a: &dyn Array| -> Result<arrow::array::ArrayRef, String> {
        arrow::compute::cast(a, &DataType::Utf8).map_err(|e| e.to_string())
    };
    crate::source::read_columns(manifest, dataset.path(), &names, |batch| {
        let unit = text(batch.column(0))?;
        let unit = unit.as_string::<i32>();
        let numbers = (0..width)
            .map(|j| {
                arrow::compute::cast(batch.column(j + 1), &DataType::Float64)
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let numbers: Vec<&arrow::array::PrimitiveArray<Float64Type>> =
            numbers.iter().map(|a| a.as_primitive()).collect();
        let regions = match region {
            Some(_) => Some(text(batch.column(width + 1))?),
            None => None,
        };
        let regions = regions.as_ref().map(|a| a.as_string::<i32>());
        for r in 0..batch.num_rows() {
            if unit.is_null(r) {
                continue;
            }
            if let (Some((scope, _)), Some(regions)) = (region, regions)
                && (regions.is_null(r) || !scope.contains(regions.value(r)))
            {
                continue;
            }
            let u = unit.value(r);
            if only.is_some_and(|o| !o.contains(u)) {
                continue;
            }
            let slot = match out.slots.get(u) {
                Some(&s) => s as usize,
                None => {
                    let s = out.order.len();
                    out.slots.insert(u.into(), s as u32);
                    out.order.push(u.into());
                    out.folds.extend(std::iter::repeat_n(Fold::EMPTY, width));
                    s
                }
            };
            for (j, f) in features.iter().enumerate() {
                let a = numbers[j];
                if a.is_valid(r) && !a.value(r).is_nan() {
                    out.folds[slot * width + j].add(f.clamp(a.value(r)));
                }
            }
        }
        Ok(true)
    })
    .map_err(internal)?;
    Ok(out)
}
