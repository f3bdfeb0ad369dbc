#!/usr/bin/env bash
# Installs one tool from a Debian package when it is missing from PATH: `make tools` runs it
# for promtool (package prometheus, the observability tests) and redis-server (the gateways'
# shared rate limit, started by `bookify infra`). Idempotent; needs root or sudo.
# Usage: infra/install-debian-tool.sh <command> <package>
set -euo pipefail
command_name=$1
package=$2

if command -v "$command_name" >/dev/null 2>&1; then
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install: $command_name is missing and this is not a Debian-like system;" >&2
  echo "install the package that ships it ($package on Debian) and put it on PATH" >&2
  exit 1
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi

echo "install: $command_name (Debian package $package)"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# --no-install-recommends: the tool only (prometheus would bring node-exporter and more).
$sudo apt-get install -y -qq --no-install-recommends "$package" >/dev/null
# Where an init system runs, the package starts a system service of its own (redis on 6379,
# which `bookify infra` wants); Bookify starts its own processes, so stop and disable it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$package" 2>/dev/null; then
  $sudo systemctl disable --now "$package" >/dev/null 2>&1 || true
elif command -v service >/dev/null 2>&1; then
  $sudo service "$package" stop >/dev/null 2>&1 || true
fi
"$command_name" --version | head -n 1
