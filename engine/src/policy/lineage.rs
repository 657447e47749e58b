//! Lineage: which protected source fields an expression or a row depends on,
//! and the rules that say where each may be used.
//!
//! Every referenced field is tracked, which also tells the audit log what a
//! query touched; plain and generalised fields pass every check. Masked,
//! pseudonymised and generalised values are replaced at the scan, so what
//! flows upward is already protected; their lineage is kept to enforce the
//! design's rules on filters, joins and grouping.

use veil_policies::Level;

use crate::error::{QueryError, deny};

/// A tracked source field.
#[derive(Debug, Clone)]
pub(crate) struct FieldInfo {
    pub dataset: String,
    pub field: String,
    pub level: Level,
    pub identifier: bool,
    /// Whether this is its dataset's privacy unit.
    pub unit: bool,
    pub allow_min_max: bool,
}

impl FieldInfo {
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.dataset, self.field)
    }
}

/// One use of a tracked field; `aggregated` once an allowed aggregate has
/// consumed it over groups that pass their threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Use {
    pub field: u32,
    pub aggregated: bool,
}

/// A sorted set of uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Lineage(Vec<Use>);

impl Lineage {
    pub fn of(field: u32) -> Self {
        Lineage(vec![Use {
            field,
            aggregated: false,
        }])
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn uses(&self) -> &[Use] {
        &self.0
    }

    pub fn extend(&mut self, other: &Lineage) {
        if other.0.is_empty() {
            return;
        }
        self.0.extend_from_slice(&other.0);
        self.0.sort_unstable();
        self.0.dedup();
    }

    pub fn union<'a>(items: impl IntoIterator<Item = &'a Lineage>) -> Lineage {
        let mut out = Lineage::default();
        for l in items {
            out.extend(l);
        }
        out
    }

    /// The lineage after an allowed aggregate consumed it.
    pub fn aggregated(&self) -> Lineage {
        let mut uses: Vec<Use> = self
            .0
            .iter()
            .map(|u| Use {
                field: u.field,
                aggregated: true,
            })
            .collect();
        uses.sort_unstable();
        uses.dedup();
        Lineage(uses)
    }

    /// Raw (not yet aggregated) uses.
    pub fn raw(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().filter(|u| !u.aggregated).map(|u| u.field)
    }
}

/// The registry of tracked fields met while checking one query.
#[derive(Debug, Default)]
pub(crate) struct Fields {
    infos: Vec<FieldInfo>,
    /// Below a differentially private aggregate, aggregate-only and dp fields
    /// may be filtered and joined on: the aggregate bounds every unit's
    /// contribution and noises the result, whatever the rows are.
    pub below_dp: bool,
}

impl Fields {
    pub fn intern(&mut self, info: FieldInfo) -> u32 {
        if let Some(i) = self
            .infos
            .iter()
            .position(|f| f.dataset == info.dataset && f.field == info.field)
        {
            return i as u32;
        }
        self.infos.push(info);
        (self.infos.len() - 1) as u32
    }

    pub fn get(&self, id: u32) -> &FieldInfo {
        &self.infos[id as usize]
    }

    /// Where a field may flow into a filter, a join, a grouping, an ordering
    /// or a window partition: plain and generalised fields anywhere, the
    /// others only after an allowed aggregate.
    pub fn check_influence(&self, lineage: &Lineage, position: &str) -> Result<(), QueryError> {
        for id in lineage.raw() {
            let f = self.get(id);
            let why = match &f.level {
                Level::Masked(m) => format!(
                    "is masked ({m}) for you: it may be shown, masked, but not used in {position}"
                ),
                Level::Pseudonym { .. } => format!(
                    "is pseudonymised for you: its token may be shown and joined on, but not used in {position}"
                ),
                Level::Aggregate { .. } | Level::Dp if self.below_dp => continue,
                Level::Aggregate { k } => format!(
                    "is aggregate-only for you (k = {k}): it may appear only inside COUNT, SUM or AVG, not in {position}"
                ),
                Level::Dp => format!(
                    "is available to you only through differential privacy; it cannot be used in {position} of this query (send `epsilon` for a differentially private answer)"
                ),
                Level::Compare | Level::Deny => format!("is not available to you in {position}"),
                Level::Plain | Level::Generalized(_) => continue,
            };
            return Err(deny(
                Some(f.qualified()),
                rule_of(&f.level),
                format!("field `{}` {why}", f.qualified()),
            ));
        }
        Ok(())
    }

    /// What may leave in an output column or in the existence of output rows.
    pub fn check_output(&self, lineage: &Lineage, what: &str) -> Result<(), QueryError> {
        for id in lineage.raw() {
            let f = self.get(id);
            let why = match &f.level {
                Level::Aggregate { k } => format!(
                    "is aggregate-only for you (k = {k}): {what} would reveal single records; aggregate it with COUNT, SUM or AVG"
                ),
                Level::Dp => format!(
                    "is available to you only through differential privacy: {what} would reveal it without noise (send `epsilon` for a differentially private answer)"
                ),
                Level::Compare | Level::Deny => {
                    format!("is not available to you: {what} would reveal it")
                }
                Level::Plain
                | Level::Generalized(_)
                | Level::Masked(_)
                | Level::Pseudonym { .. } => continue,
            };
            return Err(deny(
                Some(f.qualified()),
                rule_of(&f.level),
                format!("field `{}` {why}", f.qualified()),
            ));
        }
        Ok(())
    }

    /// Whether any raw use restricts functions that may be applied to it.
    pub fn is_protected(&self, lineage: &Lineage) -> bool {
        self.first_raw(lineage).is_some()
    }

    /// The first raw use of a field that is not plain or generalised.
    pub fn first_raw(&self, lineage: &Lineage) -> Option<&FieldInfo> {
        lineage
            .raw()
            .map(|id| self.get(id))
            .find(|f| !matches!(f.level, Level::Plain | Level::Generalized(_)))
    }

    /// Whether any use is of a masked, pseudonymised or generalised field:
    /// the answer shows protected forms of values.
    pub fn shows_protected(&self, lineage: &Lineage) -> bool {
        lineage.uses().iter().any(|u| {
            matches!(
                self.get(u.field).level,
                Level::Masked(_) | Level::Pseudonym { .. } | Level::Generalized(_)
            )
        })
    }

    /// Whether the lineage is exactly one raw use of a pseudonymised field.
    pub fn is_single_token(&self, lineage: &Lineage) -> bool {
        matches!(lineage.uses(), [u] if !u.aggregated && matches!(self.get(u.field).level, Level::Pseudonym { .. }))
    }
}

pub(crate) fn rule_of(level: &Level) -> &'static str {
    match level {
        Level::Plain => "plain",
        Level::Masked(_) => "masked",
        Level::Pseudonym { .. } => "pseudonym",
        Level::Generalized(_) => "generalized",
        Level::Aggregate { .. } => "aggregate",
        Level::Dp => "dp",
        Level::Compare => "compare",
        Level::Deny => "deny",
    }
}
