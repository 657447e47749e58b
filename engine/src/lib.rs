//! veil-engine: the only crate that knows DataFusion.
//!
//! - [`source`]: the data file behind a catalog entry, checked against its
//!   manifest at registration.
pub mod source;
