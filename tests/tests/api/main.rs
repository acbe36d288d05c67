//! End-to-end tests of MyScanner Cloud against a real PostgreSQL: every test spawns the
//! service on its own database. One test binary, so everything links once.

mod api_tokens;
mod asyncapi;
mod auth;
mod conventions;
mod deploy;
mod devices;
mod ingest;
mod measurements;
mod metrics;
mod migrations;
mod netns;
mod openapi;
mod permissions;
mod remote;
mod replicas;
mod security;
mod subscriptions;
mod sync;
mod tenancy;
mod tls;
mod web;
