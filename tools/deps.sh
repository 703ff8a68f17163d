#!/bin/sh
# Install the Debian packages Luar needs to build and test, only those missing.
# Idempotent and quiet when everything is present. Usage: tools/deps.sh [bench]
set -e
pkgs="build-essential cmake pkg-config libuv1-dev libhttp-parser-dev liblua5.4-dev lua5.4
      lua-cjson lua-cjson-dev lua-busted libssl-dev openssl libcurl4-openssl-dev
      libsqlite3-dev libhiredis-dev python3 curl ca-certificates"
[ "$1" = bench ] && pkgs="$pkgs wrk nginx-light"
missing=""
for p in $pkgs; do
    s=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$s" in *"install ok installed"*) ;; *) missing="$missing $p" ;; esac
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing"
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
