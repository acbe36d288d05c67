#!/usr/bin/env bash
# Runs the whole test suite against real PostgreSQL and RabbitMQ, installing and starting
# them if needed: formatting and lint checks, then every test of the workspace. Each test
# creates its own database (myscanner_test_*), so tests run in parallel.

set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/scripts/services.sh

ensure_services

# The test role may create databases; what earlier runs left is dropped first.
export MYSCANNER_TEST_DATABASE_URL="${MYSCANNER_TEST_DATABASE_URL:-postgres://${DB_ROLE}:${DB_PASSWORD}@${PG_HOST}:${PG_PORT}/postgres}"
drop_test_leftovers

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "cargo test"
cargo test --workspace --locked "$@"
