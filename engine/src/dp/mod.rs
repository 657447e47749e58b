//! Differential privacy: exact samplers, and (next) the rewriting of
//! aggregate queries with contribution bounds, and the accounting.

pub mod sample;
