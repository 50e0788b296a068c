#!/usr/bin/env bash
# make e2e-kind: the whole thing on a real cluster. A kind cluster, both images built and
# loaded into it, the Helm chart installed with the laptop values (Kafka, Redis,
# PostgreSQL, a RecoEngine "shop"), the RecoEngine Ready, events into ingest,
# recommendations out of the api, then `helm test`. Prints what it saw at each step.
#
# Needs a Docker engine, kind, kubectl and helm 3 on PATH (HELM=/path/to/helm to choose),
# and the network to pull kindest/node, apache/kafka, redis and postgres. The cluster is
# deleted on exit unless KEEP=1 (or unless it existed before: then it is reused and kept).
#
#   CLUSTER=reco NAMESPACE=reco KEEP=1 tools/e2e-kind.sh
set -euo pipefail

CLUSTER="${CLUSTER:-reco}"
NAMESPACE="${NAMESPACE:-reco}"
RELEASE="${RELEASE:-reco}"
TAG="${TAG:-e2e}"
KEEP="${KEEP:-0}"
HELM="${HELM:-helm}"
TIMEOUT="${TIMEOUT:-10m}"
API_PORT="${API_PORT:-18080}"
INGEST_PORT="${INGEST_PORT:-18081}"
# Names no registry serves, so that the kubelet can only use the images kind loaded.
ENGINE_IMAGE="reco-engine-e2e"
OPERATOR_IMAGE="reco-engine-operator-e2e"

cd "$(dirname "$0")/.."
step() { printf '\n==> %s\n' "$*"; }
fail() { echo "e2e-kind: $*" >&2; exit 1; }

for tool in docker kind kubectl "$HELM" curl python3; do
    command -v "$tool" >/dev/null 2>&1 || fail "needs $tool on PATH"
done
docker info >/dev/null 2>&1 || fail "needs a running Docker engine (docker info failed)"
"$HELM" version --short | grep -q '^v3\.' || fail "needs helm 3 ($HELM is $("$HELM" version --short))"

created=0
installing=0
forwards=()
cleanup() {
    local rc=$?
    for pid in "${forwards[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [[ $rc -ne 0 && $installing -eq 1 ]]; then
        echo "e2e-kind: failed; the state of the namespace:" >&2
        kubectl --context "kind-$CLUSTER" -n "$NAMESPACE" get reco,deploy,sts,pods 2>&1 >&2 || true
        kubectl --context "kind-$CLUSTER" -n "$NAMESPACE" describe reco 2>&1 | tail -30 >&2 || true
    fi
    if [[ $created -eq 1 && "$KEEP" != "1" ]]; then
        step "kind delete cluster --name $CLUSTER (KEEP=1 keeps it)"
        kind delete cluster --name "$CLUSTER"
    elif [[ $created -eq 1 ]]; then
        echo "kept: kind cluster $CLUSTER (kubectl --context kind-$CLUSTER ...; kind delete cluster --name $CLUSTER)"
    fi
    exit $rc
}
trap cleanup EXIT

if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    step "reusing the existing kind cluster $CLUSTER (kept afterwards)"
else
    step "kind create cluster --name $CLUSTER"
    kind create cluster --name "$CLUSTER" --wait 180s
    created=1
fi
kubectl config use-context "kind-$CLUSTER" >/dev/null
K=(kubectl --context "kind-$CLUSTER")

step "docker build: the engine and the operator ($TAG)"
docker build -f images/engine/Dockerfile -t "$ENGINE_IMAGE:$TAG" .
docker build -f images/operator/Dockerfile -t "$OPERATOR_IMAGE:$TAG" .

step "kind load docker-image"
kind load docker-image --name "$CLUSTER" "$ENGINE_IMAGE:$TAG" "$OPERATOR_IMAGE:$TAG"

step "helm upgrade --install $RELEASE charts/reco-engine (laptop values)"
installing=1
"$HELM" upgrade --install "$RELEASE" charts/reco-engine \
    --kube-context "kind-$CLUSTER" --namespace "$NAMESPACE" --create-namespace \
    -f charts/reco-engine/ci/laptop-values.yaml \
    --set "operator.image.repository=$OPERATOR_IMAGE,operator.image.tag=$TAG" \
    --set "recoEngine.spec.image.repository=$ENGINE_IMAGE,recoEngine.spec.image.tag=$TAG" \
    --set "recoEngine.spec.image.pullPolicy=Never" \
    --wait --timeout "$TIMEOUT"
"${K[@]}" -n "$NAMESPACE" get pods

step "waiting for the RecoEngine shop to be Ready"
"${K[@]}" -n "$NAMESPACE" wait reco/shop --for=condition=Ready --timeout="$TIMEOUT"
"${K[@]}" -n "$NAMESPACE" get reco shop

step "port-forward shop-ingest :$INGEST_PORT and shop-api :$API_PORT"
"${K[@]}" -n "$NAMESPACE" port-forward svc/shop-ingest "$INGEST_PORT:8081" >/dev/null 2>&1 &
forwards+=($!)
"${K[@]}" -n "$NAMESPACE" port-forward svc/shop-api "$API_PORT:8080" >/dev/null 2>&1 &
forwards+=($!)
for _ in $(seq 60); do
    curl -fsS "http://127.0.0.1:$API_PORT/health/ready" >/dev/null 2>&1 \
        && curl -fsS "http://127.0.0.1:$INGEST_PORT/health/ready" >/dev/null 2>&1 && break
    sleep 1
done

step "events in: alice views a tent and a stove; bob views the tent"
run="e2e-$(date +%s)"
curl -fsS -X POST "http://127.0.0.1:$INGEST_PORT/events" -H 'content-type: application/json' \
    -d "[{\"user_id\": \"$run-alice\", \"item_id\": \"$run-tent\", \"type\": \"view\"},
         {\"user_id\": \"$run-alice\", \"item_id\": \"$run-stove\", \"type\": \"view\"}]"
echo
curl -fsS -X POST "http://127.0.0.1:$INGEST_PORT/events" -H 'content-type: application/json' \
    -d "{\"user_id\": \"$run-bob\", \"item_id\": \"$run-tent\", \"type\": \"view\"}"
echo

step "recommendations out: bob's should name the stove, viewed together with the tent"
found=""
for _ in $(seq 60); do
    body="$(curl -fsS "http://127.0.0.1:$API_PORT/recommendations?user_id=$run-bob&count=5" || true)"
    if python3 -c 'import json, sys; items = json.loads(sys.argv[1])["items"]; sys.exit(0 if any(i["item_id"] == sys.argv[2] for i in items) else 1)' "$body" "$run-stove" 2>/dev/null; then
        found="$body"
        break
    fi
    sleep 1
done
[[ -n "$found" ]] || fail "bob was never recommended $run-stove; last answer: ${body:-none}"
python3 -m json.tool <<<"$found"

step "helm test $RELEASE (the chart's own check, in the cluster)"
"$HELM" test "$RELEASE" --kube-context "kind-$CLUSTER" --namespace "$NAMESPACE" --logs

step "e2e-kind passed: events in, recommendations out, on kind cluster $CLUSTER"
