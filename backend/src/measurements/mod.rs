//! Measurements: ingest from the broker into PostgreSQL; the API that reads them (listing,
//! one measurement and its 3D load profile, change feed, exports, summaries); and what
//! operators see of the messages that could not be stored.

pub mod api;
pub mod changes;
pub mod export;
pub mod filter;
pub mod ingest;
pub mod rejections;
pub mod store;
pub mod summary;
pub mod validate;
