#!/usr/bin/env bash
# Runs the whole test suite against real PostgreSQL and RabbitMQ, installing and starting
# them if needed: formatting and lint checks, then every test of the workspace. Each test
# creates its own database (myscanner_test_*), so tests run in parallel.

set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/scripts/services.sh

ensure_services

# The test role may create databases; databases left by earlier runs are dropped first.
export MYSCANNER_TEST_DATABASE_URL="${MYSCANNER_TEST_DATABASE_URL:-postgres://${DB_ROLE}:${DB_PASSWORD}@${PG_HOST}:${PG_PORT}/postgres}"
for db in $(pg_super -c "SELECT datname FROM pg_database WHERE datname LIKE 'myscanner\_test\_%'"); do
    pg_super -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null
done

# Likewise broker vhosts and device users left by earlier runs.
for vhost in $(rabbit_api GET '/vhosts?columns=name' | grep -o '"myscanner_test_[0-9a-f]*"' | tr -d '"'); do
    rabbit_api DELETE "/vhosts/$vhost" >/dev/null
done
for user in $(rabbit_api GET '/users?columns=name' | grep -o '"test-[0-9a-f-]*"' | tr -d '"'); do
    rabbit_api DELETE "/users/$user" >/dev/null
done

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "cargo test"
cargo test --workspace --locked "$@"
