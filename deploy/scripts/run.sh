#!/usr/bin/env bash
# Runs MyScanner Cloud on this machine: PostgreSQL and RabbitMQ (installed and started if
# needed), the database migrated, a platform operator and a demo workgroup bootstrapped,
# then the service (with the web dashboard, built from web/ when stale) and three simulated
# scanners uploading measurements, until Ctrl-C.
# Every scanner link is encrypted as in production: the service serves HTTPS and WSS,
# RabbitMQ takes AMQPS on 5671, and the scanners pin this machine's development CA
# (.local/tls/ca.pem; see dev-tls.sh).
# SCANNER_RATE sets the measurements per minute of each simulated scanner (default 6).
#
#   deploy/scripts/run.sh            # https://127.0.0.1:8443

set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/scripts/services.sh
source deploy/scripts/web.sh

ensure_services
ensure_web_build

log "building myscanner and myscanner-agent (release)"
cargo build --release --locked -p myscanner -p myscanner-agent
bin=target/release/myscanner
export MYSCANNER_DATABASE__URL="${MYSCANNER_DATABASE__URL:-$MYSCANNER_DEV_DATABASE_URL}"

# Development passwords are generated once and kept in .local/ (not committed).
mkdir -p .local
if [ ! -f .local/dev-credentials.env ]; then
    umask 077
    cat >.local/dev-credentials.env <<CREDS
OPERATOR_EMAIL=operator@myscanner.local
OPERATOR_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
DEMO_EMAIL=admin@demo.myscanner.local
DEMO_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
CREDS
fi
source .local/dev-credentials.env

# TLS everywhere a scanner connects: the service's certificate, and the broker's TLS
# listener as the address devices are given.
export MYSCANNER_SERVER__LISTEN="${MYSCANNER_SERVER__LISTEN:-127.0.0.1:8443}"
export MYSCANNER_SERVER__TLS__CERT_FILE="${MYSCANNER_SERVER__TLS__CERT_FILE:-$PWD/$LOCAL_TLS/service.pem}"
export MYSCANNER_SERVER__TLS__KEY_FILE="${MYSCANNER_SERVER__TLS__KEY_FILE:-$PWD/$LOCAL_TLS/service.key}"
export MYSCANNER_SERVER__WEB_DIR="${MYSCANNER_SERVER__WEB_DIR:-$PWD/web/dist}"
export MYSCANNER_BROKER__DEVICE_URL="${MYSCANNER_BROKER__DEVICE_URL:-amqps://127.0.0.1:$BROKER_TLS_PORT/%2f}"
# Where to reach it: a service listening on every interface is reached on loopback, the
# name its development certificate is for.
listen=${MYSCANNER_SERVER__LISTEN/0.0.0.0/127.0.0.1}
ca=$LOCAL_TLS/ca.pem

log "migrating and bootstrapping"
"$bin" migrate
MYSCANNER_OPERATOR_PASSWORD="$OPERATOR_PASSWORD" "$bin" admin create-operator --email "$OPERATOR_EMAIL" >/dev/null
MYSCANNER_DEMO_PASSWORD="$DEMO_PASSWORD" "$bin" admin demo --devices-dir .local/devices \
    --api-url "https://$listen" --ca-file "$ca"

cat <<EOT

  MyScanner Cloud is starting on https://$listen
    (certificate from this machine's development CA: $ca — trust it, or pass --cacert to curl)
    Dashboard:         https://$listen/   (sign in with an account below; a browser that does
                       not trust $ca shows a certificate warning first)
    API document:      https://$listen/api/v1/openapi.json
    Sign in:           curl -s --cacert $ca https://$listen/api/v1/auth/login -H 'content-type: application/json' \\
                         -d '{"email":"$DEMO_EMAIL","password":"$DEMO_PASSWORD"}'
    Demo workgroup admin: $DEMO_EMAIL / $DEMO_PASSWORD
    Platform operator:    $OPERATOR_EMAIL / $OPERATOR_PASSWORD
    Demo device credentials: .local/devices/*.toml
    Simulated scanners: ${SCANNER_RATE:-6} measurements a minute each over AMQPS (outboxes in .local/outbox/),
                        HTTPS and WSS, pinning $ca
  (these passwords live in .local/dev-credentials.env)

EOT
# The demo scanners' screen for remote control: a VNC server on 127.0.0.1:5900 (where the
# agents' remote_control_target points by default), when TigerVNC's Xvnc is installed.
screen=
if [ -x /usr/bin/Xvnc ] && ! port_open 127.0.0.1 5900; then
    display=$(for n in $(seq 50 99); do [ -e /tmp/.X11-unix/X$n ] || [ -e /tmp/.X$n-lock ] || { echo $n; break; }; done)
    /usr/bin/Xvnc ":$display" -rfbport 5900 -localhost -SecurityTypes None -nolisten tcp -geometry 1024x768 -depth 24 -wr \
        >/dev/null 2>&1 &
    screen=$!
    log "the demo scanners' screen: Xvnc :$display on 127.0.0.1:5900"
elif [ ! -x /usr/bin/Xvnc ]; then
    log "no VNC server (apt-get install tigervnc-standalone-server): remote control connects, then finds no screen"
fi

"$bin" serve &
service=$!
scanners=
trap 'kill $scanners $service $screen 2>/dev/null; wait' EXIT INT TERM
for _ in $(seq 1 100); do
    curl -fsS --cacert "$ca" "https://$listen/readyz" >/dev/null 2>&1 && break
    sleep 0.2
done
target/release/myscanner-agent simulate --devices-dir .local/devices --rate "${SCANNER_RATE:-6}" &
scanners=$!
wait $service
