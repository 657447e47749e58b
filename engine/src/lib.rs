//! veil-engine: the only crate that knows DataFusion.
//!
//! The path of one query ([`Engine::query`]): [`sql`] parses exactly one
//! SELECT and plans it against the caller's views of the datasets
//! ([`tables`]); [`policy`] checks every use of every field against the
//! caller's disclosure levels and rewrites the plan (masks from [`protect`],
//! region filters, k thresholds, error-oracle guards); DataFusion runs the
//! result. Nothing reads a dataset except a plan the policy stage wrote.
//!
//! [`source`] checks a data file against its manifest at registration;
//! [`verification`] answers verification products from indexes, without SQL.

pub mod dp;
mod engine;
mod error;
pub mod model;
mod policy;
pub mod protect;
mod provenance;
pub mod source;
mod sql;
pub use sql::{MAX_OPERATORS, MAX_TABLES, MAX_TOKENS};
pub mod subject_access;
mod tables;
pub mod verification;

pub use engine::{
    Answer, BudgetLeft, DpBudget, DpCost, DpOptions, DpPrepared, Engine, PreparedQuery, Privacy,
    Provenance, QUERY_MEMORY, QueryRequest,
};
pub use error::{QueryError, Refusal};

/// A stream of an answer's record batches.
pub type RecordStream = datafusion::execution::SendableRecordBatchStream;
pub use tables::{Dataset, OpenError};
