#!/usr/bin/env bash
# Fetch KEDA's CustomResourceDefinitions (ScaledObject, TriggerAuthentication) from the Go
# module proxy into a cache outside the repo, for the operator tests: with them installed on
# the suite's API server, the ScaledObjects the operator emits are validated by KEDA's own
# schema, and provider Auto finds KEDA. Nothing here builds or runs KEDA itself.
#
# Usage: tools/install-keda-crds.sh     fetch what is missing (idempotent; a few seconds)
# Prints one KEY=VALUE line per CRD file on stdout, e.g. scaledobjects=<file>.
#
# Source: github.com/kedacore/keda/v2 at KEDA_VERSION, config/crd/bases/ (Apache-2.0; the
# licence is copied next to the files). `go mod download` verifies the module against the
# checksum database, as any Go build would.
set -euo pipefail

KEDA_VERSION="${KEDA_VERSION:-v2.21.0}"
cache_root="${RECO_CACHE:-$HOME/.cache/reco-engine}"
out="$cache_root/keda-$KEDA_VERSION/crds"
export GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:-}"

log() { echo "install-keda-crds: $*" >&2; }

files=(keda.sh_scaledobjects.yaml keda.sh_triggerauthentications.yaml)
if [[ ! -f "$out/LICENSE" ]]; then
    if ! command -v go >/dev/null 2>&1; then
        log "'go' not found; install Go >= 1.26 and run again"
        exit 1
    fi
    log "fetching github.com/kedacore/keda/v2@$KEDA_VERSION from the Go module proxy"
    dir="$(go mod download -json "github.com/kedacore/keda/v2@$KEDA_VERSION" \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')"
    tmp="$(mktemp -d "$cache_root/.keda-XXXXXX")"
    for f in "${files[@]}"; do
        cp "$dir/config/crd/bases/$f" "$tmp/$f"
    done
    cp "$dir/LICENSE" "$tmp/LICENSE"
    chmod -R u+w "$tmp"
    mkdir -p "$(dirname "$out")"
    rm -rf "$out"
    mv "$tmp" "$out"
fi
echo "scaledobjects=$out/keda.sh_scaledobjects.yaml"
echo "triggerauthentications=$out/keda.sh_triggerauthentications.yaml"
