# Sourced by run.sh and test.sh: the web dashboard's toolchain and build. Node.js and npm
# (from Debian's packages when missing), the app's packages with `npm ci` when
# package-lock.json changed, and `npm run build` when any source is newer than the build.
# Nothing downloads a browser: the tests drive Debian's Chromium (ensure_chromium).

WEB_DIR=web

ensure_node() {
    command -v npm >/dev/null || apt_install nodejs npm
}

ensure_web_packages() {
    ensure_node
    local stamp=$WEB_DIR/node_modules/.package-lock.json
    if [ ! -f "$stamp" ] || [ "$WEB_DIR/package-lock.json" -nt "$stamp" ]; then
        log "installing the web app's packages (npm ci)"
        (cd "$WEB_DIR" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
    fi
}

# Builds web/dist when it is missing or older than anything it is built from.
ensure_web_build() {
    ensure_web_packages
    local index=$WEB_DIR/dist/index.html
    if [ ! -f "$index" ] || [ -n "$(find "$WEB_DIR/src" "$WEB_DIR/public" "$WEB_DIR/index.html" \
        "$WEB_DIR/package-lock.json" "$WEB_DIR/vite.config.ts" "$WEB_DIR/svelte.config.js" \
        -newer "$index" -print -quit)" ]; then
        log "building the web dashboard (npm run build)"
        (cd "$WEB_DIR" && npm run --silent build >/dev/null)
    fi
}

# Debian's Chromium, which Playwright drives in the browser tests.
ensure_chromium() {
    command -v chromium >/dev/null || apt_install chromium
}

# What the browser tests drive besides Chromium: a real VNC server (TigerVNC's Xvnc) as the
# screen a remote-control session shows.
ensure_browser_tests() {
    ensure_chromium
    [ -x /usr/bin/Xvnc ] || apt_install tigervnc-standalone-server
}
