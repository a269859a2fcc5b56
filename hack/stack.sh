#!/usr/bin/env bash
# The local stack for development: control plane + node agents (hack/localkube.py; one per
# region: local, us1, eu1), the CRDs, the gateway (uvicorn, store in .assay/store) and the
# operator in the background, wired together with generated keys. `up` writes .assay/env for
# shells and tools:
#   set -a; . .assay/env; set +a; kubectl get loadtests
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=$(realpath -m "${ASSAY_STATE_DIR:-.assay}")
PY=.venv/bin/python
mkdir -p "$STATE/logs"

GATEWAY_PORT=${ASSAY_GATEWAY_PORT:-18000}
GATEWAY_URL="http://127.0.0.1:$GATEWAY_PORT"
# The egress policy (assay.runner.egress) of the gateway, the operator and the node agents' pods:
# loopback servers on ephemeral ports (test targets) and the demo API, never the stack's own
# listeners (they take ports below the ephemeral range, hack/localkube.py free_port).
if [ -z "${ASSAY_EGRESS_ALLOW+set}" ]; then
  ASSAY_EGRESS_ALLOW="127.0.0.1:${DEMO_PORT:-18080},$("$PY" -c 'import sys; sys.path.insert(0, "hack"); import localkube; print(localkube.egress_allow())')"
fi
export ASSAY_EGRESS_ALLOW
AGENTS=(--agent "assay-local=topology.kubernetes.io/region=local"
        --agent "assay-us1=topology.kubernetes.io/region=us1"
        --agent "assay-eu1=topology.kubernetes.io/region=eu1")

pid_of() { [ -f "$STATE/$1.pid" ] && cat "$STATE/$1.pid" || true; }
running() { local pid; pid=$(pid_of "$1"); [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }

stop() {
  local pid; pid=$(pid_of "$1")
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid"; for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    echo "stack: $1 stopped"
  fi
  rm -f "$STATE/$1.pid"
}

# Keys shared by the gateway and the operator, made once per state folder; never printed.
key() {
  local file="$STATE/keys/$1"
  if [ ! -s "$file" ]; then
    mkdir -p "$STATE/keys"; chmod 700 "$STATE/keys"
    (umask 077; "$PY" -c 'import secrets; print(secrets.token_urlsafe(32))' > "$file")
  fi
  cat "$file"
}

case "${1:-}" in
  up)
    "$PY" hack/localkube.py up --dir "$STATE" "${AGENTS[@]}"
    BIN=$(bash hack/build-kube.sh)
    export KUBECONFIG="$STATE/kubeconfig" PATH="$BIN:$PATH"
    kubectl apply --server-side -f crds/ >/dev/null
    kubectl wait --for=condition=Established --timeout=60s -f crds/ >/dev/null
    UPLOAD_KEY=$(key upload-key)
    if ! running gateway; then
      ASSAY_STORE_DIR="$STATE/store" ASSAY_PUBLIC_URL="$GATEWAY_URL" ASSAY_UPLOAD_KEY="$UPLOAD_KEY" \
        ASSAY_TOKEN_SIGNING_KEY="$(key signing-key)" ASSAY_KUBECONFIG="$KUBECONFIG" ASSAY_LOG_FORMAT=text \
        setsid "$PY" -m assay.api --port "$GATEWAY_PORT" >>"$STATE/logs/gateway.log" 2>&1 < /dev/null &
      echo $! > "$STATE/gateway.pid"
      for _ in $(seq 100); do curl -fs "$GATEWAY_URL/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
      curl -fs "$GATEWAY_URL/healthz" >/dev/null || { echo "stack: the gateway did not start; see $STATE/logs/gateway.log" >&2; exit 1; }
    fi
    if ! running operator; then
      ASSAY_GATEWAY_URL="$GATEWAY_URL" ASSAY_UPLOAD_KEY="$UPLOAD_KEY" \
        setsid "$PY" -m assay.operator >>"$STATE/logs/operator.log" 2>&1 < /dev/null &
      echo $! > "$STATE/operator.pid"
    fi
    cat > "$STATE/env" <<ENV
KUBECONFIG=$STATE/kubeconfig
PATH=$BIN:\$PATH
ASSAY_GATEWAY_URL=$GATEWAY_URL
ENV
    echo "stack: up. Use it with:  set -a; . $STATE/env; set +a; kubectl get loadtests -A"
    echo "stack: gateway on $GATEWAY_URL (store in $STATE/store); logs in $STATE/logs/"
    ;;
  down)
    stop operator
    stop gateway
    if [ -f "$STATE/demo-api.pid" ]; then kill "$(cat "$STATE/demo-api.pid")" 2>/dev/null || true; rm -f "$STATE/demo-api.pid"; fi
    if [ -x "$PY" ]; then "$PY" hack/localkube.py down --dir "$STATE"; fi
    rm -f "$STATE/env"
    ;;
  status)
    for part in operator gateway; do
      if running $part; then printf '%-28s pid %s running\n' $part "$(pid_of $part)"; else printf '%-28s not running\n' $part; fi
    done
    "$PY" hack/localkube.py status --dir "$STATE"
    ;;
  *) echo "usage: hack/stack.sh up|down|status" >&2; exit 2 ;;
esac
