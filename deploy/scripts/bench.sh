#!/usr/bin/env bash
# Runs a benchmark of the harness in tests/ against the real services, each figure next
# to a baseline measured in the same run:
#
#   deploy/scripts/bench.sh ingest [--devices 20] [--measurements 50000] [--rounds 3]
#   deploy/scripts/bench.sh api [--measurements 1000000]
#   deploy/scripts/bench.sh security [--devices 100000] [--workers 8]   (nmap is the baseline)
#   deploy/scripts/bench.sh tunnel [--agents 1000] [--mib 512]
#   deploy/scripts/bench.sh sync [--scanners 50] [--changes 20] [--reference-scans 10000]
#   deploy/scripts/bench.sh web [--loads 20]                            (Chromium, the built app)

set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/scripts/services.sh
source deploy/scripts/web.sh

ensure_services
if [ "${1:-}" = web ]; then
    ensure_chromium
    ensure_web_build
fi
if [ "${1:-}" = security ] && ! command -v nmap >/dev/null; then
    apt_install nmap || log "nmap unavailable: the scan has no baseline"
fi
export MYSCANNER_TEST_DATABASE_URL="${MYSCANNER_TEST_DATABASE_URL:-postgres://${DB_ROLE}:${DB_PASSWORD}@${PG_HOST}:${PG_PORT}/postgres}"
# A benchmark measures on a clean broker and database: what earlier runs left goes first.
drop_test_leftovers
log "building (release)"
cargo build --release --locked -p myscanner -p myscanner-tests --bin myscanner --bin bench
exec target/release/bench "$@"
