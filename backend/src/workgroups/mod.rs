//! Workgroups (the tenants):
//! - `api`: the workgroups themselves;
//! - `sites`: their sites (plants);
//! - `members`: the people in them and their permissions.

pub mod api;
pub mod members;
pub mod sites;

pub use api::Workgroup;
