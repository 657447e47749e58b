//! veil-policies: the policy model, pure and free of IO.
//!
//! - [`identifiers`]: citizen identity numbers and unified social credit
//!   codes (Art. 20), validated and generated.
//! - [`budget_period`]: the calendar periods after which a privacy budget
//!   may renew.
//! - [`calendar`]: working days on the State Council's calendar, for
//!   deadlines.
//! - [`catalog`]: dataset manifests with the catalog attributes of Art. 13 and
//!   33 and the classification and grading of every field (Art. 11).
//! - [`policy`]: grades and the bundle each stands for; the default preset.
//! - [`principal`]: roles, region scopes, grants.
//! - [`requests`]: the regulation's requests as state machines with
//!   working-day deadlines.
//! - [`verification`]: verification products and the normalisations they compare
//!   through.
//! - [`model`]: the model templates approvers enable per dataset, and the
//!   open attribute's limit on development (Art. 38).
//! - [`disclosure`] and [`decide`]: a field's disclosure level for one
//!   principal and purpose.
//!
//! Everything that reads files, the network or the clock lives in the crates
//! above this one; functions here take the time as an argument.

pub mod budget_period;
pub mod calendar;
pub mod catalog;
pub mod decide;
pub mod disclosure;
pub mod identifiers;
pub mod model;
pub mod policy;
pub mod principal;
mod problem;
pub mod requests;
pub mod verification;

pub use catalog::{Catalog, DatasetManifest, FieldSpec, FieldType};
pub use decide::{Decision, Reason, decide};
pub use disclosure::{Generalization, Level, LevelKind, MaskMethod};
pub use policy::{Grade, Policy};
pub use principal::{Grant, Principal, RegionScope, Role};
pub use problem::{Problem, Problems, is_plain_name};
pub use verification::Product;
