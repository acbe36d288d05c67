//! The one error type of the HTTP API, rendered as RFC 9457 `application/problem+json`.
//!
//! Every problem carries a stable machine-readable `type` (`urn:myscanner:problem:<code>`);
//! clients switch on it, never on `title` or `detail`. 5xx details are logged here, inside
//! the request span, and never sent to the client.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::subscriptions::SubscriptionStatus;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The content type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:myscanner:problem:validation-failed",
    "title": "The request body has invalid fields",
    "status": 422,
    "errors": [{"field": "name", "message": "must be 1–200 characters, not only spaces, without control characters"}]
}))]
pub struct Problem {
    /// Stable identifier of the kind of problem: `urn:myscanner:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Field-level detail for invalid input.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// With `subscription-inactive`: the workgroup's subscription status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_status: Option<SubscriptionStatus>,
}

/// One invalid field: a JSON path (`permissions[1]`) or a parameter name, and why.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No credential, or one that is invalid, expired or revoked. Never "anonymous".
    #[error("authentication required: {0}")]
    Unauthorized(&'static str),
    /// Authenticated, but the permission named here is missing.
    #[error("missing permission: {0}")]
    Forbidden(&'static str),
    /// A platform operator tried to give themselves a membership: another operator does
    /// that, at the customer's request.
    #[error("operators do not grant themselves membership")]
    SelfGrant,
    /// A customer-integration API token was used on a route that changes something.
    #[error("API tokens are read-only")]
    ReadOnlyToken,
    /// The resource does not exist *for this caller*: also what another workgroup's ids get.
    #[error("not found")]
    NotFound,
    /// The request contradicts stored state; `code` is the stable problem code.
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    /// The request could not be read: malformed JSON, query or path parameters.
    #[error("invalid request: {detail}")]
    InvalidRequest { detail: String, errors: Vec<FieldError> },
    /// The body was well-formed but some fields are invalid.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// Throttled; `retry_after` is in seconds and becomes the `Retry-After` header.
    #[error("too many requests")]
    TooManyRequests { retry_after: u64 },
    /// A WebSocket endpoint was called without a WebSocket upgrade.
    #[error("WebSocket upgrade required")]
    UpgradeRequired,
    /// The scanner is connected but could not reach the service behind it.
    #[error("{0}")]
    DeviceUnreachable(String),
    /// The scanner's agent holds its tunnel but did not answer a new session in time: it is
    /// frozen, overloaded, or its link has stalled. Not the scanner's service's fault.
    #[error("the scanner is not answering")]
    ScannerNotAnswering,
    /// A cloud feature of a workgroup whose subscription is not available (none, lapsed,
    /// cancelled); `contact` is whom to ask.
    #[error("subscription {}", status.as_str())]
    SubscriptionInactive { status: SubscriptionStatus, contact: String },
    /// Provisioning beyond the scanners the subscription covers.
    #[error("the subscription covers {covered} scanners")]
    ScannerLimit { covered: i32 },
    /// A dependency (database, broker) is unreachable.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Error::Conflict { code, detail: detail.into() }
    }

    pub fn invalid_field(field: &str, message: &str) -> Self {
        Error::Validation(vec![FieldError::new(field, message)])
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) | Error::ReadOnlyToken | Error::SelfGrant => StatusCode::FORBIDDEN,
            Error::NotFound => StatusCode::NOT_FOUND,
            Error::Conflict { .. } => StatusCode::CONFLICT,
            Error::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            Error::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::SubscriptionInactive { .. } | Error::ScannerLimit { .. } => StatusCode::PAYMENT_REQUIRED,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::UpgradeRequired => StatusCode::UPGRADE_REQUIRED,
            Error::DeviceUnreachable(_) => StatusCode::BAD_GATEWAY,
            Error::ScannerNotAnswering => StatusCode::GATEWAY_TIMEOUT,
            Error::Database(sqlx::Error::RowNotFound) => StatusCode::NOT_FOUND,
            Error::Database(e) if is_data_exception(e) => StatusCode::BAD_REQUEST,
            Error::Database(_) | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code behind `urn:myscanner:problem:`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Unauthorized(_) => "unauthorized",
            Error::Forbidden(_) | Error::SelfGrant => "forbidden",
            Error::ReadOnlyToken => "read-only-token",
            Error::NotFound | Error::Database(sqlx::Error::RowNotFound) => "not-found",
            Error::Database(e) if is_data_exception(e) => "invalid-request",
            Error::Conflict { code, .. } => code,
            Error::InvalidRequest { .. } => "invalid-request",
            Error::Validation(_) => "validation-failed",
            Error::PayloadTooLarge => "payload-too-large",
            Error::UnsupportedMediaType => "unsupported-media-type",
            Error::TooManyRequests { .. } => "too-many-requests",
            Error::SubscriptionInactive { .. } => "subscription-inactive",
            Error::ScannerLimit { .. } => "scanner-limit-reached",
            Error::Unavailable(_) => "unavailable",
            Error::UpgradeRequired => "websocket-required",
            Error::DeviceUnreachable(_) => "device-service-unreachable",
            Error::ScannerNotAnswering => "scanner-not-answering",
            Error::Database(_) | Error::Internal(_) => "internal",
        }
    }

    fn problem(&self) -> Problem {
        let status = self.status();
        let (title, detail, errors) = match self {
            Error::Unauthorized(why) => ("Authentication required", Some(why.to_string()), vec![]),
            Error::Forbidden(perm) => {
                ("Permission denied", Some(format!("this action needs the `{perm}` permission")), vec![])
            }
            Error::SelfGrant => (
                "Permission denied",
                Some(
                    "a platform operator does not grant themselves a membership; another operator adds them".to_owned(),
                ),
                vec![],
            ),
            Error::ReadOnlyToken => {
                ("API tokens are read-only", Some("sign in as a user to change data".to_owned()), vec![])
            }
            Error::Conflict { detail, .. } => ("Conflict", Some(detail.clone()), vec![]),
            Error::InvalidRequest { detail, errors } => {
                ("The request could not be read", Some(detail.clone()), errors.clone())
            }
            Error::Validation(errors) => ("The request body has invalid fields", None, errors.clone()),
            Error::TooManyRequests { retry_after } => {
                ("Too many requests", Some(format!("try again in {retry_after} seconds")), vec![])
            }
            Error::Unavailable(what) => ("Service unavailable", Some(what.clone()), vec![]),
            Error::SubscriptionInactive { status, contact } => (
                "The workgroup's subscription is not active",
                Some(format!(
                    "{}; measurements from its scanners are still stored and nothing is deleted; \
                     to renew, contact {contact}",
                    status.why_inactive()
                )),
                vec![],
            ),
            Error::ScannerLimit { covered } => (
                "The subscription covers no more scanners",
                Some(format!(
                    "the workgroup's subscription covers {covered} scanners and that many hold a credential; \
                     revoke one that is out of service, or extend the subscription"
                )),
                vec![],
            ),
            Error::UpgradeRequired => {
                ("WebSocket upgrade required", Some("open this URL as a WebSocket".to_owned()), vec![])
            }
            Error::DeviceUnreachable(why) => ("The scanner's service is unreachable", Some(why.clone()), vec![]),
            Error::ScannerNotAnswering => (
                "The scanner is not answering",
                Some(
                    "its tunnel is open but its agent did not answer in time: it may be frozen or its link stalled"
                        .into(),
                ),
                vec![],
            ),
            Error::Database(e) if is_data_exception(e) => {
                ("The request could not be read", Some("a value cannot be stored as given".to_owned()), vec![])
            }
            Error::NotFound | Error::Database(sqlx::Error::RowNotFound) => ("Not found", None, vec![]),
            // Internals stay in the log.
            Error::Database(_) | Error::Internal(_) => ("Internal server error", None, vec![]),
            _ => (status.canonical_reason().unwrap_or("Error"), None, vec![]),
        };
        let subscription_status = match self {
            Error::SubscriptionInactive { status, .. } => Some(*status),
            _ => None,
        };
        Problem {
            kind: problem_type(self.code()),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            errors,
            subscription_status,
        }
    }
}

/// A value the database cannot hold (SQLSTATE class 22: a NUL in text, a number out of
/// range): the request's fault, not the server's.
fn is_data_exception(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("22")))
}

pub fn problem_type(code: &str) -> String {
    format!("urn:myscanner:problem:{code}")
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        match self {
            // A dependency being away is the operator's concern, not a bug.
            Error::Unavailable(ref why) => tracing::warn!(reason = %why, "unavailable"),
            _ if status.is_server_error() => tracing::error!(error = ?self, "request failed"),
            _ => {}
        }
        let mut response = problem_response(status, &self.problem());
        if let Error::TooManyRequests { retry_after } = self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

pub fn problem_response(status: StatusCode, problem: &Problem) -> Response {
    let mut response = (status, Json(problem)).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

impl From<PathRejection> for Error {
    fn from(rejection: PathRejection) -> Self {
        Error::InvalidRequest { detail: rejection.body_text(), errors: vec![] }
    }
}

/// Turns a database constraint violation into a client error, by constraint name, so that
/// handlers never match on error strings.
pub trait ResultExt<T> {
    fn on_constraint(self, name: &str, f: impl FnOnce() -> Error) -> Result<T>;
}

impl<T, E: Into<Error>> ResultExt<T> for std::result::Result<T, E> {
    fn on_constraint(self, name: &str, f: impl FnOnce() -> Error) -> Result<T> {
        self.map_err(|e| match e.into() {
            Error::Database(sqlx::Error::Database(db)) if db.constraint() == Some(name) => f(),
            e => e,
        })
    }
}
