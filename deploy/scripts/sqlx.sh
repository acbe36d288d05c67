#!/usr/bin/env bash
# The service's static SQL is written with sqlx's query!/query_as! macros, which check each
# statement against the migrated schema while compiling. Builds do not need a database:
# they read what the macros recorded in backend/.sqlx (committed; .cargo/config.toml sets
# SQLX_OFFLINE). This script records it again from a freshly migrated database.
#
#   deploy/scripts/sqlx.sh prepare   rewrite backend/.sqlx (run after changing a statement
#                                    or a migration, and commit the result)
#   deploy/scripts/sqlx.sh check     fail if backend/.sqlx is not what prepare would write
#                                    (the test command runs this)
#
# No sqlx-cli is needed: the macros themselves write their data when built online with
# SQLX_OFFLINE_DIR set. On stable Rust they cannot tell cargo that they read a database, so
# the crate is touched to make cargo expand them again.

set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/scripts/services.sh

mode=${1:-}
case "$mode" in prepare | check) ;; *)
    echo "usage: $0 prepare|check" >&2
    exit 2
    ;;
esac

ensure_postgres
export PGOPTIONS="-c client_min_messages=warning"

# A database of its own, migrated from scratch with psql (building the service to migrate
# would need the very data this script writes).
schema_db=myscanner_sqlx_schema
pg_super -c "DROP DATABASE IF EXISTS $schema_db WITH (FORCE)" >/dev/null
pg_super -c "CREATE DATABASE $schema_db OWNER $DB_ROLE" >/dev/null
schema_url="postgres://${DB_ROLE}:${DB_PASSWORD}@${PG_HOST}:${PG_PORT}/$schema_db"
for migration in migrations/*.sql; do
    psql "$schema_url" -v ON_ERROR_STOP=1 -q -1 -f "$migration" >/dev/null
done

written=$(mktemp -d)
trap 'rm -rf "$written"; pg_super -c "DROP DATABASE IF EXISTS $schema_db WITH (FORCE)" >/dev/null' EXIT

log "sqlx: checking every static statement against the migrated schema"
touch backend/src/lib.rs
SQLX_OFFLINE=false DATABASE_URL="$schema_url" SQLX_OFFLINE_DIR="$written" \
    cargo check -p myscanner --all-targets --locked --quiet

if [ "$mode" = prepare ]; then
    rm -rf backend/.sqlx
    mkdir -p backend/.sqlx
    cp "$written"/query-*.json backend/.sqlx/
    log "sqlx: backend/.sqlx holds $(ls backend/.sqlx | wc -l) statements"
elif ! diff -r -q backend/.sqlx "$written" >&2; then
    echo "backend/.sqlx is stale: run deploy/scripts/sqlx.sh prepare and commit the result" >&2
    exit 1
fi
