//! Extractors whose rejections speak the API's problem+json, and a small validator.
//!
//! They read requests the way the published document describes them (JSON Schema): a body
//! is one JSON object (a struct is never read from an array), an integer may be written
//! `3` or `3.0`, and a query parameter given empty (`?cursor=`) is refused.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::{Error, FieldError};

/// A JSON object body, read into `T`; what cannot be read becomes a problem+json naming the
/// field that failed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = Error;

    async fn from_request(request: Request, state: &S) -> Result<Self, Error> {
        let json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
            });
        if !json {
            return Err(Error::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => Error::PayloadTooLarge,
            _ => Error::InvalidRequest { detail: rejection.body_text(), errors: vec![] },
        })?;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::InvalidRequest { detail: format!("the body is not JSON: {e}"), errors: vec![] })?;
        if !value.is_object() {
            return Err(Error::invalid_field("body", "must be a JSON object"));
        }
        serde_path_to_error::deserialize(integral(value)).map(Json).map_err(|error| {
            let field = match error.path().to_string() {
                path if path == "." => "body".to_owned(),
                path => path,
            };
            Error::Validation(vec![FieldError::new(field, error.inner().to_string())])
        })
    }
}

/// Numbers with nothing after the point made integers: JSON Schema's `integer` is any
/// number without a fraction (`3.0` too), which serde would refuse for an integer field.
fn integral(value: Value) -> Value {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(integral).collect()),
        Value::Object(fields) => Value::Object(fields.into_iter().map(|(k, v)| (k, integral(v))).collect()),
        other => other,
    }
}

/// The query string read into `T`. A parameter given empty (`?site_id=`) is refused, not
/// taken for absent: every documented parameter has a type, format or minimum length that
/// an empty value breaks.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        let query = parts.uri.query().unwrap_or_default();
        let empty = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .find(|pair| pair.split_once('=').is_none_or(|(_, value)| value.is_empty()))
            .map(|pair| name_of(pair.split('=').next().unwrap_or(pair)));
        if let Some(name) = empty {
            return Err(Error::InvalidRequest {
                detail: format!("invalid query parameter `{name}`"),
                errors: vec![FieldError::new(name.clone(), "is empty; leave it out instead")],
            });
        }
        serde_urlencoded::from_str(query).map(Query).map_err(|error| Error::InvalidRequest {
            detail: format!("Failed to deserialize query string: {error}"),
            errors: vec![],
        })
    }
}

/// A parameter's name, percent-decoded for the message.
fn name_of(raw: &str) -> String {
    serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("{raw}=x"))
        .ok()
        .and_then(|pairs| pairs.into_iter().next())
        .map_or_else(|| raw.to_owned(), |(name, _)| name)
}

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

    /// A name a person gave ([`Name`](super::fields::Name)).
    pub fn name(&mut self, field: &str, value: &str) -> &mut Self {
        self.check(super::fields::Name::allows(value), field, super::fields::Name::RULE.message)
    }

    pub fn finish(&mut self) -> Result<(), Error> {
        if self.0.is_empty() { Ok(()) } else { Err(Error::Validation(std::mem::take(&mut self.0))) }
    }
}
