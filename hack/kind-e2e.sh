#!/usr/bin/env bash
# The foundation flow on a kind cluster: build the runner image, load it, install the CRDs,
# run the operator against the cluster, and run a sharded LoadTest against a target Service
# inside the cluster. Where no Docker engine answers, it says why and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v docker >/dev/null 2>&1; then
  echo "kind-e2e: skipped: no docker client on this machine"; exit 0
fi
if ! docker info >/dev/null 2>&1; then
  echo "kind-e2e: skipped: the docker client cannot reach a Docker engine ($(docker info 2>&1 | grep -m1 -i error || echo 'no engine'))"
  exit 0
fi

CLUSTER=${KIND_CLUSTER:-assay-e2e}
KIND_VERSION=${KIND_VERSION:-v0.30.0}
IMAGE=assay/runner:e2e
GOBIN="${ASSAY_CACHE:-$HOME/.cache/assay}/kind-$KIND_VERSION"
if [ ! -x "$GOBIN/kind" ]; then
  echo "kind-e2e: building kind $KIND_VERSION"
  GOBIN="$GOBIN" go install "sigs.k8s.io/kind@$KIND_VERSION"
fi
KIND="$GOBIN/kind"
KUBECTL="$(bash hack/build-kube.sh)/kubectl"
export KUBECONFIG="$PWD/.assay/kind-kubeconfig"
mkdir -p .assay

cleanup() {
  [ -n "${OPERATOR_PID:-}" ] && kill "$OPERATOR_PID" 2>/dev/null || true
  [ -z "${KEEP_CLUSTER:-}" ] && "$KIND" delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
}
trap cleanup EXIT

"$KIND" get clusters 2>/dev/null | grep -qx "$CLUSTER" || "$KIND" create cluster --name "$CLUSTER" --wait 120s
docker build -t "$IMAGE" -f runner-image/Dockerfile .
"$KIND" load docker-image "$IMAGE" --name "$CLUSTER"
"$KUBECTL" apply --server-side -f crds/
"$KUBECTL" wait --for=condition=Established --timeout=60s -f crds/

NS=assay-e2e
"$KUBECTL" create namespace "$NS" --dry-run=client -o yaml | "$KUBECTL" apply -f -
# A target inside the cluster: the runner image's Python serving HTTP.
"$KUBECTL" -n "$NS" apply -f - <<YAML
apiVersion: v1
kind: Pod
metadata: {name: target, labels: {app: target}}
spec:
  containers:
    - name: http
      image: $IMAGE
      imagePullPolicy: Never
      command: ["python", "-m", "http.server", "8080"]
      ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: target}
spec: {selector: {app: target}, ports: [{port: 80, targetPort: 8080}]}
YAML
"$KUBECTL" -n "$NS" wait --for=condition=Ready pod/target --timeout=120s

ASSAY_RUNNER_IMAGE="$IMAGE" ASSAY_RUNNER_IMAGE_PULL_POLICY=Never \
  .venv/bin/python -m assay.operator --namespace "$NS" > .assay/kind-operator.log 2>&1 &
OPERATOR_PID=$!

"$KUBECTL" -n "$NS" delete loadtest kind-e2e --ignore-not-found
"$KUBECTL" -n "$NS" apply -f - <<YAML
apiVersion: assay.dev/v1alpha1
kind: LoadTest
metadata: {name: kind-e2e}
spec:
  shards: 2
  baseUrl: http://target.$NS.svc
  load: {users: 4, iterations: 5}
  flows: [{name: home, requests: [{url: /}]}]
YAML
for _ in $(seq 120); do
  phase=$("$KUBECTL" -n "$NS" get loadtest kind-e2e -o jsonpath='{.status.phase}')
  case "$phase" in Succeeded|Failed) break ;; esac
  sleep 2
done
"$KUBECTL" -n "$NS" get loadtest kind-e2e -o wide
requests=$("$KUBECTL" -n "$NS" get loadtest kind-e2e -o jsonpath='{.status.summary.requests}')
result=$("$KUBECTL" -n "$NS" get loadtest kind-e2e -o jsonpath='{.status.result}')
if [ "$phase" = Succeeded ] && [ "$result" = Passed ] && [ "$requests" = 20 ]; then
  echo "kind-e2e: passed (20 requests over 2 shards)"
else
  echo "kind-e2e: FAILED: phase=$phase result=$result requests=$requests"; cat .assay/kind-operator.log; exit 1
fi
