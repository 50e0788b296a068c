#!/usr/bin/env bash
# Build KEDA itself (its operator and its metrics apiserver, the "adapter") from the Go module
# proxy into a cache outside the repo, for the operator tests' KEDA closed loop:
# tests/support/keda.py runs both as local processes against the suite's control plane.
#
# Usage: tools/install-keda.sh     build what is missing (idempotent; ~12 min cold on 2 cores)
# Prints one KEY=VALUE line per binary on stdout (keda-operator=<file>, keda-adapter=<file>)
# and crds=<dir> (every CRD of the release). Progress goes to stderr.
#
# Why built and not downloaded: the machines that run the suite reach the Go module proxy but
# no release download site. `go install` refuses the module (its go.mod has a replace
# directive), so the module's source is copied out of the module cache and built there with
# -mod=mod. v2.21.0 is the newest release whose go.mod Go 1.26 accepts (v2.21.1 says go 1.27.4).
# Source: github.com/kedacore/keda/v2 (Apache-2.0; the licence is copied next to the binaries).
set -euo pipefail

KEDA_VERSION="${KEDA_VERSION:-v2.21.0}"
module=github.com/kedacore/keda/v2
cache_root="${RECO_CACHE:-$HOME/.cache/reco-engine}"
home="$cache_root/keda-$KEDA_VERSION"
bin="$home/bin"
nice_cmd=(nice -n 10)
export GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:-}"

log() { echo "install-keda: $*" >&2; }

if ! command -v go >/dev/null 2>&1; then
    log "'go' not found; install Go >= 1.26 (https://go.dev/dl or Debian's golang) and run again"
    exit 1
fi
mkdir -p "$bin"
exec 9>"$home/.lock"
flock 9

if [[ ! -x "$bin/keda-operator" || ! -x "$bin/keda-adapter" || ! -d "$home/crds-all" ]]; then
    log "fetching $module@$KEDA_VERSION from the Go module proxy"
    dir="$(go mod download -json "$module@$KEDA_VERSION" \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
    src="$home/src"
    rm -rf "$src"
    cp -r "$dir" "$src"
    chmod -R u+w "$src"
    # Without the version stamp the binaries report "main" as KEDA's version.
    ld="-s -w -X=$module/version.Version=${KEDA_VERSION#v}"
    (
        cd "$src"
        export CGO_ENABLED=0 GOFLAGS=-mod=mod
        log "downloading the modules KEDA needs"
        go mod download
        # The operator compiles every scaler's SDK (AWS, Azure, GCP, ...): most of the time.
        if [[ ! -x "$bin/keda-operator" ]]; then
            log "building the KEDA operator $KEDA_VERSION (the long part)"
            start=$SECONDS
            "${nice_cmd[@]}" go build -trimpath -ldflags "$ld" -o "$bin/keda-operator.partial" ./cmd/operator
            mv -f "$bin/keda-operator.partial" "$bin/keda-operator"
            log "operator built in $((SECONDS - start)) s"
        fi
        if [[ ! -x "$bin/keda-adapter" ]]; then
            log "building the KEDA metrics apiserver (adapter) $KEDA_VERSION"
            start=$SECONDS
            "${nice_cmd[@]}" go build -trimpath -ldflags "$ld" -o "$bin/keda-adapter.partial" ./cmd/adapter
            mv -f "$bin/keda-adapter.partial" "$bin/keda-adapter"
            log "adapter built in $((SECONDS - start)) s"
        fi
    )
    rm -rf "$home/crds-all"
    cp -r "$src/config/crd/bases" "$home/crds-all"
    cp "$src/LICENSE" "$bin/LICENSE"
    rm -rf "$src"
fi

echo "keda-operator=$bin/keda-operator"
echo "keda-adapter=$bin/keda-adapter"
echo "crds=$home/crds-all"
