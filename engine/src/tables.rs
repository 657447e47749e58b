//! Tables: each dataset's raw table, read only by plans the policy stage
//! wrote, and the principal's view of it, which the SQL planner sees.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Result as DfResult, internal_err};
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use veil_policies::catalog::FileFormat;
use veil_policies::{DatasetManifest, Level};

/// A registered dataset and its raw table.
pub struct Dataset {
    pub manifest: DatasetManifest,
    /// The catalog version of the manifest.
    pub version: i64,
    pub(crate) raw: Arc<dyn TableProvider>,
    path: std::path::PathBuf,
    size: u64,
    /// One row per privacy unit (checked at registration).
    pub(crate) unique_units: bool,
}

impl fmt::Debug for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dataset({} v{})", self.manifest.name, self.version)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the data of `{dataset}`: {reason}")]
    Open { dataset: String, reason: String },
}

impl Dataset {
    /// Opens the data file of a registered manifest. The schema is read from
    /// the file (Parquet) or taken from the manifest (CSV); registration
    /// checked that both agree.
    pub fn open(
        manifest: DatasetManifest,
        version: i64,
        path: &Path,
    ) -> Result<Dataset, OpenError> {
        let fail = |reason: String| OpenError::Open {
            dataset: manifest.name.clone(),
            reason,
        };
        let url =
            ListingTableUrl::parse(path.to_string_lossy()).map_err(|e| fail(e.to_string()))?;
        let (options, schema): (ListingOptions, SchemaRef) = match manifest.format {
            FileFormat::Parquet => {
                let file = std::fs::File::open(path).map_err(|e| fail(e.kind().to_string()))?;
                let schema = ParquetRecordBatchReaderBuilder::try_new(file)
                    .map_err(|e| fail(e.to_string()))?
                    .schema()
                    .clone();
                // Strings are read as views, as DataFusion does by default:
                // no copy of the text out of the Parquet pages.
                let fields: Vec<Field> = schema
                    .fields()
                    .iter()
                    .map(|f| match f.data_type() {
                        DataType::Utf8 | DataType::LargeUtf8 => {
                            f.as_ref().clone().with_data_type(DataType::Utf8View)
                        }
                        _ => f.as_ref().clone(),
                    })
                    .collect();
                let schema = Arc::new(Schema::new(fields));
                (
                    ListingOptions::new(Arc::new(ParquetFormat::default()))
                        .with_file_extension(".parquet"),
                    schema,
                )
            }
            FileFormat::Csv => {
                let format = CsvFormat::default().with_has_header(true);
                (
                    ListingOptions::new(Arc::new(format)).with_file_extension(".csv"),
                    crate::source::csv_schema(&manifest),
                )
            }
        };
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .with_schema(schema);
        let raw = ListingTable::try_new(config).map_err(|e| fail(e.to_string()))?;
        let size = std::fs::metadata(path)
            .map_err(|e| fail(e.kind().to_string()))?
            .len();
        Ok(Dataset {
            manifest,
            version,
            raw: Arc::new(raw),
            path: path.to_path_buf(),
            size,
            unique_units: false,
        })
    }

    /// Declares that the file has one row per privacy unit, as registration
    /// found. Counting rows then counts units where no join repeats them.
    pub fn with_unique_units(mut self, unique: bool) -> Self {
        self.unique_units = unique;
        self
    }

    /// Whether the data file is still the one opened: a file that vanished
    /// or changed size must not answer (a missing file would read as empty).
    pub(crate) fn check_file(&self) -> Result<(), String> {
        match std::fs::metadata(&self.path) {
            Ok(m) if m.len() == self.size => Ok(()),
            Ok(_) => Err(format!(
                "the data file of `{}` changed since it was opened",
                self.manifest.name
            )),
            Err(e) => Err(format!(
                "the data file of `{}` cannot be read: {}",
                self.manifest.name,
                e.kind()
            )),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn raw_schema(&self) -> SchemaRef {
        self.raw.schema()
    }
}

/// One column of a principal's view.
#[derive(Debug, Clone)]
pub(crate) struct ViewColumn {
    pub name: String,
    /// Index in the raw table's schema.
    pub raw_index: usize,
    pub level: Level,
}

/// What the SQL planner sees of a dataset for one principal and purpose: the
/// columns the principal may reference at all (not `compare`, not `deny`),
/// so `SELECT *` expands to exactly those. It cannot be scanned: only the
/// policy stage's rewrite of it can.
#[derive(Debug)]
pub(crate) struct View {
    pub dataset: Arc<Dataset>,
    pub schema: SchemaRef,
    pub columns: Vec<ViewColumn>,
    /// Fields that exist but are hidden, with their level, for messages.
    pub hidden: Vec<(String, Level)>,
}

#[async_trait]
impl TableProvider for View {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        // Unreachable by construction: the policy stage replaces every scan
        // of a view. Should a plan escape it, it fails here, closed.
        internal_err!(
            "a plan that did not pass the policy stage cannot read `{}`",
            self.dataset.manifest.name
        )
    }
}
