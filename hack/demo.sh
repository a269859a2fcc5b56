#!/usr/bin/env bash
# `make demo`: the local stack, a demo API, and a sharded LoadTest run end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
PY=.venv/bin/python
PORT=${DEMO_PORT:-18080}

bash hack/stack.sh up
set -a; . .assay/env; set +a

if ! curl -fs "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; then
  setsid "$PY" hack/demo_api.py --port "$PORT" >> .assay/logs/demo-api.log 2>&1 < /dev/null &
  echo $! > .assay/demo-api.pid
  for _ in $(seq 50); do curl -fs "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 0.1; done
fi
before=$(curl -fs "http://127.0.0.1:$PORT/stats" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["total"])')

kubectl create namespace demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n demo delete loadtest demo-shop --ignore-not-found --wait=true >/dev/null
sed "s#http://127.0.0.1:8080#http://127.0.0.1:$PORT#" examples/loadtest-quick.yaml \
  | sed 's/^  name: .*/  name: demo-shop/' | kubectl -n demo apply -f -

echo "demo: waiting for the LoadTest to finish (kubectl -n demo get loadtests -w)"
last=""
for _ in $(seq 300); do
  phase=$(kubectl -n demo get loadtest demo-shop -o jsonpath='{.status.phase}')
  [ "$phase" != "$last" ] && echo "demo:   phase ${phase:-<none>}" && last=$phase
  case "$phase" in Succeeded|Failed) break ;; esac
  sleep 1
done
kubectl -n demo get loadtest demo-shop -o wide
kubectl -n demo get jobs,pods -l assay.dev/name=demo-shop
after=$(curl -fs "http://127.0.0.1:$PORT/stats" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["total"])')
requests=$(kubectl -n demo get loadtest demo-shop -o jsonpath='{.status.summary.requests}')
echo
echo "demo: the LoadTest counted $requests requests; the demo API received $((after - before))."
echo "demo: finished in $(( $(date +%s) - start ))s. Where to look:"
echo "  set -a; . .assay/env; set +a"
echo "  kubectl -n demo get loadtests            # phase, result, requests"
echo "  kubectl -n demo get loadtest demo-shop -o yaml"
echo "  ls .assay/logs/                          # control plane, node agent and operator logs"
echo "  make down                                # stop everything"
[ "$phase" = Succeeded ] && [ "$requests" = "$((after - before))" ]
