//! The HTTP layer shared by every domain: the error type, extractors, pagination, the one
//! router, the OpenAPI document, middleware, health checks, the listeners and the served certificate.

pub mod canned;
pub mod error;
pub mod extract;
pub mod fields;
pub mod health;
pub mod layers;
pub mod listener;
pub mod openapi;
pub mod page;
pub mod router;
pub mod tls;
pub mod web;

pub use error::{Error, FieldError, Problem, Result, ResultExt};
pub use extract::{Json, Path, Query, Validator};
pub use page::{Page, PageParams};
