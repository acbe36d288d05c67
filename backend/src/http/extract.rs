//! Extractors whose rejections speak the API's problem+json, and a small validator.

use axum::extract::{FromRequest, FromRequestParts};
use axum::response::{IntoResponse, Response};

use super::error::{Error, FieldError};

/// `axum::Json`, but a body that cannot be read becomes a problem+json with the failing field.
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(Error))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Query` with problem+json rejections.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Error))]
pub struct Query<T>(pub T);

/// `axum::extract::Path` with problem+json rejections.
#[derive(Debug, Clone, Copy, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(Error))]
pub struct Path<T>(pub T);

/// Collects every invalid field of a request before answering, so that a client learns all
/// of them at once.
#[derive(Debug, Default)]
pub struct Validator(Vec<FieldError>);

impl Validator {
    pub fn check(&mut self, ok: bool, field: &str, message: &str) -> &mut Self {
        if !ok {
            self.0.push(FieldError::new(field, message));
        }
        self
    }

    /// A human-entered name: trimmed, 1–200 characters, no control characters.
    pub fn name(&mut self, field: &str, value: &str) -> &mut Self {
        let len = value.trim().chars().count();
        if !(1..=200).contains(&len) {
            return self.check(false, field, "must be between 1 and 200 characters");
        }
        self.check(!value.chars().any(char::is_control), field, "must not contain control characters")
    }

    pub fn finish(&mut self) -> Result<(), Error> {
        if self.0.is_empty() { Ok(()) } else { Err(Error::Validation(std::mem::take(&mut self.0))) }
    }
}
