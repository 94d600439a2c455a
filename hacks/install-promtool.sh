#!/usr/bin/env bash
# Installs promtool (Prometheus' rule checker), which the chart tests run on both charts' alerts and the seed
# dashboard's queries: from Debian's `prometheus` package (without its recommends; the package's service is not
# needed).
# Does nothing when `promtool` already runs.
set -euo pipefail

log() { printf '[install-promtool] %s\n' "$*" >&2; }

if command -v promtool >/dev/null 2>&1; then
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  log "promtool is missing and this is not a Debian-like system: install Prometheus' promtool and put it on PATH"
  exit 1
fi
log "apt-get install prometheus (for promtool)"
DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
command -v promtool >/dev/null || { log "promtool still missing"; exit 1; }
