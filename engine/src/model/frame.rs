//! The training frame: one row per privacy unit, one column per feature.
//! Each dataset's rows are folded per unit (values clamped to the declared
//! bounds first), the caller's region scope applies as it does to queries,
//! and datasets are inner-joined on the unit. A unit missing a value in any
//! column is left out.
//!
//! Units are keyed by a 128-bit keyed hash of their identifier (two SipHash
//! keys drawn per frame), so the frame holds no identifier. Two units share
//! a key with probability about n²/2¹²⁹; a dataset registered with one row
//! per unit is read straight, without folding.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type};
use veil_policies::Principal;

use super::{Feature, ModelError, PerUnit, SubjectRows};
use crate::engine::Engine;

/// A keyed 128-bit hash of unit identifiers, fixed for one frame.
pub(crate) struct UnitKeys(RandomState, RandomState);

impl UnitKeys {
    pub fn new() -> Self {
        UnitKeys(RandomState::new(), RandomState::new())
    }

    pub fn key(&self, unit: &str) -> u128 {
        (u128::from(self.0.hash_one(unit)) << 64) | u128::from(self.1.hash_one(unit))
    }
}

pub(crate) struct Frame {
    units: Vec<u128>,
    /// Per column, one value per row.
    values: Vec<Vec<f64>>,
    keys: UnitKeys,
}

impl Frame {
    pub fn rows(&self) -> usize {
        self.units.len()
    }

    /// The row of a unit, when the frame has it.
    pub fn rows_by_unit(&self) -> HashMap<u128, usize> {
        self.units
            .iter()
            .enumerate()
            .map(|(r, k)| (*k, r))
            .collect()
    }

    pub fn key(&self, unit: &str) -> u128 {
        self.keys.key(unit)
    }

    pub fn value(&self, column: usize, row: usize) -> f64 {
        self.values[column][row]
    }

    pub fn column(&self, column: usize) -> &[f64] {
        &self.values[column]
    }
}

/// One dataset's columns, one value per unit (NaN where a unit has none),
/// in the order units first appear.
struct PerUnitColumns {
    units: Vec<u128>,
    columns: Vec<Vec<f64>>,
    /// Unit → position, when folding built it (empty when read straight).
    slots: HashMap<u128, u32>,
}

impl PerUnitColumns {
    /// Unit → position, built only when folding did not already.
    fn take_slots(&mut self) -> HashMap<u128, u32> {
        if self.slots.is_empty() {
            return self
                .units
                .iter()
                .enumerate()
                .map(|(i, k)| (*k, i as u32))
                .collect();
        }
        std::mem::take(&mut self.slots)
    }
}

fn internal(detail: impl Into<String>) -> ModelError {
    ModelError::Internal {
        detail: detail.into(),
    }
}

/// The named subjects a frame is limited to, and how to find their rows
/// without reading every row (when the datasets have an index).
pub(crate) struct Only<'a> {
    pub subjects: &'a [String],
    pub rows: Option<&'a SubjectRows<'a>>,
}

/// Reads the frame of `columns` (checked by the caller). With `only`, just
/// those units are kept.
pub(crate) fn read(
    engine: &Engine,
    principal: &Principal,
    columns: &[&Feature],
    only: Option<&Only<'_>>,
) -> Result<Frame, ModelError> {
    let keys = UnitKeys::new();
    let wanted: Option<HashSet<u128>> =
        only.map(|o| o.subjects.iter().map(|u| keys.key(u)).collect());
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, c) in columns.iter().enumerate() {
        match groups.iter_mut().find(|(d, _)| *d == c.column.dataset) {
            Some((_, cols)) => cols.push(i),
            None => groups.push((&c.column.dataset, vec![i])),
        }
    }
    // Units need keys to be joined, folded or looked up; one dataset with
    // one row per unit, read whole, needs none.
    let single = groups.len() == 1 && wanted.is_none();
    let mut per_dataset = Vec::new();
    for (name, cols) in &groups {
        let features: Vec<&Feature> = cols.iter().map(|&i| columns[i]).collect();
        per_dataset.push(fold_dataset(
            engine,
            principal,
            name,
            &features,
            &keys,
            !single,
            wanted.as_ref().zip(only),
        )?);
    }
    let mut rest = per_dataset.split_off(1);
    let mut base = per_dataset.pop().expect("one dataset at least");
    if rest.is_empty() {
        // No join: drop the incomplete rows in place.
        let mut kept = 0;
        for r in 0..base.units.len() {
            if base.columns.iter().any(|c| c[r].is_nan()) {
                continue;
            }
            base.units[kept] = base.units[r];
            for c in &mut base.columns {
                c[kept] = c[r];
            }
            kept += 1;
        }
        base.units.truncate(kept);
        base.columns.iter_mut().for_each(|c| c.truncate(kept));
        return Ok(Frame {
            units: base.units,
            values: base.columns,
            keys,
        });
    }
    // Inner join on the unit, in the first dataset's order.
    let lookups: Vec<HashMap<u128, u32>> =
        rest.iter_mut().map(PerUnitColumns::take_slots).collect();
    let mut values: Vec<Vec<f64>> = vec![Vec::new(); columns.len()];
    let mut units = Vec::new();
    let mut row = vec![0.0; columns.len()];
    'units: for (slot, unit) in base.units.iter().enumerate() {
        for (j, &c) in groups[0].1.iter().enumerate() {
            row[c] = base.columns[j][slot];
        }
        for (g, (lookup, other)) in lookups.iter().zip(&rest).enumerate() {
            let Some(&s) = lookup.get(unit) else {
                continue 'units;
            };
            for (j, &c) in groups[g + 1].1.iter().enumerate() {
                row[c] = other.columns[j][s as usize];
            }
        }
        if row.iter().any(|v| v.is_nan()) {
            continue;
        }
        units.push(*unit);
        for (c, v) in row.iter().enumerate() {
            values[c].push(*v);
        }
    }
    Ok(Frame {
        units,
        values,
        keys,
    })
}

fn fold_dataset(
    engine: &Engine,
    principal: &Principal,
    name: &str,
    features: &[&Feature],
    keys: &UnitKeys,
    need_keys: bool,
    only: Option<(&HashSet<u128>, &Only<'_>)>,
) -> Result<PerUnitColumns, ModelError> {
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
    // A dataset with one row per unit needs no folding.
    let unique = dataset.unique_units;
    // Folding needs the units' keys; otherwise only joins and lookups do.
    let keys = (need_keys || !unique).then_some(keys);
    let mut out = PerUnitColumns {
        units: Vec::new(),
        columns: vec![Vec::new(); width],
        slots: HashMap::new(),
    };
    let mut counts: Vec<u32> = Vec::new();
    let text = |a: &dyn Array| -> Result<arrow::array::ArrayRef, String> {
        arrow::compute::cast(a, &DataType::Utf8).map_err(|e| e.to_string())
    };
    let mut visit = |batch: &arrow::array::RecordBatch| -> Result<bool, String> {
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
            let key = keys.map_or(0, |k| k.key(unit.value(r)));
            if only.is_some_and(|(o, _)| !o.contains(&key)) {
                continue;
            }
            let value = |j: usize| {
                let a = numbers[j];
                (a.is_valid(r) && !a.value(r).is_nan()).then(|| features[j].clamp(a.value(r)))
            };
            if unique {
                out.units.push(key);
                for (j, column) in out.columns.iter_mut().enumerate() {
                    column.push(value(j).unwrap_or(f64::NAN));
                }
                continue;
            }
            let slot = *out.slots.entry(key).or_insert_with(|| {
                out.units.push(key);
                out.columns.iter_mut().for_each(|c| c.push(f64::NAN));
                counts.extend(std::iter::repeat_n(0, width));
                (out.units.len() - 1) as u32
            }) as usize;
            for (j, column) in out.columns.iter_mut().enumerate() {
                let Some(v) = value(j) else { continue };
                let n = &mut counts[slot * width + j];
                let cell = &mut column[slot];
                *cell = if *n == 0 {
                    v
                } else {
                    match features[j].column.per_unit {
                        PerUnit::Mean => *cell + v,
                        PerUnit::Min => cell.min(v),
                        PerUnit::Max => cell.max(v),
                    }
                };
                *n += 1;
            }
        }
        Ok(true)
    };
    // Named subjects' rows straight from the index, when there is one.
    let positions: Option<Vec<u32>> =
        only.and_then(|(_, o)| o.rows.and_then(|find| find(&dataset, o.subjects)));
    let read = match positions {
        Some(rows) => crate::source::read_rows(manifest, dataset.path(), &names, &rows, &mut visit)
            .map_err(internal)?,
        None => false,
    };
    if !read {
        crate::source::read_columns(manifest, dataset.path(), &names, &mut visit)
            .map_err(internal)?;
    }
    // Means were kept as sums.
    if !unique {
        for (j, f) in features.iter().enumerate() {
            if f.column.per_unit == PerUnit::Mean {
                for (slot, cell) in out.columns[j].iter_mut().enumerate() {
                    let n = counts[slot * width + j];
                    if n > 0 {
                        *cell /= f64::from(n);
                    }
                }
            }
        }
    }
    Ok(out)
}
