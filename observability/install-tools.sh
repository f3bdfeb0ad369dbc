#!/usr/bin/env bash
# Installs promtool (Debian 12's `prometheus` package) for tests/observability.
# Idempotent: does nothing when promtool is already on PATH. Needs root or sudo on Debian/Ubuntu.
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-tools: promtool is missing and this is not a Debian-like system;" >&2
  echo "install Prometheus (it ships promtool) and put promtool on PATH" >&2
  exit 1
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi

echo "install-tools: installing promtool (Debian package prometheus)"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# --no-install-recommends: promtool only, not node-exporter, smartmontools and the web UI libs.
$sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# The package enables a prometheus service where systemd runs; the tests start none.
promtool --version | head -n 1
