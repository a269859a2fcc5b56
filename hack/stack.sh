#!/usr/bin/env bash
# The local stack for development: control plane + node agents (hack/localkube.py; one per
# region: local, us1, eu1), the CRDs, the gateway (uvicorn, store in .assay/store), the
# operator and the demo API every example in examples/ targets (hack/demo_api.py on
# 127.0.0.1:$DEMO_PORT, 18080) in the background, wired together with generated keys. `up`
# writes .assay/env for shells and tools:
#   set -a; . .assay/env; set +a; kubectl get loadtests
# NODES=real (make up NODES=real) runs a real node instead of the agents (hack/realnode.py:
# containerd, kubelet, kube-scheduler, kube-proxy, CoreDNS); the gateway and operator stay
# host processes. `down` and `status` follow whichever mode is up.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=$(realpath -m "${ASSAY_STATE_DIR:-.assay}")
PY=.venv/bin/python
mkdir -p "$STATE/logs"

GATEWAY_PORT=${ASSAY_GATEWAY_PORT:-18000}
GATEWAY_URL="http://127.0.0.1:$GATEWAY_PORT"
DEMO_PORT=${DEMO_PORT:-18080}
# The egress policy (assay.runner.egress) of the gateway, the operator and the node agents' pods:
# loopback servers on ephemeral ports (test targets) and the demo API, never the stack's own
# listeners (they take ports below the ephemeral range, hack/localkube.py free_port).
if [ -z "${ASSAY_EGRESS_ALLOW+set}" ]; then
  ASSAY_EGRESS_ALLOW="127.0.0.1:$DEMO_PORT,$("$PY" -c 'import sys; sys.path.insert(0, "hack"); import localkube; print(localkube.egress_allow())')"
fi
export ASSAY_EGRESS_ALLOW
AGENTS=(--agent "assay-local=topology.kubernetes.io/region=local"
        --agent "assay-us1=topology.kubernetes.io/region=us1"
        --agent "assay-eu1=topology.kubernetes.io/region=eu1")

NODES=${NODES:-agents}
case "$NODES" in agents|real) ;; *) echo "stack: NODES must be agents or real, not $NODES" >&2; exit 2 ;; esac

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

fail() { echo "stack: $*" >&2; exit 1; }

# Who listens on a TCP port, as ss tells it (empty when the port is free).
holder() { ss -ltnpH "sport = :$1" 2>/dev/null | sed -n 's/.*users:((\(.*\)))/\1/p' | head -1; }
port_free() { "$PY" -c 'import socket, sys; s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null; }

# Up means: the process we started is alive after its check passed (a check another process
# could answer, e.g. on a port taken since, proves nothing on its own).
wait_up() {
  local part=$1 url=$2 pid; pid=$(pid_of "$part")
  for _ in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || fail "the $part exited during start-up; see $STATE/logs/$part.log"
    curl -fs "$url" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fs "$url" >/dev/null 2>&1 || fail "the $part did not answer $url; see $STATE/logs/$part.log"
  sleep 0.3
  kill -0 "$pid" 2>/dev/null || fail "the $part exited after start-up; see $STATE/logs/$part.log"
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
    if ! running gateway && ! port_free "$GATEWAY_PORT"; then
      who=$(holder "$GATEWAY_PORT")
      fail "port $GATEWAY_PORT for the gateway is taken${who:+ by $who}; free it or set ASSAY_GATEWAY_PORT"
    fi
    if [ "$NODES" = real ]; then
      "$PY" hack/realnode.py up --dir "$STATE"
      # The app images, when hack/build-images.sh (assay/operator, gateway, runner) is there.
      if [ -f hack/build-images.sh ]; then
        SOCK=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["containerd_socket"])' "$STATE/realnode.json")
        bash hack/build-images.sh --load "$SOCK" >>"$STATE/logs/images.log" 2>&1 \
          || echo "stack: the app images were not loaded (see $STATE/logs/images.log); the node runs what is imported" >&2
      fi
    else
      "$PY" hack/localkube.py up --dir "$STATE" "${AGENTS[@]}"
    fi
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
      wait_up gateway "$GATEWAY_URL/healthz"
      # The listener must be the gateway's, not another process's on the same port.
      if who=$(holder "$GATEWAY_PORT") && [ -n "$who" ] && [[ "$who" != *"pid=$(pid_of gateway),"* ]]; then
        fail "port $GATEWAY_PORT answers, but from $who, not the gateway; see $STATE/logs/gateway.log"
      fi
    fi
    if ! running operator; then
      # kopf's liveness endpoint answers once the operator has started.
      LIVENESS="http://127.0.0.1:$("$PY" -c 'import sys; sys.path.insert(0, "hack"); import localkube; print(localkube.free_port())')/healthz"
      ASSAY_GATEWAY_URL="$GATEWAY_URL" ASSAY_UPLOAD_KEY="$UPLOAD_KEY" \
        setsid "$PY" -m assay.operator --liveness "$LIVENESS" >>"$STATE/logs/operator.log" 2>&1 < /dev/null &
      echo $! > "$STATE/operator.pid"
      wait_up operator "$LIVENESS"
    fi
    # The examples' target; another process already answering its /health (a demo API of a
    # stack started before) serves as well.
    if ! running demo-api && ! curl -fs "http://127.0.0.1:$DEMO_PORT/health" >/dev/null 2>&1; then
      if ! port_free "$DEMO_PORT"; then
        who=$(holder "$DEMO_PORT")
        fail "port $DEMO_PORT for the demo API is taken${who:+ by $who}; free it or set DEMO_PORT"
      fi
      setsid "$PY" hack/demo_api.py --port "$DEMO_PORT" >>"$STATE/logs/demo-api.log" 2>&1 < /dev/null &
      echo $! > "$STATE/demo-api.pid"
      wait_up demo-api "http://127.0.0.1:$DEMO_PORT/health"
    fi
    cat > "$STATE/env" <<ENV
KUBECONFIG=$STATE/kubeconfig
PATH=$BIN:\$PATH
ASSAY_GATEWAY_URL=$GATEWAY_URL
ENV
    echo "stack: up. Use it with:  set -a; . $STATE/env; set +a; kubectl get loadtests -A"
    echo "stack: gateway on $GATEWAY_URL (store in $STATE/store); logs in $STATE/logs/"
    echo "stack: the demo API the examples target on http://127.0.0.1:$DEMO_PORT"
    ;;
  down)
    stop operator
    stop gateway
    stop demo-api
    if [ -x "$PY" ]; then
      if [ -f "$STATE/realnode.json" ]; then "$PY" hack/realnode.py down --dir "$STATE"; fi
      "$PY" hack/localkube.py down --dir "$STATE"
    fi
    rm -f "$STATE/env"
    ;;
  status)
    for part in operator gateway demo-api; do
      if running $part; then printf '%-28s pid %s running\n' $part "$(pid_of $part)"; else printf '%-28s not running\n' $part; fi
    done
    "$PY" hack/localkube.py status --dir "$STATE"
    if [ -f "$STATE/realnode.json" ]; then "$PY" hack/realnode.py status --dir "$STATE"; fi
    ;;
  *) echo "usage: hack/stack.sh up|down|status" >&2; exit 2 ;;
esac
