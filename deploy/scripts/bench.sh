#!/usr/bin/env bash
# Runs a benchmark of the harness in tests/ against the real services, each figure next
# to a baseline measured in the same run:
#
#   deploy/scripts/bench.sh ingest [--devices 20] [--measurements 50000]

set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/scripts/services.sh

ensure_services
export MYSCANNER_TEST_DATABASE_URL="${MYSCANNER_TEST_DATABASE_URL:-postgres://${DB_ROLE}:${DB_PASSWORD}@${PG_HOST}:${PG_PORT}/postgres}"
log "building (release)"
cargo build --release --locked -p myscanner -p myscanner-tests --bin myscanner --bin bench
exec target/release/bench "$@"
