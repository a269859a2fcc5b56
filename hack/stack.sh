#!/usr/bin/env bash
# The local stack for development: control plane + node agent (hack/localkube.py), the CRDs,
# and the operator in the background. `up` writes .assay/env for shells and tools:
#   set -a; . .assay/env; set +a; kubectl get loadtests
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=$(realpath -m "${ASSAY_STATE_DIR:-.assay}")
PY=.venv/bin/python
mkdir -p "$STATE/logs"

operator_pid() { [ -f "$STATE/operator.pid" ] && cat "$STATE/operator.pid" || true; }

case "${1:-}" in
  up)
    "$PY" hack/localkube.py up --dir "$STATE"
    BIN=$(bash hack/build-kube.sh)
    export KUBECONFIG="$STATE/kubeconfig" PATH="$BIN:$PATH"
    kubectl apply --server-side -f crds/ >/dev/null
    kubectl wait --for=condition=Established --timeout=60s -f crds/ >/dev/null
    pid=$(operator_pid)
    if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
      setsid "$PY" -m assay.operator >>"$STATE/logs/operator.log" 2>&1 < /dev/null &
      echo $! > "$STATE/operator.pid"
    fi
    cat > "$STATE/env" <<ENV
KUBECONFIG=$STATE/kubeconfig
PATH=$BIN:\$PATH
ENV
    echo "stack: up. Use it with:  set -a; . $STATE/env; set +a; kubectl get loadtests -A"
    echo "stack: logs in $STATE/logs/"
    ;;
  down)
    pid=$(operator_pid)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid"; for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      echo "stack: operator stopped"
    fi
    rm -f "$STATE/operator.pid"
    if [ -f "$STATE/demo-api.pid" ]; then kill "$(cat "$STATE/demo-api.pid")" 2>/dev/null || true; rm -f "$STATE/demo-api.pid"; fi
    if [ -x "$PY" ]; then "$PY" hack/localkube.py down --dir "$STATE"; fi
    rm -f "$STATE/env"
    ;;
  status)
    pid=$(operator_pid)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then echo "operator                     pid $pid running"; else echo "operator                     not running"; fi
    "$PY" hack/localkube.py status --dir "$STATE"
    ;;
  *) echo "usage: hack/stack.sh up|down|status" >&2; exit 2 ;;
esac
