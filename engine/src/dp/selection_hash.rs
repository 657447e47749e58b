//! The keyed hash that chooses which of a unit's groups (L0) it keeps.
//!
//! A unit keeps the groups whose hash of (unit, group keys) under the
//! query's seed is smallest. The choice is a function of the unit's own rows
//! and the seed alone, so adding or removing another unit never changes it:
//! the bounded statistics of neighbouring datasets differ only in the groups
//! of the unit that differs. The seed is drawn afresh for every query (the
//! choice is uniform over a unit's groups and fixed within one query); tests
//! fix it to compare neighbouring datasets.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::UInt64Array;
use arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::common::hash_utils::{RandomState, create_hashes};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// `veil_selection_hash(columns...)`: a 64-bit hash of the row's values
/// under `seed`.
pub(crate) fn selection_hash(seed: u64, columns: Vec<Expr>) -> Expr {
    ScalarUDF::new_from_impl(SelectionHash {
        seed,
        signature: Signature::variadic_any(Volatility::Immutable),
    })
    .call(columns)
}

#[derive(Debug)]
struct SelectionHash {
    seed: u64,
    signature: Signature,
}

impl PartialEq for SelectionHash {
    fn eq(&self, other: &Self) -> bool {
        self.seed == other.seed
    }
}

impl Eq for SelectionHash {}

impl Hash for SelectionHash {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.seed.hash(state);
    }
}

impl ScalarUDFImpl for SelectionHash {
    fn name(&self) -> &str {
        "veil_selection_hash"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::UInt64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let mut hashes = vec![0u64; args.number_rows];
        create_hashes(&arrays, &RandomState::with_seed(self.seed), &mut hashes)?;
        Ok(ColumnarValue::Array(Arc::new(UInt64Array::from(hashes))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, ArrayRef, AsArray, StringArray};
    use arrow::datatypes::{Field, UInt64Type};
    use datafusion::config::ConfigOptions;

    fn hashes(seed: u64, values: &[&str]) -> Vec<u64> {
        let udf = SelectionHash {
            seed,
            signature: Signature::variadic_any(Volatility::Immutable),
        };
        let array: ArrayRef = Arc::new(StringArray::from(values.to_vec()));
        let out = udf
            .invoke_with_args(ScalarFunctionArgs {
                args: vec![ColumnarValue::Array(array)],
                arg_fields: vec![Arc::new(Field::new("a", DataType::Utf8, true))],
                number_rows: values.len(),
                return_field: Arc::new(Field::new("h", DataType::UInt64, false)),
                config_options: Arc::new(ConfigOptions::default()),
            })
            .unwrap();
        let ColumnarValue::Array(a) = out else {
            panic!("an array")
        };
        assert_eq!(a.len(), values.len());
        a.as_primitive::<UInt64Type>().values().to_vec()
    }

    #[test]
    fn a_rows_hash_depends_on_the_row_and_the_seed_only() {
        let alone = hashes(7, &["a"]);
        let among = hashes(7, &["b", "a", "c"]);
        assert_eq!(alone[0], among[1]);
        assert_ne!(hashes(8, &["a"])[0], alone[0]);
        assert_ne!(among[0], among[1]);
    }
}
