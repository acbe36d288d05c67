//! Measurements: ingest from the broker into PostgreSQL, and what operators see of the
//! messages that could not be stored.

pub mod ingest;
pub mod rejections;
pub mod store;
pub mod validate;
