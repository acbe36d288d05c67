#!/usr/bin/env bash
# Runs the whole test suite against real PostgreSQL and RabbitMQ, installing and starting
# them if needed (and Chromium, TigerVNC's Xvnc, HAProxy, Node.js's packages and the web dashboard's build): formatting,
# the freshness of the SQL checked at compile time (sqlx.sh check),
# lint and type checks, then every test of the workspace, the browser tests of the dashboard
# among them (tests/tests/api/web.rs runs Playwright). Each test creates its own database
# (myscanner_test_*), so tests run in parallel.

set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/scripts/services.sh
source deploy/scripts/web.sh

ensure_services
ensure_haproxy
ensure_browser_tests
ensure_web_build

# The test role may create databases; what earlier runs left is dropped first.
export MYSCANNER_TEST_DATABASE_URL="${MYSCANNER_TEST_DATABASE_URL:-postgres://${DB_ROLE}:${DB_PASSWORD}@${PG_HOST}:${PG_PORT}/postgres}"
drop_test_leftovers

log "cargo fmt --check"
cargo fmt --all -- --check
deploy/scripts/sqlx.sh check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "web: type check (svelte-check)"
(cd web && npm run --silent check)
log "cargo test"
cargo test --workspace --locked "$@"
