//! veil-api: the service around the engine. The only crate that knows HTTP
//! and the store.
//!
//! - [`datadir`]: the data directory and its secrets.
//! - [`store`]: the embedded SQLite store: policies, catalog, principals,
//!   keys, grants.
//! - [`registry`]: registering a dataset from its manifest.

pub mod datadir;
pub mod registry;
pub mod store;

pub use store::{Store, StoreError};
