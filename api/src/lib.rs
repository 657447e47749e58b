//! veil-api: the service around the engine. The only crate that knows HTTP
//! and the store.
//!
//! - [`backup`]: backups of a deployment and their restore.
//! - [`datadir`]: the data directory and its secrets.
//! - [`flight`]: Arrow Flight SQL, a front end over the same query use
//!   case, for BI tools and ADBC, JDBC and ODBC drivers.
//! - [`heads`]: where the audit log and the ledger end, signed outside
//!   the store.
//! - [`http`]: the HTTP service: router, auth, limits, streaming answers,
//!   metrics, OpenAPI.
//! - [`store`]: the embedded SQLite store: policies, catalog, principals,
//!   keys, grants.
//! - [`registry`]: registering a dataset from its manifest.
//! - [`service`]: the use cases, one file each, shared by the HTTP API and
//!   the CLI; one [`service::ServiceError`].
//! - [`verification`]: verification products' parts: subject indexes,
//!   digests, quotas, the request and answer JSON.
//! - [`wire`]: answers and errors as contract.md's JSON; the one body reader.

pub mod backup;
pub mod datadir;
pub mod diff;
pub mod error;
pub mod flight;
pub mod heads;
pub mod http;
pub mod indexes;
pub mod receipt;
pub mod registry;
pub mod service;
pub mod signing;
pub mod store;
pub mod verification;
pub mod wire;

pub use store::{Store, StoreError};
