# Sourced by services.sh: TLS on this machine as production has it, for development and
# tests. One development CA per machine, kept by root (like mkcert's CA, but shared by every
# user and checkout, as the broker whose certificate it signs is the machine's), a
# certificate for the service in .local/tls of this checkout, and RabbitMQ's TLS listener on
# 5671 with a certificate of its own. Every certificate is for this machine's loopback names
# only (localhost, 127.0.0.1, ::1).

DEV_CA_DIR="${MYSCANNER_DEV_CA_DIR:-/var/lib/myscanner/dev-ca}"
LOCAL_TLS=.local/tls
BROKER_TLS_PORT=5671
BROKER_TLS_DIR=/etc/rabbitmq/myscanner-tls
BROKER_TLS_CONF=/etc/rabbitmq/conf.d/60-myscanner-tls.conf

# Runs a command, showing what it printed only when it failed (openssl chatters on stderr).
quietly() {
    local out
    out=$("$@" 2>&1) || { printf '%s\n' "$out" >&2; return 1; }
}

ensure_dev_ca() {
    as_root test -s "$DEV_CA_DIR/ca.key" && as_root test -s "$DEV_CA_DIR/ca.pem" && return 0
    log "making this machine's development CA in $DEV_CA_DIR"
    as_root mkdir -p "$DEV_CA_DIR"
    as_root chmod 755 "$DEV_CA_DIR"
    quietly as_root sh -c 'umask 077 && exec "$@"' sh \
        openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -sha256 -days 3650 \
        -subj "/CN=MyScanner development CA ($(hostname))" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$DEV_CA_DIR/ca.key" -out "$DEV_CA_DIR/ca.pem"
    as_root chmod 644 "$DEV_CA_DIR/ca.pem"
}

# Whether DIR/NAME.pem is signed by the development CA and good for another 30 days.
dev_certificate_current() { # name dir
    local pem="$2/$1.pem"
    as_root test -s "$pem" \
        && as_root openssl verify -CAfile "$DEV_CA_DIR/ca.pem" "$pem" >/dev/null 2>&1 \
        && as_root openssl x509 -checkend 2592000 -noout -in "$pem" >/dev/null
}

# Issues a server certificate for the loopback names, signed by the development CA, and
# installs it as DIR/NAME.pem and DIR/NAME.key with the given owner, group and key mode.
issue_dev_certificate() { # name dir owner group key-mode
    local name=$1 dir=$2 staging
    staging=$(mktemp -d)
    printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >"$staging/extensions"
    (umask 077 && quietly openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
        -subj "/CN=$name (MyScanner development)" -keyout "$staging/key" -out "$staging/csr")
    # The CA's key is root's: only the signing runs as root.
    quietly as_root openssl x509 -req -sha256 -days 825 -in "$staging/csr" -CA "$DEV_CA_DIR/ca.pem" \
        -CAkey "$DEV_CA_DIR/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
        -extfile "$staging/extensions" -out "$staging/cert"
    as_root install -m 0644 -o "$3" -g "$4" "$staging/cert" "$dir/$name.pem"
    as_root install -m "$5" -o "$3" -g "$4" "$staging/key" "$dir/$name.key"
    as_root rm -rf "$staging"
}

# The development CA and, in .local/tls, its certificate (what demo scanners and tests pin)
# and the service's certificate, both the invoking user's.
ensure_dev_tls() {
    command -v openssl >/dev/null || apt_install openssl
    ensure_dev_ca
    mkdir -p "$LOCAL_TLS"
    cp "$DEV_CA_DIR/ca.pem" "$LOCAL_TLS/ca.pem"
    if ! dev_certificate_current service "$LOCAL_TLS"; then
        log "issuing the service's development certificate ($LOCAL_TLS/service.pem)"
        issue_dev_certificate service "$LOCAL_TLS" "$(id -u)" "$(id -g)" 0600
    fi
}

# RabbitMQ's own TLS listener on 127.0.0.1:5671, added beside whatever configuration the
# broker has (a file of ours in conf.d). The broker is restarted when that file or its
# certificate changed, or when the listener is not up.
ensure_broker_tls() {
    if [ ! -f "$BROKER_TLS_CONF" ] && port_open 127.0.0.1 "$BROKER_TLS_PORT"; then
        log "RabbitMQ already listens for TLS on $BROKER_TLS_PORT, configured elsewhere: left as it is"
        return 0
    fi
    local changed=
    as_root mkdir -p "$BROKER_TLS_DIR" "$(dirname "$BROKER_TLS_CONF")"
    if ! dev_certificate_current broker "$BROKER_TLS_DIR" || ! as_root cmp -s "$DEV_CA_DIR/ca.pem" "$BROKER_TLS_DIR/ca.pem"; then
        log "issuing RabbitMQ's development certificate ($BROKER_TLS_DIR)"
        as_root install -m 0644 "$DEV_CA_DIR/ca.pem" "$BROKER_TLS_DIR/ca.pem"
        issue_dev_certificate broker "$BROKER_TLS_DIR" root rabbitmq 0640
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
    if ! wait_for_port 127.0.0.1 "$BROKER_TLS_PORT" "RabbitMQ's TLS listener" 60; then
        echo "RabbitMQ runs but did not open its TLS listener: see $BROKER_TLS_CONF and its log in /var/log/rabbitmq/" >&2
        return 1
    fi
    wait_for_port 127.0.0.1 15672 "RabbitMQ management API" 60
}
