//! Rewrites a scan of a principal's view into a scan of the raw table with
//! the region row filter under it and the protections over it:
//!
//! ```text
//! Projection: mask(name) AS name, pseudonym(id) AS id, ..., unit AS __veil_unit_N
//!   Filter: starts_with(county_code, '5301')       -- region scope
//!     TableScan: raw table
//! ```

use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::catalog::default_table_source::{provider_as_source, source_as_provider};
use datafusion::common::Column;
use datafusion::logical_expr::{
    Expr, ExprSchemable, Filter, LogicalPlan, Projection, TableScan, TableScanBuilder, cast,
};
use datafusion::prelude::lit;
use veil_policies::Level;

use super::lineage::{FieldInfo, Lineage};
use super::{Out, Stage, UNIT_PREFIX, Unit, plan_error};
use crate::error::{QueryError, invalid};
use crate::protect::{Protection, udf};
use crate::tables::View;

impl Stage<'_> {
    pub(super) fn protect_scan(&mut self, scan: &TableScan) -> Result<Out, QueryError> {
        let provider = source_as_provider(&scan.source).map_err(|_| unknown(scan))?;
        let Some(view) = (provider.as_ref() as &dyn std::any::Any).downcast_ref::<View>() else {
            return Err(unknown(scan));
        };
        if !scan.filters.is_empty() || scan.fetch.is_some() {
            return Err(invalid("a pre-optimised plan cannot be checked"));
        }
        let dataset = &view.dataset;
        let manifest = &dataset.manifest;
        self.datasets.insert(manifest.name.clone());
        let projection: Vec<usize> = scan
            .projection
            .clone()
            .unwrap_or_else(|| (0..view.columns.len()).collect());

        let mut cols = Vec::with_capacity(projection.len());
        for &i in &projection {
            let c = &view.columns[i];
            cols.push(self.track(manifest, &c.name, &c.level));
        }
        // Rows exist only where the privacy unit does. When the unit is
        // aggregate-only or dp, their existence is protected as the unit is;
        // otherwise rows may be seen, with whatever fields may be seen.
        let unit_level: Level = view
            .columns
            .iter()
            .find(|c| c.name == manifest.privacy_unit)
            .map(|c| c.level.clone())
            .unwrap_or(Level::Deny);
        let rows = match unit_level {
            Level::Aggregate { .. } | Level::Dp => {
                self.track(manifest, &manifest.privacy_unit, &unit_level)
            }
            _ => Lineage::default(),
        };

        let raw_schema = dataset.raw_schema();
        let raw_index = |name: &str| {
            raw_schema
                .index_of(name)
                .map_err(|_| invalid(format!("`{}` lost its field `{name}`", manifest.name)))
        };
        let region = match (&self.ctx.principal.region, &manifest.region_field) {
            (Some(scope), Some(field)) => Some((scope.prefix().to_owned(), field.clone())),
            _ => None,
        };
        let mut raw_columns: Vec<usize> = projection
            .iter()
            .map(|&i| view.columns[i].raw_index)
            .collect();
        let unit_index = raw_index(&manifest.privacy_unit)?;
        for extra in [
            Some(unit_index),
            region.as_ref().map(|(_, f)| raw_index(f)).transpose()?,
        ]
        .into_iter()
        .flatten()
        {
            if !raw_columns.contains(&extra) {
                raw_columns.push(extra);
            }
        }
        let table = scan.table_name.clone();
        let column = |name: &str| Expr::Column(Column::new(Some(table.clone()), name));
        let mut plan = LogicalPlan::TableScan(
            TableScanBuilder::new(table.clone(), provider_as_source(dataset.raw.clone()))
                .with_projection(Some(raw_columns))
                .build()
                .map_err(plan_error)?,
        );
        if let Some((prefix, field)) = region {
            let predicate =
                datafusion::functions::expr_fn::starts_with(column(&field), lit(prefix));
            plan = LogicalPlan::Filter(
                Filter::try_new(predicate, Arc::new(plan)).map_err(plan_error)?,
            );
        }

        let mut exprs = Vec::with_capacity(projection.len() + 1);
        for &i in &projection {
            let c = &view.columns[i];
            let protection = match &c.level {
                Level::Masked(m) => Some(Protection::Mask(*m)),
                Level::Generalized(g) => Some(Protection::Generalize(*g)),
                Level::Pseudonym { .. } => {
                    Some(Protection::Pseudonym(self.ctx.pseudonym_key.clone()))
                }
                _ => None,
            };
            exprs.push(match protection {
                Some(p) => udf(p, self.ctx.today)
                    .call(vec![column(&c.name)])
                    .alias_qualified(Some(table.clone()), &c.name),
                None => column(&c.name),
            });
        }
        self.scans += 1;
        // Under differential privacy, a scan of a dataset with dp or
        // aggregate-only fields for the caller is bounded per unit and
        // charged, whichever of its fields the query reads.
        let protected = matches!(unit_level, Level::Aggregate { .. } | Level::Dp)
            || view
                .columns
                .iter()
                .any(|c| matches!(c.level, Level::Aggregate { .. } | Level::Dp));
        if protected {
            self.protected_datasets.insert(manifest.name.clone());
        }
        let unit = Unit {
            name: format!("{UNIT_PREFIX}{}", self.scans),
            dataset: manifest.name.clone(),
            unique: dataset.unique_units,
            scan: self.scans,
            repeated: false,
            kind: manifest
                .field(&manifest.privacy_unit)
                .and_then(|f| f.identifier),
            protected,
        };
        let unit_of = projection
            .iter()
            .map(|&i| (view.columns[i].name == manifest.privacy_unit).then_some(self.scans))
            .collect();
        let unit_expr = column(&manifest.privacy_unit);
        let is_text = unit_expr
            .get_type(plan.schema())
            .is_ok_and(|t| matches!(t, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8));
        let unit_expr = if is_text {
            unit_expr
        } else {
            cast(unit_expr, DataType::Utf8)
        };
        exprs.push(unit_expr.alias(&unit.name));
        let plan = LogicalPlan::Projection(
            Projection::try_new(exprs, Arc::new(plan)).map_err(plan_error)?,
        );
        Ok(Out {
            plan,
            cols,
            rows,
            units: vec![unit],
            unit_of,
            protected,
        })
    }

    /// The lineage of one source field.
    fn track(
        &mut self,
        manifest: &veil_policies::DatasetManifest,
        field: &str,
        level: &Level,
    ) -> Lineage {
        let spec = manifest.field(field);
        let id = self.fields.intern(FieldInfo {
            dataset: manifest.name.clone(),
            field: field.to_owned(),
            level: level.clone(),
            identifier: spec.is_some_and(|f| f.identifier.is_some()),
            unit: field == manifest.privacy_unit,
            allow_min_max: self.ctx.allow_min_max(spec.map(|f| f.grade.as_str())),
        });
        Lineage::of(id)
    }
}

fn unknown(scan: &TableScan) -> QueryError {
    QueryError::UnknownTable(format!(
        "there is no dataset named `{}` that you may query",
        scan.table_name
    ))
}
