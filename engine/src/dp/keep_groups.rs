//! Bounding a unit to L0 groups at scan speed: one pass over the rows, no
//! sort, no join.
//!
//! The rows arrive hash-partitioned by privacy unit. For each unit the
//! operator keeps at most L0 *slots*, one per group (key tuple), each with
//! the group's running count and sums, and the group's order: its keyed
//! hash under the query's seed, then its key bytes. A row of a group that
//! has a slot adds to it; a row of a new group takes a free slot, or
//! replaces the slot of the unit's largest order when its own order is
//! smaller, or is dropped. The largest order of a unit's slots only ever
//! falls, so a group that lost its slot (or never had one) has L0 groups
//! before it and can never be among the unit's L0 smallest: when the input
//! ends, each unit holds exactly its L0 groups of smallest order, with the
//! complete count and sums of each.
//!
//! That is the same choice as ranking a unit's groups by the keyed hash and
//! keeping the first L0, a function of the unit's own rows and the seed
//! alone (uniform over its groups, fixed within a query, fresh across
//! queries), in O(units · L0) memory. The output is one row per kept
//! (unit, group): the keys, the row count and the per-column sums, the
//! statistics the Linf scaling and the sum across units take next.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Int64Type, SchemaRef};
use arrow::row::{RowConverter, Rows, SortField};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::hash_utils::RandomState;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DFSchema, DFSchemaRef, DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{
    Expr, Extension, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
};
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, Distribution, ExecutionPlan,
    ExecutionPlanProperties, PlanProperties, ReplaceChildrenOptions,
};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use futures::StreamExt;

/// Output rows per batch.
const BATCH: usize = 8192;
/// No slot, no unit.
const NONE: u32 = u32::MAX;

/// The logical node: over an input of `unit, keys..., values...` (unit as
/// text, values as 64-bit integers), one row per kept (unit, group) with
/// `keys..., __veil_c, {value}_u...`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct KeepGroups {
    input: LogicalPlan,
    keys: usize,
    max_groups: u64,
    seed: u64,
    schema: DFSchemaRef,
}

impl PartialOrd for KeepGroups {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        (&self.input, self.keys, self.max_groups, self.seed).partial_cmp(&(
            &other.input,
            other.keys,
            other.max_groups,
            other.seed,
        ))
    }
}

impl KeepGroups {
    /// `input`'s first column is the unit, the next `keys` the group keys,
    /// the rest the values to sum.
    pub(crate) fn plan(
        input: LogicalPlan,
        keys: usize,
        max_groups: u64,
        seed: u64,
    ) -> Result<LogicalPlan> {
        let node = KeepGroups::new(input, keys, max_groups, seed)?;
        Ok(LogicalPlan::Extension(Extension {
            node: Arc::new(node),
        }))
    }

    fn new(input: LogicalPlan, keys: usize, max_groups: u64, seed: u64) -> Result<KeepGroups> {
        let fields = input.schema().fields();
        if fields.len() < 1 + keys || max_groups == 0 || max_groups >= u64::from(NONE) {
            return Err(DataFusionError::Internal(
                "the group choice needs a unit, its keys and a positive L0".into(),
            ));
        }
        let mut out = Vec::with_capacity(fields.len());
        for f in &fields[1..=keys] {
            out.push((None, f.clone()));
        }
        out.push((
            None,
            Arc::new(arrow::datatypes::Field::new(
                "__veil_c",
                DataType::Int64,
                false,
            )),
        ));
        for f in &fields[1 + keys..] {
            out.push((
                None,
                Arc::new(arrow::datatypes::Field::new(
                    format!("{}_u", f.name()),
                    DataType::Int64,
                    true,
                )),
            ));
        }
        let schema = Arc::new(DFSchema::new_with_metadata(out, Default::default())?);
        Ok(KeepGroups {
            input,
            keys,
            max_groups,
            seed,
            schema,
        })
    }
}

impl UserDefinedLogicalNodeCore for KeepGroups {
    fn name(&self) -> &str {
        "VeilKeepGroups"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "VeilKeepGroups: {} keys, at most {} groups per unit by keyed hash",
            self.keys, self.max_groups
        )
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> Result<Self> {
        let input = inputs
            .pop()
            .ok_or_else(|| DataFusionError::Internal("the group choice has one input".into()))?;
        KeepGroups::new(input, self.keys, self.max_groups, self.seed)
    }
}

/// The session's planner: DataFusion's, with [`KeepGroups`] planned as
/// [`KeepGroupsExec`].
#[derive(Debug)]
pub(crate) struct QueryPlanner;

#[async_trait]
impl datafusion::execution::context::QueryPlanner for QueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(Planner)])
            .create_physical_plan(logical_plan, session_state)
            .await
    }
}

struct Planner;

#[async_trait]
impl ExtensionPlanner for Planner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session: &dyn Session,
        _planning_ctx: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(node) = node.as_any().downcast_ref::<KeepGroups>() else {
            return Ok(None);
        };
        let [input] = physical_inputs else {
            return Err(DataFusionError::Internal(
                "the group choice has one input".into(),
            ));
        };
        Ok(Some(Arc::new(KeepGroupsExec::new(
            input.clone(),
            node.keys,
            node.max_groups as usize,
            node.seed,
            Arc::new(node.schema.as_arrow().clone()),
        ))))
    }
}

/// The physical operator (see the module's documentation).
#[derive(Debug)]
pub(crate) struct KeepGroupsExec {
    input: Arc<dyn ExecutionPlan>,
    keys: usize,
    max_groups: usize,
    seed: u64,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl KeepGroupsExec {
    fn new(
        input: Arc<dyn ExecutionPlan>,
        keys: usize,
        max_groups: usize,
        seed: u64,
        schema: SchemaRef,
    ) -> KeepGroupsExec {
        let partitions = input.output_partitioning().partition_count();
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        KeepGroupsExec {
            input,
            keys,
            max_groups,
            seed,
            schema,
            properties,
        }
    }

    fn unit(&self) -> Arc<dyn PhysicalExpr> {
        let name = self.input.schema().field(0).name().clone();
        Arc::new(datafusion::physical_expr::expressions::Column::new(
            &name, 0,
        ))
    }
}

impl DisplayAs for KeepGroupsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "VeilKeepGroupsExec: {} keys, at most {} groups per unit",
            self.keys, self.max_groups
        )
    }
}

impl ExecutionPlan for KeepGroupsExec {
    fn name(&self) -> &'static str {
        "VeilKeepGroupsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    /// All of a unit's rows in one partition.
    fn required_input_distribution(&self) -> Vec<Distribution> {
        vec![Distribution::KeyPartitioned(vec![self.unit()])]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = children
            .pop()
            .ok_or_else(|| DataFusionError::Internal("the group choice has one input".into()))?;
        Ok(Arc::new(KeepGroupsExec::new(
            input,
            self.keys,
            self.max_groups,
            self.seed,
            self.schema.clone(),
        )))
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let mut input = self.input.execute(partition, context.clone())?;
        let key_fields: Vec<SortField> = (1..=self.keys)
            .map(|i| SortField::new(self.input.schema().field(i).data_type().clone()))
            .collect();
        let values = self.input.schema().fields().len() - 1 - self.keys;
        let reservation = MemoryConsumer::new(format!("VeilKeepGroups[{partition}]"))
            .register(context.memory_pool());
        let mut state = Slots::new(
            key_fields,
            self.keys,
            values,
            self.max_groups,
            self.seed,
            reservation,
        )?;
        let schema = self.schema.clone();
        let out = async move {
            while let Some(batch) = input.next().await {
                state.add(&batch?)?;
            }
            state.finish(&schema)
        };
        let schema = self.schema.clone();
        let stream = futures::stream::once(out)
            .map(|r: Result<Vec<RecordBatch>>| match r {
                Ok(batches) => futures::stream::iter(batches.into_iter().map(Ok)).boxed(),
                Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
            })
            .flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// One partition's units and their slots.
struct Slots {
    keys: usize,
    values: usize,
    max_groups: usize,
    hasher: RandomState,
    /// Units: their text in one arena, chained by hash.
    unit_text: Vec<u8>,
    unit_end: Vec<usize>,
    unit_next: Vec<u32>,
    unit_head: Vec<u32>,
    by_hash: HashMap<u64, u32, RandomState>,
    /// Distinct key tuples, as rows, chained by hash.
    converter: RowConverter,
    key_rows: Rows,
    key_next: Vec<u32>,
    keys_by_hash: HashMap<u64, u32, RandomState>,
    /// Slots: the group's key tuple, its order, the unit's next slot, the
    /// row count and the sums.
    slot_key: Vec<u32>,
    slot_hash: Vec<u64>,
    slot_next: Vec<u32>,
    slot_count: Vec<i64>,
    slot_sums: Vec<i64>,
    reservation: MemoryReservation,
}

impl Slots {
    fn new(
        key_fields: Vec<SortField>,
        keys: usize,
        values: usize,
        max_groups: usize,
        seed: u64,
        reservation: MemoryReservation,
    ) -> Result<Slots> {
        let converter = RowConverter::new(key_fields)?;
        let key_rows = converter.empty_rows(0, 0);
        Ok(Slots {
            keys,
            values,
            max_groups,
            hasher: RandomState::with_seed(seed),
            unit_text: Vec::new(),
            unit_end: Vec::new(),
            unit_next: Vec::new(),
            unit_head: Vec::new(),
            by_hash: HashMap::with_hasher(RandomState::with_seed(0x5eed_0001)),
            converter,
            key_rows,
            key_next: Vec::new(),
            keys_by_hash: HashMap::with_hasher(RandomState::with_seed(0x5eed_0002)),
            slot_key: Vec::new(),
            slot_hash: Vec::new(),
            slot_next: Vec::new(),
            slot_count: Vec::new(),
            slot_sums: Vec::new(),
            reservation,
        })
    }

    fn unit_text(&self, u: u32) -> &[u8] {
        let u = u as usize;
        let start = if u == 0 { 0 } else { self.unit_end[u - 1] };
        &self.unit_text[start..self.unit_end[u]]
    }

    /// The unit's index, added when new.
    fn unit(&mut self, text: &[u8]) -> Result<u32> {
        let h = self.hasher.hash_one(text);
        let first = self.by_hash.get(&h).copied().unwrap_or(NONE);
        let mut u = first;
        while u != NONE {
            if self.unit_text(u) == text {
                return Ok(u);
            }
            u = self.unit_next[u as usize];
        }
        let new = u32::try_from(self.unit_end.len())
            .ok()
            .filter(|&n| n != NONE)
            .ok_or_else(|| too_many("privacy units"))?;
        self.unit_text.extend_from_slice(text);
        self.unit_end.push(self.unit_text.len());
        self.unit_next.push(first);
        self.unit_head.push(NONE);
        self.by_hash.insert(h, new);
        Ok(new)
    }

    /// A key tuple's bytes (none without keys).
    fn key_bytes(&self, k: u32) -> &[u8] {
        if self.keys == 0 {
            &[]
        } else {
            self.key_rows.row(k as usize).data()
        }
    }

    /// The key tuple's index, added when new.
    fn key(&mut self, rows: &Rows, row: usize) -> Result<u32> {
        if self.keys == 0 {
            return Ok(0);
        }
        let bytes = rows.row(row);
        let h = self.hasher.hash_one(bytes.as_ref());
        let first = self.keys_by_hash.get(&h).copied().unwrap_or(NONE);
        let mut k = first;
        while k != NONE {
            if self.key_rows.row(k as usize) == bytes {
                return Ok(k);
            }
            k = self.key_next[k as usize];
        }
        let new = u32::try_from(self.key_next.len())
            .ok()
            .filter(|&n| n != NONE)
            .ok_or_else(|| too_many("groups"))?;
        self.key_rows.push(bytes);
        self.key_next.push(first);
        self.keys_by_hash.insert(h, new);
        Ok(new)
    }

    /// The order of a group within a unit: keyed hash, then key bytes.
    fn before(&self, (h, k): (u64, u32), (h2, k2): (u64, u32)) -> bool {
        (h, self.key_bytes(k)) < (h2, self.key_bytes(k2))
    }

    fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        let before = self.size();
        let units = arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
        let units = units.as_string::<i32>();
        let key_columns: Vec<ArrayRef> = batch.columns()[1..=self.keys].to_vec();
        let rows = self.converter.convert_columns(&key_columns)?;
        let values: Vec<ArrayRef> = batch.columns()[1 + self.keys..]
            .iter()
            .map(|c| arrow::compute::cast(c, &DataType::Int64))
            .collect::<std::result::Result<_, _>>()?;
        let values: Vec<&arrow::array::PrimitiveArray<Int64Type>> = values
            .iter()
            .map(|v| v.as_primitive::<Int64Type>())
            .collect();
        let value_at = |j: usize, row: usize| {
            let v = values[j];
            if v.is_null(row) { 0 } else { v.value(row) }
        };
        let mut last: Option<(usize, u32, u32)> = None;
        for row in 0..batch.num_rows() {
            if units.is_null(row) {
                continue;
            }
            let text = units.value(row).as_bytes();
            // Rows of one unit and one group often come together: the
            // previous row's unit and key tuple are tried first.
            let u = match last {
                Some((r, u, _)) if units.value(r).as_bytes() == text => u,
                _ => self.unit(text)?,
            };
            let k = match last {
                Some((r, _, k)) if self.keys > 0 && rows.row(r) == rows.row(row) => k,
                _ => self.key(&rows, row)?,
            };
            last = Some((row, u, k));
            let mut s = self.unit_head[u as usize];
            while s != NONE && self.slot_key[s as usize] != k {
                s = self.slot_next[s as usize];
            }
            // A new group for the unit: its order, the unit's number of
            // slots and the slot of largest order.
            let (mut h, mut n, mut worst) = (0, 0usize, NONE);
            if s == NONE {
                h = self.hasher.hash_one((text, self.key_bytes(k)));
                let mut t = self.unit_head[u as usize];
                while t != NONE {
                    let i = t as usize;
                    if worst == NONE
                        || self.before(
                            (
                                self.slot_hash[worst as usize],
                                self.slot_key[worst as usize],
                            ),
                            (self.slot_hash[i], self.slot_key[i]),
                        )
                    {
                        worst = t;
                    }
                    n += 1;
                    t = self.slot_next[i];
                }
            }
            let slot = if s != NONE {
                s as usize
            } else if n < self.max_groups {
                let new = u32::try_from(self.slot_key.len())
                    .ok()
                    .filter(|&n| n != NONE)
                    .ok_or_else(|| too_many("(unit, group) pairs"))?;
                self.slot_key.push(k);
                self.slot_hash.push(h);
                self.slot_next.push(self.unit_head[u as usize]);
                self.slot_count.push(0);
                self.slot_sums.extend(std::iter::repeat_n(0, self.values));
                self.unit_head[u as usize] = new;
                new as usize
            } else if self.before(
                (h, k),
                (
                    self.slot_hash[worst as usize],
                    self.slot_key[worst as usize],
                ),
            ) {
                let i = worst as usize;
                self.slot_key[i] = k;
                self.slot_hash[i] = h;
                self.slot_count[i] = 0;
                self.slot_sums[i * self.values..(i + 1) * self.values].fill(0);
                i
            } else {
                continue;
            };
            self.slot_count[slot] += 1;
            for j in 0..self.values {
                let sum = &mut self.slot_sums[slot * self.values + j];
                *sum = sum.saturating_add(value_at(j, row));
            }
        }
        let after = self.size();
        self.reservation.try_grow(after.saturating_sub(before))?;
        Ok(())
    }

    /// Bytes held, roughly.
    fn size(&self) -> usize {
        self.unit_text.capacity()
            + 8 * self.unit_end.capacity()
            + 4 * (self.unit_next.capacity() + self.unit_head.capacity())
            + 16 * (self.by_hash.capacity() + self.keys_by_hash.capacity())
            + self.key_rows.size()
            + 4 * self.key_next.capacity()
            + 16 * self.slot_key.capacity()
            + 8 * (self.slot_count.capacity() + self.slot_sums.capacity())
    }

    /// One row per slot: keys, count, sums.
    fn finish(self, schema: &SchemaRef) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        let slots = self.slot_key.len();
        for start in (0..slots).step_by(BATCH) {
            let end = (start + BATCH).min(slots);
            let mut columns = if self.keys == 0 {
                Vec::new()
            } else {
                self.converter.convert_rows(
                    self.slot_key[start..end]
                        .iter()
                        .map(|&k| self.key_rows.row(k as usize)),
                )?
            };
            columns.push(Arc::new(Int64Array::from(
                self.slot_count[start..end].to_vec(),
            )));
            for j in 0..self.values {
                let sums: Int64Array = (start..end)
                    .map(|s| Some(self.slot_sums[s * self.values + j]))
                    .collect();
                columns.push(Arc::new(sums));
            }
            // The keys as the schema types them (a row converter gives the
            // types it was given).
            let columns = columns
                .into_iter()
                .zip(schema.fields())
                .map(|(c, f)| {
                    if c.data_type() == f.data_type() {
                        Ok(c)
                    } else {
                        arrow::compute::cast(&c, f.data_type())
                    }
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            out.push(RecordBatch::try_new(schema.clone(), columns)?);
        }
        Ok(out)
    }
}

fn too_many(what: &str) -> DataFusionError {
    DataFusionError::ResourcesExhausted(format!(
        "too many {what} in one partition of the differentially private group choice"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringArray;
    use arrow::datatypes::{Field, Schema};
    use datafusion::execution::memory_pool::{MemoryPool, UnboundedMemoryPool};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn slots(max_groups: usize, seed: u64) -> Slots {
        let pool: Arc<dyn MemoryPool> = Arc::new(UnboundedMemoryPool::default());
        Slots::new(
            vec![SortField::new(DataType::Utf8)],
            1,
            1,
            max_groups,
            seed,
            MemoryConsumer::new("test").register(&pool),
        )
        .unwrap()
    }

    fn batch(rows: &[(u8, u8, i64)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("u", DataType::Utf8, true),
            Field::new("k", DataType::Utf8, true),
            Field::new("v", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| format!("unit-{}", r.0)),
                )),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| format!("g{}", r.1)),
                )),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
            ],
        )
        .unwrap()
    }

    fn out_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("__veil_c", DataType::Int64, false),
            Field::new("v_u", DataType::Int64, true),
        ]))
    }

    /// (group, count, sum) over every kept (unit, group), sorted.
    fn kept(
        rows: &[(u8, u8, i64)],
        split: usize,
        max_groups: usize,
        seed: u64,
    ) -> Vec<(String, i64, i64)> {
        let mut s = slots(max_groups, seed);
        for chunk in rows.chunks(split.max(1)) {
            s.add(&batch(chunk)).unwrap();
        }
        let mut out = Vec::new();
        for b in s.finish(&out_schema()).unwrap() {
            let k = b.column(0).as_string::<i32>();
            let c = b.column(1).as_primitive::<Int64Type>();
            let v = b.column(2).as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                out.push((k.value(i).to_owned(), c.value(i), v.value(i)));
            }
        }
        out.sort();
        out
    }

    /// A group's order (hash, key bytes), key and (count, sum).
    type Ranked = (u64, Vec<u8>, String, (i64, i64));

    /// The same choice made the slow way: rank each unit's groups by their
    /// keyed hash (then key bytes) and keep the first L0.
    fn ranked(rows: &[(u8, u8, i64)], max_groups: usize, seed: u64) -> Vec<(String, i64, i64)> {
        let hasher = RandomState::with_seed(seed);
        let converter = RowConverter::new(vec![SortField::new(DataType::Utf8)]).unwrap();
        let mut groups: BTreeMap<String, BTreeMap<String, (i64, i64)>> = BTreeMap::new();
        for &(u, k, v) in rows {
            let g = groups.entry(format!("unit-{u}")).or_default();
            let e = g.entry(format!("g{k}")).or_default();
            e.0 += 1;
            e.1 += v;
        }
        let mut out = Vec::new();
        for (unit, g) in groups {
            let mut order: Vec<Ranked> = g
                .into_iter()
                .map(|(key, stats)| {
                    let array: ArrayRef = Arc::new(StringArray::from(vec![key.clone()]));
                    let bytes = converter
                        .convert_columns(&[array])
                        .unwrap()
                        .row(0)
                        .as_ref()
                        .to_vec();
                    (
                        hasher.hash_one((unit.as_bytes(), bytes.as_slice())),
                        bytes,
                        key,
                        stats,
                    )
                })
                .collect();
            order.sort();
            out.extend(
                order
                    .into_iter()
                    .take(max_groups)
                    .map(|(_, _, k, (c, s))| (k, c, s)),
            );
        }
        out.sort();
        out
    }

    proptest! {
        /// Whatever the rows' order and batching, each unit keeps exactly
        /// its L0 groups of smallest keyed hash, with their full counts and
        /// sums.
        #[test]
        fn each_unit_keeps_its_groups_of_smallest_hash(
            rows in prop::collection::vec((0u8..12, 0u8..6, -5i64..50), 0..300),
            split in 1usize..40,
            max_groups in 1usize..5,
            seed in any::<u64>(),
        ) {
            prop_assert_eq!(kept(&rows, split, max_groups, seed), ranked(&rows, max_groups, seed));
        }
    }

    #[test]
    fn the_choice_changes_with_the_seed_and_is_uniform_over_a_units_groups() {
        // One unit with four groups, L0 = 1: over many seeds each group is
        // kept about a quarter of the time.
        let rows: Vec<(u8, u8, i64)> = (0..4).map(|k| (1, k, 1)).collect();
        let mut times = BTreeMap::new();
        for seed in 0..4000u64 {
            let k = kept(&rows, 4, 1, seed);
            assert_eq!(k.len(), 1);
            *times.entry(k[0].0.clone()).or_insert(0) += 1;
        }
        assert_eq!(times.len(), 4, "{times:?}");
        for n in times.values() {
            assert!((850..=1150).contains(n), "{times:?}");
        }
    }
}
