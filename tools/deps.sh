#!/bin/sh
# Install the Debian packages Luar needs to build and test, only those missing.
# Idempotent and quiet when everything is present. Usage: tools/deps.sh [test|bench]
# `test` also installs the npm test peers of tests/e2e (the croner reference for cron).
set -e
pkgs="build-essential cmake pkg-config libuv1-dev libhttp-parser-dev liblua5.4-dev lua5.4
      lua-cjson lua-cjson-dev lua-busted libssl-dev openssl libcurl4-openssl-dev
      libsqlite3-dev libhiredis-dev libcjose-dev libjansson-dev python3 curl ca-certificates
      tzdata"
[ "$1" = bench ] && pkgs="$pkgs wrk nginx-light"
# The Redis backend's tests start their own redis-server on a free port (never the
# package's service, which they neither need nor touch); TLS certificates come from openssl.
[ "$1" = test ] && pkgs="$pkgs redis-server redis-tools"
# The operations pages show the queue file through the sqlite3 shell; their samples run.
[ "$1" = test ] && pkgs="$pkgs sqlite3"
# promtool (Debian's prometheus package) checks the live /metrics and the shipped alert
# rules; the service it installs is neither started nor used.
[ "$1" = test ] && pkgs="$pkgs prometheus"
# The dashboard's browser test drives Debian's Chromium with playwright-core (npm).
[ "$1" = test ] && pkgs="$pkgs chromium"
# Node.js comes with most machine images; install Debian's only when there is none.
[ "$1" = test ] && ! command -v npm >/dev/null 2>&1 && pkgs="$pkgs nodejs npm"
missing=""
for p in $pkgs; do
    s=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$s" in *"install ok installed"*) ;; *) missing="$missing $p" ;; esac
done
install_npm_peers() {
    [ "$1" = test ] || return 0
    root=$(cd "$(dirname "$0")/.." && pwd)
    # Reinstall when the lock file changed since the last install.
    if ! cmp -s "$root/tests/e2e/package-lock.json" "$root/tests/e2e/node_modules/.luar-lock"; then
        echo "deps: npm ci in tests/e2e"
        npm ci --prefix "$root/tests/e2e" --no-audit --no-fund --loglevel=error >/dev/null
        cp "$root/tests/e2e/package-lock.json" "$root/tests/e2e/node_modules/.luar-lock"
    fi
}
if [ -z "$missing" ]; then
    install_npm_peers "$1"
    exit 0
fi
echo "deps: installing$missing"
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# Packages that ship a service (prometheus, redis-server) must not start it: the tests start
# what they need themselves. A policy-rc.d answering 101 says so to invoke-rc.d, as in
# Debian's container images; one already in place is left alone.
policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | $sudo tee $policy >/dev/null
    $sudo chmod 755 $policy
fi
rc=0
$sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null || rc=$?
if [ -n "$policy" ]; then
    $sudo rm -f $policy
fi
[ $rc = 0 ] || exit $rc
install_npm_peers "$1"
