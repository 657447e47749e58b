//! veil-api: the service around the engine. The only crate that knows HTTP
//! and the store.
//!
//! - [`datadir`]: the data directory and its secrets.
//! - [`http`]: the HTTP service: router, auth, limits, streaming answers,
//!   metrics, OpenAPI.
//! - [`store`]: the embedded SQLite store: policies, catalog, principals,
//!   keys, grants.
//! - [`registry`]: registering a dataset from its manifest.
//! - [`service`]: an engine over the store; one query as a principal.
//! - [`verify`]: verification products: subject indexes, digests, quotas.
//! - [`wire`]: answers and errors as contract.md's JSON.
//! - [`workflow`]: the regulation's requests: parties, effects, JSON.

pub mod datadir;
pub mod http;
pub mod models;
pub mod receipt;
pub mod registry;
pub mod service;
pub mod signing;
pub mod store;
pub mod verify;
pub mod wire;
pub mod workflow;

pub use store::{Store, StoreError};
