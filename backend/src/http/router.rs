//! Every route of the API, in one place. Each line names the handlers of one path; the
//! OpenAPI document is collected from the same lines, so the two cannot drift apart.

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{health, openapi};
use crate::auth::{api_tokens, login};
use crate::devices::{api as devices, credentials, device as agent};
use crate::measurements::{api, changes, export, rejections, summary};
use crate::remote::{api as remote, peer, session, tunnel};
use crate::security::api as security;
use crate::security::device as security_device;
use crate::state::AppState;
use crate::subscriptions::{CloudFeature, api as subscriptions};
use crate::sync::{api as sync, device as sync_device};
use crate::workgroups::{api as workgroups, members, sites};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        // Operations
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(openapi::serve))
        // People
        .routes(routes!(login::login))
        .routes(routes!(login::me))
        .routes(routes!(login::change_password))
        // Workgroups and what belongs to them: customers put things right here whatever
        // their subscription.
        .routes(routes!(workgroups::list, workgroups::create))
        .routes(routes!(workgroups::get, workgroups::update))
        .routes(routes!(sites::list, sites::create))
        .routes(routes!(sites::get, sites::update, sites::delete))
        .routes(routes!(members::list, members::add))
        .routes(routes!(members::get, members::update, members::remove))
        .routes(routes!(api_tokens::list, api_tokens::create))
        .routes(routes!(api_tokens::revoke))
        .routes(routes!(devices::list, devices::provision))
        .routes(routes!(devices::get, devices::update))
        .routes(routes!(credentials::rotate))
        .routes(routes!(credentials::revoke))
        // Subscriptions
        .routes(routes!(subscriptions::get, subscriptions::set))
        .routes(routes!(subscriptions::renew))
        .routes(routes!(subscriptions::cancel))
        .routes(routes!(subscriptions::history))
        .routes(routes!(subscriptions::list))
        // Security Services: settings and past results
        .routes(routes!(security::status::list))
        .routes(routes!(security::settings::set_setting))
        .routes(routes!(security::settings::bulk_settings))
        .routes(routes!(security::status::latest))
        .routes(routes!(security::history::history))
        .routes(routes!(security::history::findings))
        // Remote control: the audit
        .routes(routes!(remote::list))
        .routes(routes!(remote::end))
        // Scanner-facing: who it is, its settings, its internal scans, and ingest's record
        .routes(routes!(agent::me))
        .routes(routes!(agent::report_settings))
        .routes(routes!(security_device::claim))
        .routes(routes!(security_device::heartbeat))
        .routes(routes!(security_device::report))
        .routes(routes!(rejections::list))
        .merge(cloud_features())
        // Between replicas only (replica token): not part of the public API document.
        .route(peer::RELAY_PATH, axum::routing::get(peer::relay))
}

/// What a subscription pays for: refused with `subscription-inactive` while the caller's
/// workgroup has none available (lapsed, cancelled, none). A route listed here is marked
/// ([`CloudFeature`]) for the access guard and documented with its 402.
fn cloud_features() -> OpenApiRouter<AppState> {
    let mut routes = OpenApiRouter::new()
        // Measurements
        .routes(routes!(api::list))
        .routes(routes!(changes::changes))
        .routes(routes!(export::export))
        .routes(routes!(summary::summary))
        .routes(routes!(api::get))
        .routes(routes!(api::profile))
        // Security Services: scans on demand
        .routes(routes!(security::run::run_now))
        .routes(routes!(security::run::bulk_run))
        // Remote control
        .routes(routes!(session::connect))
        .routes(routes!(remote::online))
        .routes(routes!(tunnel::open))
        // Reference-scan and list sync
        .routes(routes!(sync::records))
        .routes(routes!(sync::put_list, sync::delete_list))
        .routes(routes!(sync::status))
        .routes(routes!(sync_device::pull, sync_device::push))
        .routes(routes!(sync_device::snapshot));
    openapi::document_cloud_features(routes.get_openapi_mut());
    routes.route_layer(axum::Extension(CloudFeature))
}
