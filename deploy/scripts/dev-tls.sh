# Sourced by services.sh: TLS on this machine as production has it, for development and
# tests. One development CA per machine (like mkcert's: the broker is the machine's, shared
# by every checkout), a certificate for the service in .local/tls of this checkout, and
# RabbitMQ's TLS listener on 5671 with a certificate of its own. Every certificate is for
# this machine's loopback names only (localhost, 127.0.0.1, ::1).

DEV_CA_DIR="${MYSCANNER_DEV_CA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/myscanner/dev-ca}"
LOCAL_TLS=.local/tls
BROKER_TLS_PORT=5671
BROKER_TLS_DIR=/etc/rabbitmq/myscanner-tls
BROKER_TLS_CONF=/etc/rabbitmq/conf.d/60-myscanner-tls.conf

ensure_dev_ca() {
    [ -s "$DEV_CA_DIR/ca.pem" ] && [ -s "$DEV_CA_DIR/ca.key" ] && return 0
    log "making this machine's development CA in $DEV_CA_DIR"
    mkdir -p "$DEV_CA_DIR"
    chmod 700 "$DEV_CA_DIR"
    (
        umask 077
        openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -sha256 -days 3650 \
            -subj "/CN=MyScanner development CA ($(hostname))" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -keyout "$DEV_CA_DIR/ca.key" -out "$DEV_CA_DIR/ca.pem" 2>/dev/null
    )
    chmod 644 "$DEV_CA_DIR/ca.pem"
}

# Whether DIR/NAME.pem is signed by the development CA and good for another 30 days.
dev_certificate_current() { # name dir [command prefix]
    local pem="$2/$1.pem"
    ${3:-} test -s "$pem" \
        && ${3:-} openssl verify -CAfile "$DEV_CA_DIR/ca.pem" "$pem" >/dev/null 2>&1 \
        && ${3:-} openssl x509 -checkend 2592000 -noout -in "$pem" >/dev/null
}

# Writes DIR/NAME.pem and DIR/NAME.key: a server certificate for the loopback names, signed
# by the development CA.
issue_dev_certificate() { # name dir
    local name=$1 dir=$2 csr
    csr=$(mktemp)
    (
        umask 077
        openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
            -subj "/CN=$name (MyScanner development)" -keyout "$dir/$name.key" -out "$csr" 2>/dev/null
    )
    openssl x509 -req -sha256 -days 825 -in "$csr" -CA "$DEV_CA_DIR/ca.pem" -CAkey "$DEV_CA_DIR/ca.key" \
        -set_serial "0x$(openssl rand -hex 16)" -out "$dir/$name.pem" 2>/dev/null \
        -extfile <(printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" \
            "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth")
    rm -f "$csr"
}

# The development CA and, in .local/tls, its certificate (what demo scanners and tests pin)
# and the service's certificate.
ensure_dev_tls() {
    command -v openssl >/dev/null || apt_install openssl
    ensure_dev_ca
    mkdir -p "$LOCAL_TLS"
    cp "$DEV_CA_DIR/ca.pem" "$LOCAL_TLS/ca.pem"
    if ! dev_certificate_current service "$LOCAL_TLS"; then
        log "issuing the service's development certificate ($LOCAL_TLS/service.pem)"
        issue_dev_certificate service "$LOCAL_TLS"
    fi
}

# RabbitMQ's own TLS listener on 127.0.0.1:5671, added beside whatever configuration the
# broker has (a file of ours in conf.d); the broker is restarted only when it changed.
ensure_broker_tls() {
    if [ ! -f "$BROKER_TLS_CONF" ] && port_open 127.0.0.1 "$BROKER_TLS_PORT"; then
        log "RabbitMQ already listens for TLS on $BROKER_TLS_PORT, configured elsewhere: left as it is"
        return 0
    fi
    local changed= staging
    as_root mkdir -p "$BROKER_TLS_DIR" "$(dirname "$BROKER_TLS_CONF")"
    if ! dev_certificate_current broker "$BROKER_TLS_DIR" as_root \
        || ! as_root cmp -s "$DEV_CA_DIR/ca.pem" "$BROKER_TLS_DIR/ca.pem"; then
        log "issuing RabbitMQ's development certificate ($BROKER_TLS_DIR)"
        staging=$(mktemp -d)
        issue_dev_certificate broker "$staging"
        as_root install -m 0644 "$DEV_CA_DIR/ca.pem" "$BROKER_TLS_DIR/ca.pem"
        as_root install -m 0644 "$staging/broker.pem" "$BROKER_TLS_DIR/broker.pem"
        as_root install -m 0640 -g rabbitmq "$staging/broker.key" "$BROKER_TLS_DIR/broker.key"
        rm -rf "$staging"
        changed=1
    fi
    local wanted
    wanted=$(cat <<CONF
# Written by MyScanner's deploy/scripts (development): the TLS listener scanners use.
listeners.ssl.myscanner = 127.0.0.1:$BROKER_TLS_PORT
ssl_options.cacertfile = $BROKER_TLS_DIR/ca.pem
ssl_options.certfile = $BROKER_TLS_DIR/broker.pem
ssl_options.keyfile = $BROKER_TLS_DIR/broker.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
ssl_options.versions.1 = tlsv1.3
ssl_options.versions.2 = tlsv1.2
CONF
)
    if [ "$(as_root cat "$BROKER_TLS_CONF" 2>/dev/null)" != "$wanted" ]; then
        printf '%s\n' "$wanted" | as_root tee "$BROKER_TLS_CONF" >/dev/null
        changed=1
    fi
    if [ -n "$changed" ] || ! port_open 127.0.0.1 "$BROKER_TLS_PORT"; then
        restart_rabbitmq
    fi
}

restart_rabbitmq() {
    log "restarting RabbitMQ to open its TLS listener on $BROKER_TLS_PORT"
    if command -v systemctl >/dev/null && systemctl is-active --quiet rabbitmq-server 2>/dev/null; then
        as_root systemctl restart rabbitmq-server
    else
        as_root rabbitmqctl stop >/dev/null 2>&1 || true
        as_root rabbitmq-server -detached
    fi
    wait_for_port 127.0.0.1 5672 RabbitMQ 120
    wait_for_port 127.0.0.1 "$BROKER_TLS_PORT" "RabbitMQ's TLS listener" 60
    wait_for_port 127.0.0.1 15672 "RabbitMQ management API" 60
}
