//! Differential privacy: exact samplers ([`sample`]), zCDP accounting
//! ([`accounting`]), the rewrite that bounds each privacy unit's
//! contribution ([`bound_contributions`]), and the noisy release
//! ([`release`]).

pub mod accounting;
pub(crate) mod bound_contributions;
pub mod release;
pub mod sample;
pub(crate) mod selection_hash;
