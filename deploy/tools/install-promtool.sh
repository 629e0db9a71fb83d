#!/usr/bin/env bash
# Puts `promtool` (from Debian's `prometheus` package) at .venv/bin/promtool,
# for the tests that check deploy/prometheus/ (tests/unit/test_deploy.py).
#
# The package is downloaded and unpacked, not installed: installing it would
# also start a Prometheus daemon on :9090 on machines with an init system.
# `apt-get download` needs no root; `apt-get update` (only if the package is
# unknown) does, so it is tried only as root. Where apt is missing this exits 0
# saying so: the tests then skip with that reason, or fail under CI=true.
set -euo pipefail
cd "$(dirname "$0")/../.."
DEST=.venv/bin/promtool
if [ -x "$DEST" ] || command -v promtool >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
  echo "install-promtool: no apt-get/dpkg-deb here; install promtool (Prometheus) yourself" >&2
  exit 0
fi
if ! apt-cache show prometheus >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq >/dev/null
  else
    echo "install-promtool: apt does not know the prometheus package and we are not root to run apt-get update" >&2
    exit 0
  fi
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# as root, apt would drop to user _apt, who cannot write into our private
# temp dir, warn, and download as root anyway: say so up front
sandbox=()
[ "$(id -u)" = 0 ] && sandbox=(-o APT::Sandbox::User=root)
(cd "$tmp" && apt-get download -qq "${sandbox[@]}" prometheus >/dev/null)
dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
mkdir -p "$(dirname "$DEST")"
install -m 0755 "$tmp/x/usr/bin/promtool" "$DEST"
echo "install-promtool: $("$DEST" --version 2>&1 | head -1)"
