#!/usr/bin/env bash
# `make demo`: the local stack (control plane, node agents per region, operator, gateway, the
# demo API), the manifests of examples/ (a sharded LoadTest with a ramp and a hold, watched on
# its live dashboard page, a Monitor on a 1-minute Schedule, a TestSuite), the XTC API flow
# against the gateway, and where to look afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
PY=.venv/bin/python
PORT=${DEMO_PORT:-18080}
NS=demo
ORG=demo
OUT=.assay/demo
mkdir -p "$OUT"

say() { echo "demo: $*"; }
fail() { echo "demo: FAILED: $*" >&2; exit 1; }
json() { "$PY" -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
# wait_for SECONDS DESCRIPTION COMMAND...: poll until COMMAND succeeds.
wait_for() {
  local seconds=$1 what=$2; shift 2
  for _ in $(seq "$seconds"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  fail "$what (waited ${seconds}s)"
}
examples() { sed "s#http://127.0.0.1:18080#http://127.0.0.1:$PORT#g" "examples/$1"; }

say "starting the local stack and the demo API (make up)"
DEMO_PORT=$PORT bash hack/stack.sh up
set -a; . .assay/env; set +a
GW=$ASSAY_GATEWAY_URL
# Requests to the LoadTest's paths only: the Monitor and the TestSuite call /api/*.
count() { curl -fs "http://127.0.0.1:$PORT/stats" | json 'sum(n for k, n in d["requests"].items() if k in ("GET /items", "GET /items/1", "GET /health"))'; }

kubectl create namespace $NS --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl label namespace $NS assay.dev/org=$ORG --overwrite >/dev/null

say "applying examples/ to namespace $NS: a sharded LoadTest, a Monitor with its Schedules, a TestSuite"
kubectl -n $NS delete loadtest demo-shop --ignore-not-found --wait=true >/dev/null
before=$(count)
examples loadtest-quick.yaml | sed 's/^  name: .*/  name: demo-shop/' | kubectl -n $NS apply -f -
examples monitor.yaml | kubectl -n $NS apply -f -
examples schedule.yaml | kubectl -n $NS apply -f -
examples testsuite.yaml | kubectl -n $NS apply -f -
kubectl -n $NS apply -f - <<YAML
apiVersion: assay.dev/v1alpha1
kind: ClientCredential
metadata:
  name: demo-xtc
spec:
  displayName: make demo
  level: project
  scopes: [LOADTEST_LIST, LOADTEST_STATUS, LOADTEST_DETAILS, LOADTEST_COPY_RUN, LOADTEST_REPORT_DOWNLOAD, LOADTEST_RESULT_DOWNLOAD]
  grantTypes: [client_credentials]
YAML

say "requesting a Monitor run and a TestSuite run (the run-request annotation)"
request=demo-$(date +%s)
kubectl -n $NS annotate monitor accounts-api assay.dev/run-request=$request --overwrite >/dev/null
kubectl -n $NS annotate testsuite user-service assay.dev/run-request=$request --overwrite >/dev/null

secret_name() { kubectl -n $NS get clientcredential demo-xtc -o jsonpath='{.status.secretRef.name}' | grep -q .; }
wait_for 60 "the client credential" secret_name
SECRET=$(kubectl -n $NS get clientcredential demo-xtc -o jsonpath='{.status.secretRef.name}')
CLIENT_ID=$(kubectl -n $NS get secret "$SECRET" -o jsonpath='{.data.client-id}' | base64 -d)
CLIENT_SECRET=$(kubectl -n $NS get secret "$SECRET" -o jsonpath='{.data.client-secret}' | base64 -d)
started() { case "$(kubectl -n $NS get loadtest demo-shop -o jsonpath='{.status.phase}')" in Running|Succeeded|Failed) return 0;; esac; return 1; }
wait_for 120 "the LoadTest to start" started
say "the LoadTest runs for about 25 s; watch it live on its dashboard page:"
echo "  $GW/dashboard/loadtests/$NS/demo-shop"
echo "  (sign in with client id $CLIENT_ID and the secret in"
echo "   kubectl -n $NS get secret $SECRET -o jsonpath='{.data.client-secret}' | base64 -d)"
say "waiting for the LoadTest (kubectl -n $NS get loadtests -w)"
phase_is_final() { case "$(kubectl -n $NS get loadtest demo-shop -o jsonpath='{.status.phase}')" in Succeeded|Failed) return 0;; esac; return 1; }
wait_for 300 "the LoadTest to finish" phase_is_final
kubectl -n $NS get loadtest demo-shop -o wide
requests=$(kubectl -n $NS get loadtest demo-shop -o jsonpath='{.status.summary.requests}')
received=$(( $(count) - before ))
say "the LoadTest counted $requests requests; the demo API received $received."
[ "$(kubectl -n $NS get loadtest demo-shop -o jsonpath='{.status.phase}')" = Succeeded ] || fail "the LoadTest did not succeed"
[ "$requests" = "$received" ] || fail "the counts differ"

say "the XTC API: token, list, status, run a copy, download its report"
token() {
  curl -fs "$GW/oauth/token" -d grant_type=client_credentials -d "client_id=$CLIENT_ID" \
    --data-urlencode "client_secret=$CLIENT_SECRET" -d "scope=LOADTEST_LIST LOADTEST_STATUS LOADTEST_COPY_RUN LOADTEST_REPORT_DOWNLOAD" \
    | json 'd["access_token"]' > "$OUT/token"
}
wait_for 30 "an access token from $GW/oauth/token" token
AUTH="Authorization: Bearer $(cat "$OUT/token")"
BASE="$GW/public/api/v1/orgs/$ORG/projects/$NS/loadTests"
echo "  curl -H 'Authorization: Bearer ...' $BASE"
curl -fs -H "$AUTH" "$BASE" | json '"\n".join("    #{number} {name}: {state} {result}".format(**t) for t in d["loadTests"])'
number=$(curl -fs -H "$AUTH" "$BASE" | json '[t["number"] for t in d["loadTests"] if t["name"] == "demo-shop"][0]')
echo "  curl -X POST ... $BASE/$number/runCopy"
copy=$(curl -fs -X POST -H "$AUTH" "$BASE/$number/runCopy" | json 'd["number"]')
say "  load test #$copy is a copy of #$number; polling its status"
report_ready() {
  curl -fs -H "$AUTH" "$BASE/$copy/status" > "$OUT/status.json"
  [ "$(json 'd["latestReportNumber"] if d["state"] in ("FINISHED", "FAILED") else ""' < "$OUT/status.json")" != "" ]
}
wait_for 300 "load test #$copy and its report" report_ready
json '"    state {state}, result {result}, {requests} requests, report {latestReportNumber}".format(**d)' < "$OUT/status.json"
report=$(json 'd["latestReportNumber"]' < "$OUT/status.json")
curl -fs -H "$AUTH" -o "$OUT/report-$copy.zip" "$BASE/$copy/reports/$report/download"
say "  report saved to $OUT/report-$copy.zip ($(wc -c < "$OUT/report-$copy.zip") bytes)"

run_done() { kubectl -n $NS get "$1" "$2" -o jsonpath='{.status.lastRun.runId}{" "}{.status.lastRun.result}' | grep -Eq ' (Passed|Failed)$'; }
wait_for 180 "the Monitor run" run_done monitor accounts-api
wait_for 180 "the TestSuite run" run_done testsuite user-service
monitor_result=$(kubectl -n $NS get monitor accounts-api -o jsonpath='{.status.lastRun.result}')
suite_result=$(kubectl -n $NS get testsuite user-service -o jsonpath='{.status.lastRun.result}')
say "Monitor accounts-api run: $monitor_result; TestSuite user-service run: $suite_result"

say "waiting for the 1-minute Schedule's first tick (kubectl -n $NS get schedules,cronjobs,jobs)"
scheduled_run() { kubectl -n $NS get monitor accounts-api -o jsonpath='{.status.history[*].schedule}' | grep -q accounts-api-staging; }
wait_for 150 "a scheduled run of accounts-api" scheduled_run
kubectl -n $NS get schedules
kubectl -n $NS get monitor accounts-api
hooks=$(curl -fs "http://127.0.0.1:$PORT/hooks" | json 'len(d["received"])')

echo
say "finished in $(( $(date +%s) - start ))s. Where to look:"
echo "  dashboard        $GW/dashboard   (sign in with client id $CLIENT_ID and the secret in"
echo "                   kubectl -n $NS get secret $SECRET -o jsonpath='{.data.client-secret}' | base64 -d)"
echo "  the load test    $GW/dashboard/loadtests/$NS/demo-shop?a=$number&b=$copy   (its curves; the copy compared)"
echo "  report archive   $OUT/report-$copy.zip   (unzip it and open index.html)"
echo "  the cluster      set -a; . .assay/env; set +a"
echo "                   kubectl -n $NS get loadtests,monitors,testsuites,schedules"
echo "                   kubectl -n $NS get cronjobs,jobs,pods"
echo "                   kubectl -n $NS get monitor accounts-api -o yaml   # last run and history"
echo "  webhooks         $hooks result(s) received by the demo API: curl http://127.0.0.1:$PORT/hooks"
echo "  logs             .assay/logs/   (control plane, node agents, operator, gateway)"
echo "  stop everything  make down"
[ "$monitor_result" = Passed ] && [ "$suite_result" = Passed ] || fail "the Monitor or TestSuite run did not pass"
