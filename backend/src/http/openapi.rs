//! The OpenAPI document: collected from the handlers' `#[utoipa::path]`s by the router,
//! completed here with security schemes, the shared problem responses, and the problem
//! document as the body of every error a handler lists (handlers give only status and
//! description). Committed as `openapi/openapi.json`; a test fails when the two differ.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::RefOr;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::error::{FieldError, PROBLEM_JSON, Problem};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "MyScanner Cloud API",
        description = "The JSON API of MyScanner Cloud: the web dashboard, customer integrations and \
                       LVS/MPS scanners use it. Errors are RFC 9457 problem documents whose `type` is stable.",
    ),
    modifiers(&SecuritySchemes),
    // Types that only parameters use: utoipa does not collect those from the handlers.
    components(schemas(
        Problem,
        FieldError,
        myscanner_protocol::sync::Collection,
        crate::measurements::export::Format,
        crate::measurements::filter::Order,
    )),
    tags(
        (name = "auth", description = "Signing in and the signed-in user"),
        (name = "workgroups", description = "Customer organisations (tenants)"),
        (name = "sites", description = "Sites (plants) of a workgroup"),
        (name = "members", description = "People of a workgroup and their permissions"),
        (name = "api-tokens", description = "Read-only tokens for customer integrations"),
        (name = "devices", description = "LVS and MPS scanners"),
        (name = "subscriptions", description = "The subscription each workgroup's cloud features need, and its history"),
        (name = "measurements", description = "Measurements, 3D load profiles, the change feed, exports and summaries"),
        (name = "security", description = "Security Services: weekly and run-now network scans, their results and history"),
        (name = "ingest", description = "Measurement messages that could not be stored"),
        (name = "remote", description = "Remote control: sessions to scanners, who is online, and the session audit"),
        (name = "sync", description = "Reference scans and load detail lists shared by the scanners of a site"),
        (name = "agent", description = "Endpoints the scanners call, with their device credential"),
        (name = "health", description = "Liveness and readiness"),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |format: &str, description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format(format)
                    .description(Some(description))
                    .build(),
            )
        };
        components.add_security_scheme(
            "user_jwt",
            bearer("JWT", "A dashboard user's session token from `POST /api/v1/auth/login`."),
        );
        components.add_security_scheme(
            "api_token",
            bearer("myst_<id>_<secret>", "A customer integration's read-only API token."),
        );
        components.add_security_scheme(
            "device_credential",
            bearer("mysd_<id>_<secret>", "A scanner's device credential, issued at provisioning."),
        );
    }
}

/// The complete document.
pub fn spec() -> utoipa::openapi::OpenApi {
    let mut doc = super::router::routes().into_openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    add_problem_responses(&mut doc);
    doc
}

/// The document as committed: pretty JSON with a final newline.
pub fn spec_json() -> String {
    let mut json = spec().to_pretty_json().expect("the OpenAPI document serialises");
    json.push('\n');
    json
}

/// Every operation may fail in the ways every operation of its kind can; list those on the
/// shared problem schema without repeating them in each handler.
fn add_problem_responses(doc: &mut utoipa::openapi::OpenApi) {
    for (path, item) in doc.paths.paths.iter_mut() {
        let has_path_params = path.contains('{');
        for op in
            [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete].into_iter().flatten()
        {
            // Handler names repeat across domains (`list`, `get`): prefix the tag.
            if let (Some(tag), Some(id)) = (op.tags.as_ref().and_then(|t| t.first()), op.operation_id.as_mut()) {
                *id = format!("{}_{id}", tag.replace('-', "_"));
            }
            let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
            let has_body = op.request_body.is_some();
            let has_query = op
                .parameters
                .iter()
                .flatten()
                .any(|p| matches!(p, RefOr::T(p) if matches!(p.parameter_in, ParameterIn::Query)));
            add(op, "500", "Internal error; details are in the service log", true);
            // Answered before any handler, for a request the HTTP layer cannot read.
            add(op, "414", "The URI is longer than 65,534 bytes (`uri-too-long`)", true);
            add(op, "431", "The request's headers are too large (`headers-too-large`)", true);
            add(op, "401", "Missing, invalid, expired or revoked credential", secured);
            add(op, "403", "The credential lacks a permission this needs", secured);
            add(
                op,
                "404",
                "No such resource for this caller (also another workgroup's ids)",
                secured && has_path_params,
            );
            add(op, "400", "Malformed request, query or path parameter", has_body || has_query || has_path_params);
            add(op, "413", "Request body too large", has_body);
            add(
                op,
                "429",
                "Too many requests from this user, token or scanner; `Retry-After` says when to try again",
                secured,
            );
            add(op, "415", "Request body is not JSON", has_body);
            add(op, "422", "Invalid fields; see `errors`", has_body);
            fill_in_problem_bodies(op);
        }
    }
}

/// A handler lists its own errors (a 409, a 503) by status and description; every error
/// answer is a problem document, so each gets that body here instead of in every handler.
fn fill_in_problem_bodies(op: &mut Operation) {
    for (status, response) in op.responses.responses.iter_mut() {
        if let RefOr::T(response) = response
            && response.content.is_empty()
            && (status.starts_with('4') || status.starts_with('5'))
        {
            response.content.insert(PROBLEM_JSON.to_owned(), problem_body().into());
        }
    }
}

/// The body of every error answer: a problem document.
fn problem_body() -> Content {
    ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build()
}

/// The cloud features' operations (`router::cloud_features`) may be refused for the
/// workgroup's subscription.
pub fn document_cloud_features(doc: &mut utoipa::openapi::OpenApi) {
    for item in doc.paths.paths.values_mut() {
        for op in
            [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete].into_iter().flatten()
        {
            add(
                op,
                "402",
                "The workgroup's subscription is not active (none, lapsed or cancelled): `subscription-inactive`, \
                 with `subscription_status`. Measurements are still stored; nothing is deleted.",
                true,
            );
        }
    }
}

fn add(op: &mut Operation, status: &str, description: &str, applies: bool) {
    if !applies || op.responses.responses.contains_key(status) {
        return;
    }
    let mut response = ResponseBuilder::new().description(description).content(PROBLEM_JSON, problem_body());
    if status == "429" {
        let seconds =
            utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::Type::Integer).minimum(Some(1)).build();
        response = response.header(
            "Retry-After",
            utoipa::openapi::HeaderBuilder::new().schema(Some(seconds)).description(Some("Seconds to wait")).build(),
        );
    }
    let response = response.build();
    op.responses.responses.insert(status.to_owned(), response.into());
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "health",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
pub async fn serve() -> impl IntoResponse {
    static SPEC: OnceLock<String> = OnceLock::new();
    ([(header::CONTENT_TYPE, "application/json")], SPEC.get_or_init(spec_json).as_str())
}
