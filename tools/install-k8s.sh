#!/usr/bin/env bash
# Build the Kubernetes test binaries from the Go module proxy into a cache outside the repo:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok (fake nodes on which pods
# become Running), helm 3 and skaffold. tests/support/kube.py starts them; nothing here runs them.
#
# Usage: tools/install-k8s.sh              build what is missing (idempotent; ~12 min cold)
# Prints one KEY=VALUE line per binary on stdout, e.g. kube-apiserver=/root/.cache/.../kube-apiserver,
# and kwok-stages=<file>. Progress goes to stderr.
#
# Why built and not downloaded: the machines that run the suite reach the Go module proxy but
# no release download site. k8s.io/kubernetes, etcd's server and skaffold refuse `go install`
# (replace directives in their go.mod), so each is built from a wrapper module or a source copy.
# Versions are the ones verified together here: kube 1.37.2, etcd 3.6.16, kwok 0.8.0,
# helm 3.21.4 (skaffold calls `helm version --client`, which helm 4 refuses), skaffold 2.16.1.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
HELM_VERSION="${HELM_VERSION:-v3.21.4}"
SKAFFOLD_VERSION="${SKAFFOLD_VERSION:-v2.16.1}"

cache_root="${RECO_CACHE:-$HOME/.cache/reco-engine}"
bin="$cache_root/k8s-$K8S_VERSION/bin"
src="$cache_root/k8s-$K8S_VERSION/src"
nice_cmd=(nice -n 10)
export GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:-}"

log() { echo "install-k8s: $*" >&2; }

if ! command -v go >/dev/null 2>&1; then
    log "'go' not found; install Go >= 1.26 (https://go.dev/dl or Debian's golang) and run again"
    exit 1
fi
mkdir -p "$bin" "$src"
exec 9>"$cache_root/k8s-$K8S_VERSION/.lock"
flock 9

# Build into a temporary name and rename, so an interrupted build never leaves a binary that
# the next run would take as complete.
publish() { mv -f "$1.partial" "$1"; }

build_kubernetes() {
    local cmds=() c
    for c in kube-apiserver kube-controller-manager kube-scheduler; do
        [[ -x "$bin/$c" ]] || cmds+=("$c")
    done
    [[ ${#cmds[@]} -eq 0 ]] && return 0
    local w="$src/kubernetes" staging="v0.${K8S_VERSION#v1.}" minor
    minor="${K8S_VERSION#v1.}"
    minor="${minor%%.*}"
    mkdir -p "$w"
    (
        cd "$w"
        if [[ ! -f go.sum ]]; then
            rm -f go.mod
            local kdir
            kdir="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" \
                | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
            go mod init reco-engine-k8s-wrapper >/dev/null 2>&1
            go mod edit -go="$(awk '$1=="go"{print $2; exit}' "$kdir/go.mod")" \
                -require="k8s.io/kubernetes@$K8S_VERSION"
            local g m
            for g in $(awk '$1=="godebug" && $2!="("{print $2}' "$kdir/go.mod"); do
                go mod edit -godebug="$g"
            done
            # The release's go.mod points each k8s.io/* staging module at ./staging/...; the
            # published module of the same release (v0.MINOR.PATCH) is the same code.
            for m in $(awk '$2=="=>" && $3 ~ /^\.\/staging\//{print $1}' "$kdir/go.mod"); do
                go mod edit -replace="$m=$m@$staging"
            done
            go get "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION" \
                "k8s.io/kubernetes/cmd/kube-controller-manager@$K8S_VERSION" \
                "k8s.io/kubernetes/cmd/kube-scheduler@$K8S_VERSION"
        fi
        # Without the version stamps the binaries say v0.0.0-master, which kubectl and helm's
        # kubeVersion checks refuse.
        local ld="-s -w" p
        for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
            ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
            ld+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
        done
        for c in "${cmds[@]}"; do
            log "building $c $K8S_VERSION"
            "${nice_cmd[@]}" go build -trimpath -ldflags="$ld" -o "$bin/$c.partial" "k8s.io/kubernetes/cmd/$c"
            publish "$bin/$c"
        done
    )
}

build_etcd() {
    [[ -x "$bin/etcd" ]] && return 0
    local w="$src/etcd"
    mkdir -p "$w"
    (
        cd "$w"
        if [[ ! -f go.sum ]]; then
            rm -f go.mod
            go mod init reco-engine-etcd-wrapper >/dev/null 2>&1
            go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
        fi
        log "building etcd $ETCD_VERSION"
        "${nice_cmd[@]}" go build -trimpath -ldflags="-s -w" -o "$bin/etcd.partial" go.etcd.io/etcd/server/v3
        publish "$bin/etcd"
    )
}

build_kwok() {
    if [[ ! -x "$bin/kwok" ]]; then
        log "building kwok $KWOK_VERSION"
        local tmp="$src/kwok-gobin"
        GOBIN="$tmp" "${nice_cmd[@]}" go install -trimpath -ldflags="-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
        mv -f "$tmp/kwok" "$bin/kwok"
    fi
    # kwok 0.8 has no built-in stages: without --config it exits "no stages found". Take the
    # fast node and pod stages that ship in its module.
    [[ -s "$bin/kwok-stages.yaml" ]] && return 0
    local stages f
    stages="$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage"
    [[ -d "$stages" ]] || go mod download "sigs.k8s.io/kwok@$KWOK_VERSION"
    for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
        pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
        echo "---"
        cat "$stages/$f"
    done >"$bin/kwok-stages.yaml.partial"
    publish "$bin/kwok-stages.yaml"
}

build_helm() {
    [[ -x "$bin/helm" ]] && return 0
    log "building helm $HELM_VERSION"
    local tmp="$src/helm-gobin"
    GOBIN="$tmp" "${nice_cmd[@]}" go install -trimpath \
        -ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
        "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
    mv -f "$tmp/helm" "$bin/helm"
}

build_skaffold() {
    [[ -x "$bin/skaffold" ]] && return 0
    local module=github.com/GoogleContainerTools/skaffold/v2 w="$src/skaffold"
    local dir
    dir="$(go mod download -json "$module@$SKAFFOLD_VERSION" \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
    rm -rf "$w"
    cp -r "$dir" "$w"
    chmod -R u+w "$w"
    log "building skaffold $SKAFFOLD_VERSION"
    (
        cd "$w"
        local v=$module/pkg/skaffold/version
        CGO_ENABLED=0 GOFLAGS=-mod=mod "${nice_cmd[@]}" go build -trimpath \
            -tags "timetzdata osusergo netgo release" \
            -ldflags "-s -w -X $v.version=$SKAFFOLD_VERSION -X $v.buildDate=1970-01-01T00:00:00Z" \
            -o "$bin/skaffold.partial" ./cmd/skaffold
    )
    publish "$bin/skaffold"
    rm -rf "$w"
}

build_etcd
build_kubernetes
build_kwok
build_helm
build_skaffold

for name in etcd kube-apiserver kube-controller-manager kube-scheduler kwok helm skaffold; do
    echo "$name=$bin/$name"
done
echo "kwok-stages=$bin/kwok-stages.yaml"
