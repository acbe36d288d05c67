//! MyScanner Cloud: the backend a fleet of LVS and MPS scanners reports to.
//!
//! A guided tour:
//! - [`startup`]: builds the application from its [`config`] and serves it until shutdown;
//!   [`state`]: what every handler can reach.
//! - [`http`]: what every endpoint shares — the one error type, extractors, pagination, the
//!   one router listing every route, the OpenAPI document, middleware, health checks.
//! - [`auth`]: users, sessions (JWT), API tokens, device credentials, and the permission guard.
//! - [`workgroups`]: the tenants, their sites and their members.
//! - [`devices`]: scanners — provisioning, credentials, and the endpoints scanners call.
//! - [`measurements`]: the AMQP ingest consumer and the record of rejected messages.
//! - [`broker`]: RabbitMQ topology and per-device broker users.
//! - [`remote`]: remote control — scanners' tunnels, users' sessions across replicas, and
//!   their audit.
//! - [`security`]: Security Services — scan settings, the queue, the weekly schedule,
//!   the external scanner and its workers, the `security_scans` history.
//! - [`sync`]: reference-scan and load-list sync between the scanners of a site.
//! - [`subscriptions`]: the plan each workgroup's cloud features need, judged by the
//!   [`clock`] at each request.
//! - [`db`]: the PostgreSQL pool and migrations; [`telemetry`]: logging and request spans;
//!   [`metrics`]: Prometheus metrics, on a listener of their own.
//! - [`cli`] and [`admin`]: the `myscanner` command and its bootstrap commands.

pub mod admin;
pub mod auth;
pub mod broker;
pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod devices;
pub mod http;
pub mod measurements;
pub mod metrics;
pub mod remote;
pub mod security;
pub mod startup;
pub mod state;
pub mod subscriptions;
pub mod sync;
pub mod telemetry;
pub mod workgroups;
