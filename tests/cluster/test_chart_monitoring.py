"""The chart's PrometheusRule and Grafana dashboard against what the operator and the gateway
really export: the rules go through the pinned promtool (hack/install-promtool.sh), `check
rules` and `test rules`, on input series whose names and labels are read from the running
components' /metrics, and every PromQL expression of the dashboard names only metrics that
the components serve. A renamed metric or label fails here, not silently in Grafana."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from assay.operator.names import RUN_REQUEST_ANNOTATION
from tests.cluster.test_chart import CHART, REPO, render
from tests.cluster.test_chart import helm as helm  # noqa: F401  (the pinned helm fixture)
from tests.conftest import GatewayProcess, OperatorProcess, localkube

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

ON = ["--set", "prometheusRule.enabled=true", "--set", "grafanaDashboard.enabled=true"]
OK = [{"source": "response_status", "comparison": "equal", "value": 200}]


def monitor(name: str, step: dict) -> str:
    manifest = {
        "apiVersion": "assay.dev/v1alpha1",
        "kind": "Monitor",
        "metadata": {"name": name},
        "spec": {
            "steps": [{"stepType": "request", "url": "http://127.0.0.1:9/ping", "assertions": OK, **step}],
            "environments": [{"name": "local"}],
        },
    }
    return json.dumps(manifest)


def history(*results: str) -> list[dict]:
    return [
        {"runId": f"r-{i}", "phase": "Succeeded", "result": result, "startTime": "2026-01-01T00:00:00Z"}
        for i, result in enumerate(results)
    ]


def samples(text: str) -> list:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def exported_names(text: str) -> set[str]:
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(s.name for s in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_count", "_sum"))
    return names


def metrics_text(url: str) -> str:
    return urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()


@pytest.fixture(scope="module")
def scraped(cluster, tmp_path_factory) -> dict[str, str]:
    """The operator's and the gateway's /metrics once each alerting metric has a series: a
    Monitor three failures into its history, a Schedule of it, and a Monitor whose run waits
    for a missing Secret (a handler error the operator counts)."""
    tmp = tmp_path_factory.mktemp("monitoring")
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", namespace)
    port = localkube.free_port()
    gateway = GatewayProcess(cluster, tmp / "store", tmp / "gateway.log").start()
    operator = OperatorProcess(cluster, tmp / "operator.log", namespace, metrics_port=port).start()
    try:
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=monitor("flaky", {}))
        cluster.kubectl(
            "patch",
            "monitor",
            "flaky",
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": {"history": history("Failed", "Failed", "Failed", "Passed")}}),
        )
        schedule = {
            "apiVersion": "assay.dev/v1alpha1",
            "kind": "Schedule",
            "metadata": {"name": "every-5m"},
            "spec": {"target": {"kind": "Monitor", "name": "flaky"}, "interval": "5m"},
        }
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(schedule))
        secret = {"clientSecretFrom": {"secretKeyRef": {"name": "absent", "key": "client-secret"}}}
        oauth = {
            "auth": {
                "authType": "oauth_2",
                "grantType": "client_credentials",
                "clientId": "c",
                "accessTokenUrl": "http://127.0.0.1:9/token",
                **secret,
            }
        }
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=monitor("waiting", oauth))
        cluster.kubectl("annotate", "monitor", "waiting", "-n", namespace, f"{RUN_REQUEST_ANNOTATION}=req-1")

        def ready():
            try:
                text = metrics_text(f"http://127.0.0.1:{port}")
            except OSError:
                return None  # the operator is still starting
            names = {
                (s.name, s.labels.get("monitor") or s.labels.get("schedule") or s.labels.get("kind"))
                for s in samples(text)
            }
            wanted = {
                ("assay_monitor_consecutive_failures", "flaky"),
                ("assay_schedule_last_run_timestamp_seconds", "every-5m"),
                ("assay_schedule_interval_seconds", "every-5m"),
                ("assay_operator_reconcile_errors_total", "Monitor"),
            }
            return text if wanted <= names else None

        operator_text = cluster.wait_for("the alerting metrics' series", ready, timeout=90, interval=1)
        urllib.request.urlopen(gateway.url + "/healthz", timeout=5).read()
        yield {"operator": operator_text, "gateway": metrics_text(gateway.url), "namespace": namespace}
    finally:
        operator.stop()
        gateway.stop()
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(scope="module")
def promtool() -> Path:
    built = subprocess.run(
        ["bash", str(REPO / "hack" / "install-promtool.sh")], capture_output=True, text=True, timeout=1800, check=True
    )
    return Path(built.stdout.strip().splitlines()[-1]) / "promtool"


def series(text: str, name: str, **match: str) -> dict[str, str]:
    """The labels of the scraped series `name` whose labels include `match`."""
    found = [s.labels for s in samples(text) if s.name == name and match.items() <= s.labels.items()]
    assert found, f"{name} {match} is not in the scrape"
    return found[0]


def selector(name: str, labels: dict[str, str]) -> str:
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def test_monitor_gauges_follow_the_status(scraped):
    labels = series(scraped["operator"], "assay_monitor_consecutive_failures", monitor="flaky")
    values = {s.name: s.value for s in samples(scraped["operator"]) if s.labels == labels}
    assert values["assay_monitor_consecutive_failures"] == 3
    assert values["assay_monitor_last_result"] == 0
    assert values["assay_monitor_success_ratio"] == 0.25
    schedule = series(scraped["operator"], "assay_schedule_interval_seconds", schedule="every-5m")
    assert schedule == {
        "namespace": scraped["namespace"],
        "schedule": "every-5m",
        "target_kind": "Monitor",
        "target": "flaky",
    }
    assert [s.value for s in samples(scraped["operator"]) if s.name == "assay_schedule_interval_seconds"] == [300]


def test_rules_pass_promtool_on_the_exported_series(helm, promtool, scraped, tmp_path):  # noqa: F811
    [rule] = [d for d in render(helm, "assay", *ON) if d["kind"] == "PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    checked = subprocess.run([str(promtool), "check", "rules", str(rules)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 3 rules found" in checked.stdout

    op = scraped["operator"]
    failing = series(op, "assay_monitor_consecutive_failures", monitor="flaky")
    recovering = {**failing, "monitor": "recovering"}
    stopped = series(op, "assay_schedule_last_run_timestamp_seconds", schedule="every-5m")
    running = {**stopped, "schedule": "running"}
    errors = series(op, "assay_operator_reconcile_errors_total", kind="Monitor")
    calm = {**errors, "kind": "Schedule"}
    monitor_alert = {"severity": "warning", "namespace": failing["namespace"], "monitor": "flaky"}
    schedule_alert = {
        "severity": "warning",
        **{k: stopped[k] for k in ("namespace", "schedule", "target_kind", "target")},
    }
    ns = failing["namespace"]
    cases = {
        "evaluation_interval": "1m",
        "rule_files": [str(rules)],
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    # Three failures in a row against two: only the first alerts.
                    {"series": selector("assay_monitor_consecutive_failures", failing), "values": "1 2 3 3"},
                    {"series": selector("assay_monitor_consecutive_failures", recovering), "values": "1 2 2 2"},
                    # A 5m Schedule: one stuck at its first run, one running every minute.
                    {"series": selector("assay_schedule_last_run_timestamp_seconds", stopped), "values": "0x40"},
                    {"series": selector("assay_schedule_interval_seconds", stopped), "values": "300x40"},
                    {"series": selector("assay_schedule_last_run_timestamp_seconds", running), "values": "0+60x40"},
                    {"series": selector("assay_schedule_interval_seconds", running), "values": "300x40"},
                    # One kind's handlers keep failing, another's failed once long ago.
                    {"series": selector("assay_operator_reconcile_errors_total", errors), "values": "0+1x40"},
                    {"series": selector("assay_operator_reconcile_errors_total", calm), "values": "5x40"},
                ],
                "alert_rule_test": [
                    {"eval_time": "1m", "alertname": "AssayMonitorFailing", "exp_alerts": []},
                    {
                        "eval_time": "3m",
                        "alertname": "AssayMonitorFailing",
                        "exp_alerts": [
                            {
                                "exp_labels": monitor_alert,
                                "exp_annotations": {
                                    "summary": f"Monitor {ns}/flaky failed 3 runs in a row",
                                    "description": "The last 3 finished runs of the Monitor did not pass"
                                    f" (kubectl -n {ns} get monitor flaky).",
                                },
                            }
                        ],
                    },
                    # 15 minutes without a run is 3 intervals; `for: 5m` more before it fires.
                    {"eval_time": "18m", "alertname": "AssayScheduleStopped", "exp_alerts": []},
                    {
                        "eval_time": "25m",
                        "alertname": "AssayScheduleStopped",
                        "exp_alerts": [
                            {
                                "exp_labels": schedule_alert,
                                "exp_annotations": {
                                    "summary": f"Schedule {ns}/every-5m stopped running",
                                    "description": "No run of Monitor flaky for more than 3 intervals"
                                    " (see the Schedule's Ready condition and its CronJobs).",
                                },
                            }
                        ],
                    },
                    {"eval_time": "8m", "alertname": "AssayOperatorReconcileErrors", "exp_alerts": []},
                    {
                        "eval_time": "15m",
                        "alertname": "AssayOperatorReconcileErrors",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning", "kind": "Monitor"},
                                "exp_annotations": {
                                    "summary": "The Assay operator's Monitor handlers keep failing",
                                    "description": "Handler exceptions at 0.016666666666666666/s;"
                                    " the operator's log names the objects and the errors.",
                                },
                            }
                        ],
                    },
                ],
            }
        ],
    }
    tests = tmp_path / "tests.yaml"
    tests.write_text(yaml.safe_dump(cases))
    result = subprocess.run([str(promtool), "test", "rules", str(tests)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr

    # The cases tell the rules apart: two in a row alerting is caught.
    [failing_rule] = [r for r in rule["spec"]["groups"][0]["rules"] if r["alert"] == "AssayMonitorFailing"]
    failing_rule["expr"] = failing_rule["expr"].replace(">= 3", ">= 2")
    assert failing_rule["expr"].endswith(">= 2")
    rules.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    result = subprocess.run([str(promtool), "test", "rules", str(tests)], capture_output=True, text=True)
    assert result.returncode != 0 and "AssayMonitorFailing" in result.stdout + result.stderr, result.stdout


FUNCTIONS_AND_KEYWORDS = {
    "sum", "max", "min", "avg", "count", "rate", "increase", "histogram_quantile", "time",
    "by", "without", "and", "or", "unless", "on", "ignoring", "group_left", "group_right", "offset", "bool",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers outside label matchers,
    ranges, `by (...)` lists and strings that are not functions or keywords."""
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)
    words = re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr)
    return {w for w in words if w not in FUNCTIONS_AND_KEYWORDS}


def test_dashboard_queries_only_exported_metrics(helm, scraped):  # noqa: F811
    [configmap] = [d for d in render(helm, "assay", *ON) if d["kind"] == "ConfigMap"]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(configmap["data"]["assay.json"])
    assert dashboard == json.loads((CHART / "dashboards" / "assay.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    titles = {p["title"] for p in panels}
    assert {
        "Monitor success ratio",
        "Monitor response time",
        "Load test throughput",
        "Load test p95 latency",
        "Operator reconcile errors",
        "Operator and gateway up",
    } <= titles
    exported = exported_names(scraped["operator"]) | exported_names(scraped["gateway"])
    used = set()
    for panel in panels:
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names, f"{panel['title']!r}: no metric in {target['expr']!r}"
            # `up` is Prometheus's own series for each scrape target.
            unknown = names - exported - {"up"}
            assert not unknown, f"{panel['title']!r} queries {unknown}, which nothing exports"
            used |= names
    assert {
        "assay_loadtests_requests_per_second",
        "assay_monitor_success_ratio",
        "assay_gateway_requests_total",
    } <= used


def test_dashboard_label_and_rule_settings_are_values(helm):  # noqa: F811
    docs = render(
        helm,
        "assay",
        *ON,
        "--set",
        "grafanaDashboard.labels.grafana_dashboard=assay",
        "--set",
        "prometheusRule.monitorFailing.runs=5",
        "--set",
        "prometheusRule.reconcileErrors.severity=critical",
        "--set",
        "prometheusRule.scheduleStopped.for=15m",
    )
    [configmap] = [d for d in docs if d["kind"] == "ConfigMap"]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "assay"
    [rule] = [d for d in docs if d["kind"] == "PrometheusRule"]
    alerts = {r["alert"]: r for r in rule["spec"]["groups"][0]["rules"]}
    assert alerts["AssayMonitorFailing"]["expr"].endswith(">= 5")
    assert alerts["AssayOperatorReconcileErrors"]["labels"]["severity"] == "critical"
    assert alerts["AssayScheduleStopped"]["for"] == "15m"
    assert not [d for d in render(helm, "assay") if d["kind"] in ("ConfigMap", "PrometheusRule")]
    bad = helm("template", "assay", str(CHART), "--set", "prometheusRule.monitorFailing.times=3", check=False)
    assert bad.returncode != 0 and "additional properties 'times' not allowed" in bad.stderr
