//! Protection functions as DataFusion scalar UDFs: masks, generalisations and
//! keyed pseudonyms. The policy stage puts them directly above each table
//! scan, so nothing downstream of a scan ever sees the raw value of a field
//! that is masked, pseudonymised or generalised for the caller.

pub mod generalize;
pub mod mask;
mod pseudonym;

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Date32Array, Float64Array, Int64Array, StringArray};
use arrow::buffer::{OffsetBuffer, ScalarBuffer};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Date32Type};
use chrono::NaiveDate;
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use veil_policies::{Generalization, MaskMethod};

pub use pseudonym::PseudonymKey;

/// What a protection function does to its one argument.
#[derive(Debug, Clone, PartialEq)]
pub enum Protection {
    Mask(MaskMethod),
    Generalize(Generalization),
    Pseudonym(Arc<PseudonymKey>),
}

/// A protection as a UDF. `today` is the query's date, for age bands.
pub fn udf(protection: Protection, today: NaiveDate) -> ScalarUDF {
    ScalarUDF::new_from_impl(ProtectUdf::new(protection, today))
}

#[derive(Debug, Clone)]
struct ProtectUdf {
    name: String,
    protection: Protection,
    today: NaiveDate,
    signature: Signature,
}

impl ProtectUdf {
    fn new(protection: Protection, today: NaiveDate) -> Self {
        let name = match &protection {
            Protection::Mask(m) => format!("veil_mask_{}", m.to_string().replace([':', '.'], "_")),
            Protection::Generalize(g) => {
                format!("veil_generalize_{}", g.to_string().replace([':', '.'], "_"))
            }
            Protection::Pseudonym(_) => "veil_pseudonym".to_owned(),
        };
        ProtectUdf {
            name,
            protection,
            today,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl PartialEq for ProtectUdf {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.protection == other.protection && self.today == other.today
    }
}

impl Eq for ProtectUdf {}

impl Hash for ProtectUdf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.today.hash(state);
    }
}

fn is_text(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
    )
}

fn is_temporal(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(..) | DataType::Null
    )
}

fn is_number(t: &DataType) -> bool {
    t.is_numeric() || matches!(t, DataType::Null)
}

impl ScalarUDFImpl for ProtectUdf {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        let [t] = args else {
            return plan_err!("{} takes one argument", self.name);
        };
        use Generalization as G;
        use MaskMethod as M;
        let ok = match &self.protection {
            Protection::Mask(M::Year | M::YearMonth) => is_temporal(t).then_some(DataType::Utf8),
            Protection::Mask(M::Range { .. }) => is_number(t).then_some(DataType::Utf8),
            Protection::Mask(M::Redact) => Some(DataType::Utf8),
            Protection::Mask(_) | Protection::Pseudonym(_) => is_text(t).then_some(DataType::Utf8),
            Protection::Generalize(G::Year | G::YearMonth) => {
                is_temporal(t).then_some(DataType::Date32)
            }
            Protection::Generalize(G::AgeBand { .. }) => is_temporal(t).then_some(DataType::Utf8),
            Protection::Generalize(G::Prefecture) => is_text(t).then_some(DataType::Utf8),
            Protection::Generalize(G::Range { .. }) if t.is_integer() => Some(DataType::Int64),
            Protection::Generalize(G::Range { .. }) => is_number(t).then_some(DataType::Float64),
        };
        match ok {
            Some(out) => Ok(out),
            None => plan_err!("{} does not apply to a value of type {t}", self.name),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [input] = arrays.as_slice() else {
            return plan_err!("{} takes one argument", self.name);
        };
        Ok(ColumnarValue::Array(self.apply(input)?))
    }
}

impl ProtectUdf {
    fn apply(&self, input: &ArrayRef) -> Result<ArrayRef> {
        use Generalization as G;
        use MaskMethod as M;
        let out: ArrayRef = match &self.protection {
            Protection::Mask(M::IdNumber) => {
                map_text_into(input, |v, out| mask::keep_ends_into(v, 4, 4, 15, out))?
            }
            Protection::Mask(M::Phone) => {
                map_text_into(input, |v, out| mask::keep_ends_into(v, 3, 4, 11, out))?
            }
            Protection::Mask(M::Name) => map_text_into(input, mask::name_into)?,
            Protection::Mask(M::Address) => map_text_into(input, mask::address_into)?,
            Protection::Mask(M::CreditCode) => map_text(input, mask::credit_code)?,
            Protection::Mask(M::Redact) => Arc::new(
                (0..input.len())
                    .map(|i| input.is_valid(i).then(|| mask::redact("")))
                    .collect::<StringArray>(),
            ),
            Protection::Mask(M::Year) => map_date_text(input, |d| d.format("%Y").to_string())?,
            Protection::Mask(M::YearMonth) => {
                map_date_text(input, |d| d.format("%Y-%m").to_string())?
            }
            Protection::Mask(M::Range { width }) => {
                let x = cast(input, &DataType::Float64)?;
                let x = x.as_primitive::<arrow::datatypes::Float64Type>();
                Arc::new(
                    x.iter()
                        .map(|v| v.map(|v| generalize::range_label(v, *width)))
                        .collect::<StringArray>(),
                )
            }
            Protection::Pseudonym(key) => map_text(input, |v| key.token(v))?,
            Protection::Generalize(G::Year) => map_date(input, generalize::first_of_year)?,
            Protection::Generalize(G::YearMonth) => map_date(input, generalize::first_of_month)?,
            Protection::Generalize(G::AgeBand { width }) => {
                let dates = to_dates(input)?;
                Arc::new(
                    dates
                        .as_primitive::<Date32Type>()
                        .iter()
                        .map(|v| {
                            v.and_then(date_of)
                                .and_then(|d| generalize::age_band(d, self.today, *width))
                        })
                        .collect::<StringArray>(),
                )
            }
            Protection::Generalize(G::Prefecture) => {
                let text = cast(input, &DataType::Utf8)?;
                Arc::new(
                    text.as_string::<i32>()
                        .iter()
                        .map(|v| v.and_then(generalize::prefecture))
                        .collect::<StringArray>(),
                )
            }
            Protection::Generalize(G::Range { width }) => {
                let x = cast(input, &DataType::Float64)?;
                let floored: Float64Array = x
                    .as_primitive::<arrow::datatypes::Float64Type>()
                    .iter()
                    .map(|v| v.map(|v| generalize::range_floor(v, *width)))
                    .collect();
                if input.data_type().is_integer() {
                    let ints: Int64Array = floored.iter().map(|v| v.map(|v| v as i64)).collect();
                    Arc::new(ints)
                } else {
                    Arc::new(floored)
                }
            }
        };
        Ok(out)
    }
}

/// Maps a text column through `f`, which writes each result into a reused
/// buffer: one allocation per column, not per value.
fn map_text_into(input: &ArrayRef, f: impl Fn(&str, &mut String)) -> Result<ArrayRef> {
    // Masks write straight into one values buffer, and the input's NULLs are
    // the output's: no per-value copy, no per-value bitmap work. A mask
    // rarely lengthens a value (stars replace multi-byte characters), so the
    // input's bytes, plus a little, are the buffer's capacity.
    fn run<'a>(
        values: impl Iterator<Item = Option<&'a str>>,
        len: usize,
        bytes: usize,
        f: impl Fn(&str, &mut String),
    ) -> Result<(OffsetBuffer<i32>, String)> {
        let mut out = String::with_capacity(bytes + 16);
        let mut offsets = Vec::with_capacity(len + 1);
        offsets.push(0i32);
        for v in values {
            if let Some(v) = v {
                f(v, &mut out);
            }
            let end = i32::try_from(out.len()).map_err(|_| {
                datafusion::error::DataFusionError::Execution(
                    "a masked column exceeds 2 GiB".into(),
                )
            })?;
            offsets.push(end);
        }
        Ok((OffsetBuffer::new(ScalarBuffer::from(offsets)), out))
    }
    let (offsets, values) = match input.data_type() {
        DataType::Utf8View => {
            let a = input.as_string_view();
            // Out-of-line bytes plus the inline ones: an upper bound.
            let bytes = a.data_buffers().iter().map(|b| b.len()).sum::<usize>() + 12 * a.len();
            run(a.iter(), a.len(), bytes, f)?
        }
        DataType::Utf8 => {
            let a = input.as_string::<i32>();
            run(a.iter(), a.len(), a.value_data().len(), f)?
        }
        _ => {
            let text = cast(input, &DataType::Utf8)?;
            let a = text.as_string::<i32>();
            run(a.iter(), a.len(), a.value_data().len(), f)?
        }
    };
    let nulls = input.nulls().cloned();
    // SAFETY: `values` is a `String`, so it is valid UTF-8, and every offset
    // is its length after a whole `&str` was pushed, so each slice between
    // offsets is valid UTF-8 too. The offsets start at 0, never decrease, end
    // at the buffer's length, and number one more than the values, as are
    // the input's NULLs. Checking it all again costs as much as masking.
    Ok(Arc::new(unsafe {
        StringArray::new_unchecked(offsets, values.into_bytes().into(), nulls)
    }))
}

fn map_text(input: &ArrayRef, f: impl Fn(&str) -> String) -> Result<ArrayRef> {
    let text = cast(input, &DataType::Utf8)?;
    Ok(Arc::new(
        text.as_string::<i32>()
            .iter()
            .map(|v| v.map(&f))
            .collect::<StringArray>(),
    ))
}

fn to_dates(input: &ArrayRef) -> Result<ArrayRef> {
    Ok(cast(input, &DataType::Date32)?)
}

fn date_of(days: i32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(1970, 1, 1)?.checked_add_signed(chrono::Duration::days(i64::from(days)))
}

fn days_of(d: NaiveDate) -> Option<i32> {
    NaiveDate::from_ymd_opt(1970, 1, 1).map(|epoch| (d - epoch).num_days() as i32)
}

fn map_date_text(input: &ArrayRef, f: impl Fn(NaiveDate) -> String) -> Result<ArrayRef> {
    let dates = to_dates(input)?;
    let dates = dates.as_primitive::<Date32Type>();
    Ok(Arc::new(
        dates
            .iter()
            .map(|v| v.and_then(date_of).map(&f))
            .collect::<StringArray>(),
    ))
}

fn map_date(input: &ArrayRef, f: impl Fn(NaiveDate) -> NaiveDate) -> Result<ArrayRef> {
    let dates = to_dates(input)?;
    let dates = dates.as_primitive::<Date32Type>();
    Ok(Arc::new(
        dates
            .iter()
            .map(|v| v.and_then(date_of).map(&f).and_then(days_of))
            .collect::<Date32Array>(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Date32Array, Float64Array, StringArray};
    use arrow::datatypes::Field;
    use datafusion::config::ConfigOptions;

    fn run(p: Protection, input: ArrayRef) -> ArrayRef {
        let today = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        let u = ProtectUdf::new(p, today);
        let t = u.return_type(&[input.data_type().clone()]).unwrap();
        let n = input.len();
        let args = ScalarFunctionArgs {
            arg_fields: vec![Arc::new(Field::new("x", input.data_type().clone(), true))],
            args: vec![ColumnarValue::Array(input)],
            number_rows: n,
            return_field: Arc::new(Field::new("y", t, true)),
            config_options: Arc::new(ConfigOptions::default()),
        };
        match u.invoke_with_args(args).unwrap() {
            ColumnarValue::Array(a) => a,
            ColumnarValue::Scalar(_) => panic!("scalar"),
        }
    }

    fn texts(a: &ArrayRef) -> Vec<Option<String>> {
        let a = cast(a, &DataType::Utf8).unwrap();
        a.as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_owned))
            .collect()
    }

    #[test]
    fn text_masks_handle_null_empty_short_malformed_and_non_ascii() {
        let input: ArrayRef = Arc::new(StringArray::from(vec![
            None,
            Some(""),
            Some("1"),
            Some("11010519491231002X"),
            Some("张三丰"),
            Some("ＡＢＣ１２３"),
        ]));
        let cases: [(MaskMethod, [Option<&str>; 6]); 5] = [
            (
                MaskMethod::IdNumber,
                [
                    None,
                    Some(""),
                    Some("*"),
                    Some("1101**********002X"),
                    Some("***"),
                    Some("******"),
                ],
            ),
            (
                MaskMethod::Phone,
                [
                    None,
                    Some(""),
                    Some("*"),
                    Some("110***********002X"),
                    Some("***"),
                    Some("******"),
                ],
            ),
            (
                MaskMethod::Name,
                [
                    None,
                    Some(""),
                    Some("*"),
                    Some("1*****************"),
                    Some("张**"),
                    Some("Ａ*****"),
                ],
            ),
            (
                MaskMethod::Address,
                [
                    None,
                    Some("***"),
                    Some("***"),
                    Some("***"),
                    Some("***"),
                    Some("***"),
                ],
            ),
            (
                MaskMethod::CreditCode,
                [
                    None,
                    Some(""),
                    Some("*"),
                    Some("11010519**********"),
                    Some("***"),
                    Some("******"),
                ],
            ),
        ];
        for (method, expected) in cases {
            let got = texts(&run(Protection::Mask(method), input.clone()));
            let expected: Vec<Option<String>> =
                expected.iter().map(|v| v.map(str::to_owned)).collect();
            assert_eq!(got, expected, "{method}");
        }
        let redacted = texts(&run(Protection::Mask(MaskMethod::Redact), input));
        assert_eq!(redacted[0], None);
        assert!(redacted[1..].iter().all(|v| v.as_deref() == Some("****")));
    }

    #[test]
    fn date_and_number_protections() {
        let days = |y, m, d| days_of(NaiveDate::from_ymd_opt(y, m, d).unwrap()).unwrap();
        let dates: ArrayRef = Arc::new(Date32Array::from(vec![
            Some(days(1990, 5, 17)),
            None,
            Some(days(2026, 11, 28)),
        ]));
        assert_eq!(
            texts(&run(Protection::Mask(MaskMethod::Year), dates.clone())),
            vec![Some("1990".into()), None, Some("2026".into())]
        );
        assert_eq!(
            texts(&run(Protection::Mask(MaskMethod::YearMonth), dates.clone()))[0].as_deref(),
            Some("1990-05")
        );
        assert_eq!(
            texts(&run(
                Protection::Generalize(Generalization::AgeBand { width: 5 }),
                dates.clone()
            )),
            vec![Some("35-39".into()), None, None]
        );
        let year = run(Protection::Generalize(Generalization::Year), dates);
        assert_eq!(year.as_primitive::<Date32Type>().value(0), days(1990, 1, 1));

        let amounts: ArrayRef = Arc::new(Float64Array::from(vec![Some(1234.5), None, Some(-0.5)]));
        assert_eq!(
            texts(&run(
                Protection::Mask(MaskMethod::Range { width: 1000.0 }),
                amounts.clone()
            )),
            vec![Some("[1000, 2000)".into()), None, Some("[-1000, 0)".into())]
        );
        let floored = run(
            Protection::Generalize(Generalization::Range { width: 1000.0 }),
            amounts,
        );
        assert_eq!(
            floored
                .as_primitive::<arrow::datatypes::Float64Type>()
                .value(0),
            1000.0
        );
        let ints: ArrayRef = Arc::new(Int64Array::from(vec![Some(37), None]));
        let banded = run(
            Protection::Generalize(Generalization::Range { width: 10.0 }),
            ints,
        );
        assert_eq!(
            banded
                .as_primitive::<arrow::datatypes::Int64Type>()
                .value(0),
            30
        );

        let codes: ArrayRef = Arc::new(StringArray::from(vec![
            Some("530102"),
            Some("5301"),
            None,
            Some(""),
        ]));
        assert_eq!(
            texts(&run(
                Protection::Generalize(Generalization::Prefecture),
                codes
            )),
            vec![Some("530100".into()), None, None, None]
        );
    }

    #[test]
    fn protections_refuse_types_they_do_not_apply_to() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        let u = ProtectUdf::new(Protection::Mask(MaskMethod::Phone), today);
        assert!(u.return_type(&[DataType::Float64]).is_err());
        let u = ProtectUdf::new(Protection::Generalize(Generalization::Year), today);
        assert!(u.return_type(&[DataType::Utf8]).is_err());
    }

    #[test]
    fn pseudonyms_are_keyed_stable_and_hide_the_value() {
        let a = Arc::new(PseudonymKey::derive(&[7; 32], "alice", "benefits"));
        let b = Arc::new(PseudonymKey::derive(&[7; 32], "alice", "census"));
        let input: ArrayRef = Arc::new(StringArray::from(vec![
            Some("11010519491231002X"),
            None,
            Some(""),
            Some("11010519491231002X"),
        ]));
        let ta = texts(&run(Protection::Pseudonym(a), input.clone()));
        let tb = texts(&run(Protection::Pseudonym(b), input));
        assert_eq!(ta[0], ta[3]);
        assert_eq!(ta[1], None);
        assert_ne!(ta[0], ta[2]);
        assert_ne!(ta[0], tb[0]);
        let token = ta[0].as_deref().unwrap();
        assert!(
            token.starts_with("ps_") && token.len() == 35 && !token.contains("1101"),
            "{token}"
        );
    }
}
