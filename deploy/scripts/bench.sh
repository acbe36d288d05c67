#!/usr/bin/env bash
# Runs a benchmark of the harness in tests/ against the real services, each figure next
# to a baseline measured in the same run:
#
#   deploy/scripts/bench.sh ingest [--devices 20] [--measurements 50000]
#   deploy/scripts/bench.sh api [--measurements 1000000]
#   deploy/scripts/bench.sh security [--devices 100000] [--workers 4]   (nmap is the baseline)

set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/scripts/services.sh

ensure_services
if [ "${1:-}" = security ] && ! command -v nmap >/dev/null; then
    apt_install nmap || log "nmap unavailable: the scan has no baseline"
fi
export MYSCANNER_TEST_DATABASE_URL="${MYSCANNER_TEST_DATABASE_URL:-postgres://${DB_ROLE}:${DB_PASSWORD}@${PG_HOST}:${PG_PORT}/postgres}"
log "building (release)"
cargo build --release --locked -p myscanner -p myscanner-tests --bin myscanner --bin bench
exec target/release/bench "$@"
