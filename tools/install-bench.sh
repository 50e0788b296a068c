#!/usr/bin/env bash
# The load generator of the benchmarks: wrk (Debian package). Idempotent.
set -euo pipefail
if command -v wrk >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "wrk is missing: install it (Debian: sudo apt-get install wrk) and run make bench again" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
command -v wrk
