//! Identifiers of Art. 20: citizen identity numbers (GB 11643-1999) and unified
//! social credit codes (GB 32100-2015). Validation returns the parsed parts;
//! generation computes the check characters, so generated codes are valid by
//! construction.

mod citizen_id;
mod credit_code;

pub use citizen_id::{CitizenId, Sex};
pub use credit_code::{CreditCode, organisation_body};

/// Why a string is not a valid identifier. Messages describe the rule that
/// failed and never repeat the input: identifiers are personal data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    #[error("must be exactly 18 characters")]
    Length,
    #[error("character {position} is not allowed there")]
    Character { position: usize },
    #[error("the address code does not name a province")]
    Province,
    #[error("the birth date does not exist")]
    BirthDate,
    #[error("the birth date is in the future")]
    FutureBirthDate,
    #[error("the organisation code check character is wrong")]
    OrganisationCheck,
    #[error("the check character is wrong")]
    Check,
}
