//! Arrow schemas and row builders for the six sample tables.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Builder, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use chrono::NaiveDate;

/// The sample tables, in the order they are written.
pub const TABLES: [&str; 6] = [
    "population",
    "legal_persons",
    "utility_usage",
    "social_insurance",
    "tax",
    "health_visits",
];

pub fn schema(table: &str) -> SchemaRef {
    use DataType::{Date32, Float64, Int64, Utf8};
    let f = |name: &str, t: DataType, nullable: bool| Field::new(name, t, nullable);
    let fields = match table {
        "population" => vec![
            f("id_number", Utf8, false),
            f("name", Utf8, false),
            f("sex", Utf8, false),
            f("birth_date", Date32, false),
            f("ethnicity", Utf8, false),
            f("county_code", Utf8, false),
            f("address", Utf8, false),
            f("phone", Utf8, true),
            f("education", Utf8, false),
            f("marital_status", Utf8, false),
        ],
        "legal_persons" => vec![
            f("uscc", Utf8, false),
            f("name", Utf8, false),
            f("legal_rep_id_number", Utf8, false),
            f("industry", Utf8, false),
            f("registered_capital", Float64, false),
            f("established_date", Date32, false),
            f("county_code", Utf8, false),
            f("status", Utf8, false),
        ],
        "utility_usage" => vec![
            f("account_id", Utf8, false),
            f("subject_id", Utf8, false),
            f("subject_type", Utf8, false),
            f("utility", Utf8, false),
            f("month", Utf8, false),
            f("usage", Float64, false),
            f("amount_billed", Float64, false),
            f("arrears", Float64, false),
            f("county_code", Utf8, false),
        ],
        "social_insurance" => vec![
            f("id_number", Utf8, false),
            f("employer_uscc", Utf8, false),
            f("month", Utf8, false),
            f("contribution_base", Float64, false),
            f("paid", Float64, false),
            f("county_code", Utf8, false),
        ],
        "tax" => vec![
            f("uscc", Utf8, false),
            f("year", Int64, false),
            f("revenue", Float64, false),
            f("tax_paid", Float64, false),
            f("county_code", Utf8, false),
        ],
        "health_visits" => vec![
            f("id_number", Utf8, false),
            f("visit_date", Date32, false),
            f("hospital", Utf8, false),
            f("diagnosis_category", Utf8, false),
            f("cost", Float64, false),
            f("county_code", Utf8, false),
        ],
        other => panic!("no such sample table: {other}"),
    };
    Arc::new(Schema::new(fields))
}

/// One column under construction.
pub enum Column {
    Text(StringBuilder),
    Float(Float64Builder),
    Int(Int64Builder),
    Date(Date32Builder),
}

/// A value for [`Rows::push`].
pub enum Value<'a> {
    Text(&'a str),
    MaybeText(Option<&'a str>),
    Float(f64),
    Int(i64),
    Date(NaiveDate),
}

/// Rows of one table, appended one at a time and finished into a batch.
pub struct Rows {
    schema: SchemaRef,
    columns: Vec<Column>,
    len: usize,
}

impl Rows {
    pub fn new(table: &str) -> Rows {
        let schema = schema(table);
        let columns = schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Utf8 => Column::Text(StringBuilder::new()),
                DataType::Float64 => Column::Float(Float64Builder::new()),
                DataType::Int64 => Column::Int(Int64Builder::new()),
                DataType::Date32 => Column::Date(Date32Builder::new()),
                other => unreachable!("sample tables do not use {other}"),
            })
            .collect();
        Rows {
            schema,
            columns,
            len: 0,
        }
    }

    /// Appends one row; the values follow the schema's column order.
    pub fn push(&mut self, values: &[Value<'_>]) {
        debug_assert_eq!(values.len(), self.columns.len());
        for (column, value) in self.columns.iter_mut().zip(values) {
            match (column, value) {
                (Column::Text(b), Value::Text(s)) => b.append_value(s),
                (Column::Text(b), Value::MaybeText(s)) => b.append_option(*s),
                (Column::Float(b), Value::Float(x)) => b.append_value(*x),
                (Column::Int(b), Value::Int(x)) => b.append_value(*x),
                (Column::Date(b), Value::Date(d)) => b.append_value(days_since_epoch(*d)),
                _ => unreachable!("value does not match its column"),
            }
        }
        self.len += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let arrays: Vec<ArrayRef> = self
            .columns
            .iter_mut()
            .map(|c| -> ArrayRef {
                match c {
                    Column::Text(b) => Arc::new(b.finish()),
                    Column::Float(b) => Arc::new(b.finish()),
                    Column::Int(b) => Arc::new(b.finish()),
                    Column::Date(b) => Arc::new(b.finish()),
                }
            })
            .collect();
        self.len = 0;
        RecordBatch::try_new(self.schema.clone(), arrays)
    }
}

pub fn days_since_epoch(d: NaiveDate) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
    (d - epoch).num_days() as i32
}
