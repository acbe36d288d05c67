# Sourced by deploy/scripts/*.sh: makes sure PostgreSQL and RabbitMQ are installed (from
# Debian's packages), running, and that the development role and database exist, and that
# TLS is set up as production has it (dev-tls.sh). Reuses whatever already runs; changes
# nothing it does not need to.

set -euo pipefail

DB_ROLE=myscanner
DB_PASSWORD=myscanner # development only; production refuses this URL
PG_HOST=127.0.0.1
PG_PORT=5432
export MYSCANNER_DEV_DATABASE_URL="postgres://${DB_ROLE}:${DB_PASSWORD}@${PG_HOST}:${PG_PORT}/myscanner"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
    log "installing $* from Debian's packages"
    if [ -z "${APT_UPDATED:-}" ]; then
        as_root apt-get update -qq
        APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_for_port() { # host port what seconds
    local i
    for ((i = 0; i < $4 * 2; i++)); do
        port_open "$1" "$2" && return 0
        sleep 0.5
    done
    echo "$3 did not come up on $1:$2 within $4 s" >&2
    return 1
}

# psql as a superuser: over TCP where trust allows it, else as the postgres system user
# (peer authentication, the default of a fresh Debian install).
pg_super() {
    if psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -tAqc 'SELECT 1' >/dev/null 2>&1; then
        psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -tAq "$@"
    else
        as_root runuser -u postgres -- psql -p "$PG_PORT" -d postgres -v ON_ERROR_STOP=1 -tAq "$@"
    fi
}

ensure_postgres() {
    command -v pg_ctlcluster >/dev/null || apt_install postgresql postgresql-client
    if ! port_open "$PG_HOST" "$PG_PORT"; then
        local version
        version=$(ls /etc/postgresql | sort -V | tail -n 1)
        log "starting PostgreSQL $version"
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
        wait_for_port "$PG_HOST" "$PG_PORT" PostgreSQL 60
    fi
    if [ "$(pg_super -c "SELECT 1 FROM pg_roles WHERE rolname = '$DB_ROLE'")" != 1 ]; then
        log "creating database role $DB_ROLE"
        pg_super -c "CREATE ROLE $DB_ROLE LOGIN CREATEDB PASSWORD '$DB_PASSWORD'"
    fi
    if [ "$(pg_super -c "SELECT 1 FROM pg_database WHERE datname = 'myscanner'")" != 1 ]; then
        log "creating database myscanner"
        pg_super -c "CREATE DATABASE myscanner OWNER $DB_ROLE"
    fi
}

# The service manages per-device broker users through the management API (port 15672).
ensure_rabbitmq() {
    command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
    if ! port_open 127.0.0.1 5672; then
        log "starting RabbitMQ"
        as_root rabbitmq-server -detached
        wait_for_port 127.0.0.1 5672 RabbitMQ 120
    fi
    if ! port_open 127.0.0.1 15672; then
        log "enabling the RabbitMQ management plugin"
        as_root rabbitmq-plugins enable --quiet rabbitmq_management >/dev/null
        wait_for_port 127.0.0.1 15672 "RabbitMQ management API" 60
    fi
}

# RabbitMQ's management API with the guest account (loopback only).
rabbit_api() { # method path [curl args...]
    local method=$1 path=$2
    shift 2
    curl -fsS -u guest:guest -X "$method" "http://127.0.0.1:15672/api$path" "$@"
}

# Databases, broker vhosts and device users that tests and benchmarks left behind when
# interrupted (each run makes its own, named myscanner_test_*, and drops them at its end).
drop_test_leftovers() {
    for db in $(pg_super -c "SELECT datname FROM pg_database WHERE datname LIKE 'myscanner\_test\_%'"); do
        pg_super -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null
    done
    for vhost in $(rabbit_api GET '/vhosts?columns=name' | grep -o '"myscanner_test_[0-9a-f]*"' | tr -d '"'); do
        rabbit_api DELETE "/vhosts/$vhost" >/dev/null
    done
    for user in $(rabbit_api GET '/users?columns=name' | grep -o '"test-[0-9a-f-]*"' | tr -d '"'); do
        rabbit_api DELETE "/users/$user" >/dev/null
    done
}

# The tests of several replicas put HAProxy in front of them, as a deployment at scale does.
ensure_haproxy() {
    [ -x /usr/sbin/haproxy ] || apt_install haproxy
}

source "$(dirname "${BASH_SOURCE[0]}")/dev-tls.sh"

ensure_services() {
    command -v curl >/dev/null || apt_install curl
    command -v ip >/dev/null || apt_install iproute2
    # The IEEE OUI registry names the vendors of MAC addresses internal scans find.
    [ -f /usr/share/ieee-data/oui.txt ] || apt_install ieee-data || log "ieee-data unavailable: found hosts get no vendor names"
    ensure_postgres
    ensure_rabbitmq
    ensure_dev_tls
    ensure_broker_tls
}
