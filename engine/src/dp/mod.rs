//! Differential privacy: exact samplers ([`sample`]), zCDP accounting
//! ([`accounting`]), the rewrite that bounds each privacy unit's
//! contribution ([`bound_contributions`]), and the noisy release
//! ([`release`]).

pub mod accounting;
pub(crate) mod approx_bounds;

/// The ε a caller may ask of one answer or one model. Below the floor the
/// noise swamps any answer, and the samplers' exact arithmetic (noise
/// variances as rationals) would overflow; above the ceiling there is no
/// privacy to speak of.
pub const EPSILON_RANGE: std::ops::RangeInclusive<f64> = 0.001..=100.0;

/// Why an ε outside [`EPSILON_RANGE`] is refused.
pub const EPSILON_RANGE_TEXT: &str =
    "`epsilon` must be a number from 0.001 to 100: below 0.001 the noise swamps any answer";

/// Whether `epsilon` is one a caller may ask for.
pub fn epsilon_allowed(epsilon: f64) -> bool {
    EPSILON_RANGE.contains(&epsilon)
}
pub(crate) mod bound_contributions;
pub(crate) mod histogram;
pub(crate) mod keep_groups;
pub(crate) mod post;
pub mod release;
pub mod sample;
