#!/usr/bin/env bash
# Assay as users install it, on a kind cluster: the three images built and loaded, the Helm
# chart installed, the demo API running in the cluster, and the demo's checks: a sharded
# LoadTest whose counted requests match what the API received, a Monitor run that passes,
# and the XTC flow (token, list, run a copy) through the gateway.
# Where no Docker engine answers, it says why and exits 0.
#
#   bash hack/kind-e2e.sh                 # KEEP_CLUSTER=1 keeps the cluster afterwards
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v docker >/dev/null 2>&1; then
  echo "kind-e2e: skipped: no docker client on this machine"; exit 0
fi
if ! docker info >/dev/null 2>&1; then
  echo "kind-e2e: skipped: the docker client cannot reach a Docker engine ($(docker info 2>&1 | grep -m1 -i error || echo 'no engine'))"
  exit 0
fi

start=$(date +%s)
CLUSTER=${KIND_CLUSTER:-assay-e2e}
TAG=e2e
SYSTEM=assay-system
NS=assay-e2e
ORG=e2e
PORT=${E2E_GATEWAY_PORT:-18000}
PY=.venv/bin/python
KIND="$(bash hack/install-helm.sh --kind)/kind"
HELM="$(bash hack/install-helm.sh)/helm"
KUBECTL="$(bash hack/build-kube.sh)/kubectl"
export KUBECONFIG="$PWD/.assay/kind-kubeconfig"
mkdir -p .assay
LOGS=.assay/kind-e2e
mkdir -p "$LOGS"

say() { echo "kind-e2e: $*"; }
fail() {
  echo "kind-e2e: FAILED: $*" >&2
  "$KUBECTL" -n "$SYSTEM" logs deploy/assay-operator --tail=200 > "$LOGS/operator.log" 2>&1 || true
  "$KUBECTL" -n "$SYSTEM" logs deploy/assay-gateway --tail=200 > "$LOGS/gateway.log" 2>&1 || true
  "$KUBECTL" get pods -A -o wide >&2 || true
  echo "kind-e2e: operator and gateway logs in $LOGS/" >&2
  exit 1
}
json() { "$PY" -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
wait_for() {
  local seconds=$1 what=$2; shift 2
  for _ in $(seq "$seconds"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  fail "$what (waited ${seconds}s)"
}
cleanup() {
  [ -n "${FORWARD_PID:-}" ] && kill "$FORWARD_PID" 2>/dev/null || true
  [ -z "${KEEP_CLUSTER:-}" ] && "$KIND" delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
}
trap cleanup EXIT

say "cluster $CLUSTER"
"$KIND" get clusters 2>/dev/null | grep -qx "$CLUSTER" || "$KIND" create cluster --name "$CLUSTER" --wait 120s
"$KIND" get kubeconfig --name "$CLUSTER" > "$KUBECONFIG"
# The example Monitor's staging environment runs in region "local".
"$KUBECTL" label nodes --all topology.kubernetes.io/region=local --overwrite >/dev/null

say "building and loading the images"
for target in runner operator gateway; do
  docker build -q -f runner-image/Dockerfile --target "$target" -t "assay/$target:$TAG" . >/dev/null
  "$KIND" load docker-image "assay/$target:$TAG" --name "$CLUSTER" >/dev/null
done

say "helm install"
"$HELM" upgrade --install assay charts/assay --namespace "$SYSTEM" --create-namespace --wait --timeout 5m \
  --set operator.image.tag=$TAG --set gateway.image.tag=$TAG --set runner.image.tag=$TAG \
  --set image.pullPolicy=Never --set runner.pullPolicy=Never \
  --set gateway.persistence.size=1Gi

say "the demo API in namespace $NS"
"$KUBECTL" create namespace "$NS" --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
"$KUBECTL" label namespace "$NS" assay.dev/org=$ORG --overwrite >/dev/null
"$KUBECTL" -n "$NS" create configmap demo-api --from-file=hack/demo_api.py --dry-run=client -o yaml \
  | "$KUBECTL" apply -f - >/dev/null
"$KUBECTL" -n "$NS" apply -f - <<YAML >/dev/null
apiVersion: v1
kind: Pod
metadata: {name: demo-api, labels: {app: demo-api}}
spec:
  securityContext: {runAsNonRoot: true, runAsUser: 10001, seccompProfile: {type: RuntimeDefault}}
  containers:
    - name: api
      image: assay/runner:$TAG
      imagePullPolicy: Never
      env: [{name: PYTHONPATH, value: /demo}]
      # demo_api.py listens on loopback; in a pod the Service needs every address.
      command: ["python", "-c", "import demo_api, http.server as h; s = h.ThreadingHTTPServer(('0.0.0.0', 8080), demo_api.Handler); s.daemon_threads = True; s.serve_forever()"]
      ports: [{containerPort: 8080}]
      readinessProbe: {httpGet: {path: /health, port: 8080}}
      securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
      volumeMounts: [{name: code, mountPath: /demo}]
  volumes: [{name: code, configMap: {name: demo-api}}]
---
apiVersion: v1
kind: Service
metadata: {name: demo-api}
spec: {selector: {app: demo-api}, ports: [{port: 8080, targetPort: 8080}]}
YAML
"$KUBECTL" -n "$NS" wait --for=condition=Ready pod/demo-api --timeout=120s >/dev/null || fail "the demo API did not start"
API="http://demo-api.$NS.svc:8080"
examples() { sed "s#http://127.0.0.1:18080#$API#g" "examples/$1"; }
# The demo API's counters, read from inside the cluster.
stats() { "$KUBECTL" -n "$NS" exec demo-api -- python -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8080/stats').read().decode())"; }
count() { stats | json 'sum(n for k, n in d["requests"].items() if k in ("GET /items", "GET /items/1", "GET /health"))'; }

say "applying examples/: a sharded LoadTest, a Monitor, a ClientCredential"
before=$(count)
examples loadtest-quick.yaml | sed 's/^  name: .*/  name: e2e-shop/' | "$KUBECTL" -n "$NS" apply -f - >/dev/null
examples monitor.yaml | "$KUBECTL" -n "$NS" apply -f - >/dev/null
"$KUBECTL" -n "$NS" apply -f - <<YAML >/dev/null
apiVersion: assay.dev/v1alpha1
kind: ClientCredential
metadata: {name: e2e-xtc}
spec:
  displayName: kind e2e
  level: project
  scopes: [LOADTEST_LIST, LOADTEST_STATUS, LOADTEST_DETAILS, LOADTEST_COPY_RUN]
  grantTypes: [client_credentials]
YAML
"$KUBECTL" -n "$NS" annotate monitor accounts-api assay.dev/run-request=e2e-$(date +%s) --overwrite >/dev/null

phase_is_final() { case "$("$KUBECTL" -n "$NS" get loadtest e2e-shop -o jsonpath='{.status.phase}')" in Succeeded|Failed) return 0;; esac; return 1; }
wait_for 300 "the LoadTest to finish" phase_is_final
"$KUBECTL" -n "$NS" get loadtest e2e-shop -o wide
phase=$("$KUBECTL" -n "$NS" get loadtest e2e-shop -o jsonpath='{.status.phase}')
requests=$("$KUBECTL" -n "$NS" get loadtest e2e-shop -o jsonpath='{.status.summary.requests}')
received=$(( $(count) - before ))
say "the LoadTest counted $requests requests; the demo API received $received"
[ "$phase" = Succeeded ] || fail "the LoadTest ended $phase"
[ "$requests" = "$received" ] || fail "the counts differ"

monitor_done() { "$KUBECTL" -n "$NS" get monitor accounts-api -o jsonpath='{.status.lastRun.result}' | grep -Eq '^(Passed|Failed)$'; }
wait_for 240 "the Monitor run" monitor_done
monitor_result=$("$KUBECTL" -n "$NS" get monitor accounts-api -o jsonpath='{.status.lastRun.result}')
say "Monitor accounts-api run: $monitor_result"
[ "$monitor_result" = Passed ] || fail "the Monitor run did not pass"

say "the XTC API through the gateway Service"
"$KUBECTL" -n "$SYSTEM" port-forward svc/assay-gateway "$PORT:8000" > "$LOGS/port-forward.log" 2>&1 &
FORWARD_PID=$!
GW="http://127.0.0.1:$PORT"
wait_for 30 "the gateway through port-forward" curl -fs "$GW/healthz"
secret_ready() { "$KUBECTL" -n "$NS" get clientcredential e2e-xtc -o jsonpath='{.status.secretRef.name}' | grep -q .; }
wait_for 60 "the client credential's Secret" secret_ready
SECRET=$("$KUBECTL" -n "$NS" get clientcredential e2e-xtc -o jsonpath='{.status.secretRef.name}')
CLIENT_ID=$("$KUBECTL" -n "$NS" get secret "$SECRET" -o jsonpath='{.data.client-id}' | base64 -d)
CLIENT_SECRET=$("$KUBECTL" -n "$NS" get secret "$SECRET" -o jsonpath='{.data.client-secret}' | base64 -d)
token() {
  curl -fs "$GW/oauth/token" -d grant_type=client_credentials -d "client_id=$CLIENT_ID" \
    --data-urlencode "client_secret=$CLIENT_SECRET" -d "scope=LOADTEST_LIST LOADTEST_STATUS LOADTEST_COPY_RUN" \
    | json 'd["access_token"]' > "$LOGS/token"
}
wait_for 30 "an access token" token
AUTH="Authorization: Bearer $(cat "$LOGS/token")"
BASE="$GW/public/api/v1/orgs/$ORG/projects/$NS/loadTests"
number=$(curl -fs -H "$AUTH" "$BASE" | json '[t["number"] for t in d["loadTests"] if t["name"] == "e2e-shop"][0]') \
  || fail "the XTC list does not show e2e-shop"
copy=$(curl -fs -X POST -H "$AUTH" "$BASE/$number/runCopy" | json 'd["number"]') || fail "runCopy failed"
copy_done() {
  curl -fs -H "$AUTH" "$BASE/$copy/status" > "$LOGS/status.json"
  [ "$(json 'd["latestReportNumber"] or ""' < "$LOGS/status.json")" != "" ]
}
wait_for 300 "load test #$copy (a copy of #$number) and its report" copy_done
json '"kind-e2e: XTC load test: state {state}, result {result}, {requests} requests, report {latestReportNumber}".format(**d)' \
  < "$LOGS/status.json"

say "passed in $(( $(date +%s) - start ))s"
