//! `veil_units_at_least(unit)`: the number of distinct non-NULL privacy units
//! in a group, counted only up to k. A k threshold asks whether a group has
//! at least k units, not how many; so a group keeps at most k unit hashes,
//! memory is O(groups · k) instead of O(units), and a group that reached k
//! costs nothing more per row.
//!
//! Units are compared by a fixed 64-bit hash. Two units whose hashes collide
//! count once: a collision can only lower the count and suppress a group,
//! never release one that has fewer than k units.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, ListArray,
    builder::{ListBuilder, UInt64Builder},
};
use arrow::datatypes::{DataType, Field, FieldRef, UInt64Type};
use datafusion::common::hash_utils::{QualityRandomState, create_hashes_with_hasher};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};

/// The aggregate for threshold `k` (at least 1).
pub(crate) fn units_at_least(k: u32) -> AggregateUDF {
    AggregateUDF::new_from_impl(UnitsAtLeast {
        k: k.max(1) as usize,
        signature: Signature::any(1, Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct UnitsAtLeast {
    k: usize,
    signature: Signature,
}

/// One fixed hasher, so that partial states from every partition agree.
fn hasher() -> QualityRandomState {
    QualityRandomState::with_seed(0x7665_696c_6b75_6e69)
}

impl AggregateUDFImpl for UnitsAtLeast {
    fn name(&self) -> &str {
        "veil_units_at_least"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn is_nullable(&self) -> bool {
        false
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[units]", args.name),
            DataType::new_list(DataType::UInt64, true),
            true,
        ))])
    }

    fn accumulator(&self, _: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(Single {
            k: self.k,
            units: Vec::new(),
        }))
    }

    fn groups_accumulator_supported(&self, _: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(&self, _: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(Groups::new(self.k)))
    }

    fn default_value(&self, _: &DataType) -> Result<ScalarValue> {
        Ok(ScalarValue::Int64(Some(0)))
    }
}

/// Adds `hash` to a sorted set of at most `k` hashes.
#[inline]
fn add(units: &mut Vec<u64>, k: usize, hash: u64) {
    if units.len() < k
        && let Err(at) = units.binary_search(&hash)
    {
        units.insert(at, hash);
    }
}

/// The hashes of the non-NULL values of `values`, into `buffer`.
fn hash_values<'b>(values: &ArrayRef, buffer: &'b mut Vec<u64>) -> Result<&'b [u64]> {
    buffer.clear();
    buffer.resize(values.len(), 0);
    create_hashes_with_hasher([values], &hasher(), buffer)?;
    Ok(buffer)
}

fn to_list(sets: impl Iterator<Item = Vec<u64>>) -> ArrayRef {
    let mut builder = ListBuilder::new(UInt64Builder::new());
    for set in sets {
        builder.values().append_slice(&set);
        builder.append(true);
    }
    Arc::new(builder.finish())
}

#[derive(Debug)]
struct Single {
    k: usize,
    units: Vec<u64>,
}

impl Accumulator for Single {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        if self.units.len() >= self.k {
            return Ok(());
        }
        let mut buffer = Vec::new();
        let hashes = hash_values(&values[0], &mut buffer)?;
        for (i, h) in hashes.iter().enumerate() {
            if values[0].is_valid(i) {
                add(&mut self.units, self.k, *h);
            }
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Int64(Some(self.units.len() as i64)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.units.capacity() * 8
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let list = to_list(std::iter::once(self.units.clone()));
        Ok(vec![ScalarValue::List(Arc::new(
            list.as_list::<i32>().clone(),
        ))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let lists = states[0].as_list::<i32>();
        for i in 0..lists.len() {
            if lists.is_valid(i) {
                for h in lists.value(i).as_primitive::<UInt64Type>().values() {
                    add(&mut self.units, self.k, *h);
                }
            }
        }
        Ok(())
    }
}

struct Groups {
    k: usize,
    groups: Vec<Vec<u64>>,
    /// Reused buffer of row hashes.
    hashes: Vec<u64>,
}

impl Groups {
    fn new(k: usize) -> Self {
        Groups {
            k,
            groups: Vec::new(),
            hashes: Vec::new(),
        }
    }
}

impl GroupsAccumulator for Groups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups.resize_with(total_num_groups, Vec::new);
        let k = self.k;
        // Most rows land in groups that already reached k: skip hashing then.
        if group_indices.iter().all(|&g| self.groups[g].len() >= k) {
            return Ok(());
        }
        let values = &values[0];
        let hashes = hash_values(values, &mut self.hashes)?;
        for (i, (&g, &h)) in group_indices.iter().zip(hashes).enumerate() {
            let selected = opt_filter.is_none_or(|f| f.is_valid(i) && f.value(i));
            if selected && values.is_valid(i) {
                add(&mut self.groups[g], k, h);
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let groups = emit_to.take_needed(&mut self.groups);
        Ok(Arc::new(Int64Array::from_iter_values(
            groups.iter().map(|g| g.len() as i64),
        )))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let groups = emit_to.take_needed(&mut self.groups);
        Ok(vec![to_list(groups.into_iter())])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups.resize_with(total_num_groups, Vec::new);
        let lists: &ListArray = values[0].as_list::<i32>();
        for (i, &g) in group_indices.iter().enumerate() {
            if lists.is_valid(i) && self.groups[g].len() < self.k {
                for h in lists.value(i).as_primitive::<UInt64Type>().values() {
                    add(&mut self.groups[g], self.k, *h);
                }
            }
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let values = &values[0];
        let mut buffer = Vec::new();
        let hashes = hash_values(values, &mut buffer)?;
        let mut builder = ListBuilder::new(UInt64Builder::new());
        for (i, h) in hashes.iter().enumerate() {
            let selected = opt_filter.is_none_or(|f| f.is_valid(i) && f.value(i));
            if selected && values.is_valid(i) {
                builder.values().append_value(*h);
            }
            builder.append(true);
        }
        Ok(vec![Arc::new(builder.finish())])
    }

    fn size(&self) -> usize {
        self.groups.capacity() * std::mem::size_of::<Vec<u64>>()
            + self.groups.iter().map(|g| g.capacity() * 8).sum::<usize>()
            + self.hashes.capacity() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringArray;

    fn strings(v: &[Option<&str>]) -> ArrayRef {
        Arc::new(StringArray::from(v.to_vec()))
    }

    #[test]
    fn counts_distinct_units_up_to_k_and_ignores_nulls() {
        let mut acc = Groups::new(3);
        let values = strings(&[
            Some("a"),
            Some("a"),
            None,
            Some("b"),
            Some("x"),
            Some("y"),
            Some("z"),
            Some("w"),
        ]);
        acc.update_batch(&[values], &[0, 0, 0, 0, 1, 1, 1, 1], None, 3)
            .unwrap();
        let out = acc.evaluate(EmitTo::All).unwrap();
        let out = out.as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!(out.values().to_vec(), vec![2, 3, 0]);
    }

    #[test]
    fn partial_states_merge_without_double_counting() {
        let part = |v: &[Option<&str>]| {
            let mut acc = Groups::new(4);
            acc.update_batch(&[strings(v)], &vec![0; v.len()], None, 1)
                .unwrap();
            acc.state(EmitTo::All).unwrap()
        };
        let a = part(&[Some("p1"), Some("p2")]);
        let b = part(&[Some("p2"), Some("p3")]);
        let mut merged = Groups::new(4);
        merged.merge_batch(&a, &[0], 1).unwrap();
        merged.merge_batch(&b, &[0], 1).unwrap();
        let out = merged.evaluate(EmitTo::All).unwrap();
        assert_eq!(
            out.as_primitive::<arrow::datatypes::Int64Type>().value(0),
            3
        );
        // The single-group accumulator agrees.
        let mut single = Single {
            k: 4,
            units: Vec::new(),
        };
        single.merge_batch(&a).unwrap();
        single.merge_batch(&b).unwrap();
        assert_eq!(single.evaluate().unwrap(), ScalarValue::Int64(Some(3)));
    }

    #[test]
    fn filtered_rows_and_converted_states_agree() {
        let values = strings(&[Some("a"), Some("b"), Some("c")]);
        let filter = BooleanArray::from(vec![true, false, true]);
        let acc = Groups::new(5);
        let state = acc
            .convert_to_state(std::slice::from_ref(&values), Some(&filter))
            .unwrap();
        let mut merged = Groups::new(5);
        merged.merge_batch(&state, &[0, 0, 0], 1).unwrap();
        let out = merged.evaluate(EmitTo::All).unwrap();
        assert_eq!(
            out.as_primitive::<arrow::datatypes::Int64Type>().value(0),
            2
        );
    }
}
