#!/usr/bin/env bash
# Load generators of the benchmarks, cached: wrk (Debian) for closed-loop load at a fixed
# concurrency, vegeta (Go module) for open-loop load at a fixed request rate.
# Prints the directory that holds vegeta on its last line.
set -euo pipefail
VEGETA_VERSION=${VEGETA_VERSION:-v12.13.0}
BIN="${RECO_CACHE:-$HOME/.cache/reco-engine}/bin"

if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "wrk is missing: install it (Debian: sudo apt-get install wrk) and run make bench again" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi

marker="$BIN/.vegeta-$VEGETA_VERSION"
if [ ! -f "$marker" ]; then
  command -v go >/dev/null || { echo "vegeta needs Go (>= 1.22) to build: install Go" >&2; exit 1; }
  mkdir -p "$BIN"
  GOBIN="$BIN" go install "github.com/tsenart/vegeta/v12@$VEGETA_VERSION"
  rm -f "$BIN"/.vegeta-*
  touch "$marker"
fi
echo "$BIN"
