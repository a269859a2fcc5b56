"""The Helm chart: lint-clean, its values schema strict, every rendered manifest accepted by the
real API server, installable and upgradable with its generated keys kept, and its RBAC
granting each component exactly the access its code uses."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import Cluster, GatewayProcess, OperatorProcess
from tests.support.credentials import bearer, create_credential, kubectl_json, request_token
from tests.support.targets import CountingTarget

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "assay"

# A minimal stand-in for the Prometheus Operator's CRD: enough for the API server to accept
# (and validate the shape of) the chart's ServiceMonitor.
SERVICEMONITOR_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [selector, endpoints]
              properties:
                selector: {type: object, x-kubernetes-preserve-unknown-fields: true}
                namespaceSelector: {type: object, x-kubernetes-preserve-unknown-fields: true}
                endpoints:
                  type: array
                  items:
                    type: object
                    properties:
                      port: {type: string}
                      path: {type: string}
                      interval: {type: string}
"""

# The same for the chart's PrometheusRule.
PROMETHEUSRULE_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: prometheusrules.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  names: {kind: PrometheusRule, listKind: PrometheusRuleList, plural: prometheusrules, singular: prometheusrule}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                groups:
                  type: array
                  items:
                    type: object
                    required: [name, rules]
                    properties:
                      name: {type: string}
                      rules:
                        type: array
                        items:
                          type: object
                          required: [expr]
                          properties:
                            alert: {type: string}
                            expr: {x-kubernetes-int-or-string: true}
                            for: {type: string}
                            labels: {type: object, additionalProperties: {type: string}}
                            annotations: {type: object, additionalProperties: {type: string}}
"""

# What the code does with the Kubernetes API, per component: (verb, resource, subresource,
# the code that needs it). The test asks the real API server's authorizer about each one for
# the chart's service accounts.
OPERATOR_NEEDS = [
    *[
        (verb, f"{plural}.assay.dev", "", "Kopf watches and patches (finalizer, progress); kube.read_custom")
        for plural in ("loadtests", "testsuites", "monitors", "clientcredentials", "schedules")
        for verb in ("get", "list", "watch", "patch")
    ],
    *[
        ("patch", f"{plural}.assay.dev", "status", "kube.patch_status")
        for plural in ("loadtests", "testsuites", "monitors", "clientcredentials", "schedules")
    ],
    *[
        ("update", f"{plural}.assay.dev", "finalizers", "blockOwnerDeletion on run children")
        for plural in ("loadtests", "testsuites", "monitors", "clientcredentials")
    ],
    ("update", "cronjobs.batch", "finalizers", "blockOwnerDeletion on tick-group children"),
    ("create", "jobs.batch", "", "kube.create_if_absent(job)"),
    ("get", "jobs.batch", "", "kube.read_job"),
    ("list", "jobs.batch", "", "kube.list_jobs; @kopf.on.event jobs"),
    ("watch", "jobs.batch", "", "@kopf.on.event jobs"),
    *[
        (verb, "cronjobs.batch", "", "schedule.py tick CronJobs")
        for verb in ("create", "get", "list", "update", "delete")
    ],
    *[(verb, "configmaps", "", "run specs, pools, tick members") for verb in ("create", "get", "update")],
    ("create", "secrets", "", "upload-token and ClientCredential Secrets"),
    ("get", "secrets", "", "clientcredential.read_namespaced_secret; runsecrets: referenced Secrets"),
    ("update", "secrets", "", "schedule._apply_secret: a tick group's secret values"),
    ("delete", "secrets", "", "schedule._delete_secret: a tick group without secret values"),
    ("list", "pods", "", "kube.list_job_pods"),
    ("get", "namespaces", "", "notify.py read_namespace"),
    ("create", "events", "", "Kopf posts handler failures"),
    *[
        (verb, "clusterkopfpeerings.kopf.dev", "", "peering.ensure_peering_objects; Kopf keep-alive")
        for verb in ("create", "get", "list", "watch", "patch")
    ],
    ("watch", "customresourcedefinitions.apiextensions.k8s.io", "", "Kopf resource observer"),
]
OPERATOR_DENIED = [
    ("list", "secrets", ""),
    ("delete", "jobs.batch", ""),
    ("create", "namespaces", ""),
    ("delete", "loadtests.assay.dev", ""),
    ("update", "loadtests.assay.dev", ""),
    ("delete", "configmaps", ""),
    ("create", "pods", ""),
    ("create", "clusterroles.rbac.authorization.k8s.io", ""),
    ("list", "nodes", ""),
]
GATEWAY_NEEDS = [
    ("list", "clientcredentials.assay.dev", "", "auth/watch.py credential index"),
    ("watch", "clientcredentials.assay.dev", "", "auth/watch.py credential index"),
    ("list", "namespaces", "", "auth/watch.py tenancy index; KubeClient.namespaces"),
    ("watch", "namespaces", "", "auth/watch.py tenancy index"),
    ("get", "namespaces", "", "KubeClient.namespace"),
    ("create", "namespaces", "", "runscope_buckets.py"),
    ("delete", "namespaces", "", "runscope_buckets.py"),
    ("list", "nodes", "", "Runscope regions and agents: KubeClient.nodes"),
    ("create", "loadtests.assay.dev", "", "services/loadtests.py, services/loadmill.py"),
    ("get", "loadtests.assay.dev", "", "services/loadmill.py"),
    ("list", "loadtests.assay.dev", "", "services/loadtests.py, dashboard.py"),
    ("watch", "loadtests.assay.dev", "", "kube.py WatchCache of LoadTests"),
    ("get", "testsuites.assay.dev", "", "services/suites.py"),
    ("list", "testsuites.assay.dev", "", "services/suites.py, vng.py, dashboard.py"),
    ("patch", "testsuites.assay.dev", "", "services/runs.py run-request annotation"),
    *[
        (verb, "monitors.assay.dev", "", "services/runscope_tests.py")
        for verb in ("get", "list", "create", "update", "patch", "delete")
    ],
    *[
        (verb, "schedules.assay.dev", "", "services/runscope_tests.py")
        for verb in ("get", "list", "create", "update", "delete")
    ],
    *[(verb, "configmaps", "", "Runscope shared environments; tick members") for verb in ("get", "create", "update")],
    ("get", "jobs.batch", "", "upload_grants.py: a tick's Job"),
]
GATEWAY_DENIED = [
    ("get", "secrets", ""),
    ("list", "secrets", ""),
    ("create", "jobs.batch", ""),
    ("create", "clientcredentials.assay.dev", ""),
    ("patch", "loadtests.assay.dev", "status"),
    ("delete", "loadtests.assay.dev", ""),
    ("list", "pods", ""),
    ("delete", "configmaps", ""),
    ("patch", "monitors.assay.dev", "status"),
    ("create", "cronjobs.batch", ""),
]


@pytest.fixture(scope="module")
def helm(cluster, tmp_path_factory):
    """Runs the pinned helm (hack/install-helm.sh) against the test cluster, with its own
    config and cache folders so that nothing of the user's helm setup is read or written."""
    built = subprocess.run(
        ["bash", str(REPO / "hack" / "install-helm.sh")], capture_output=True, text=True, timeout=900, check=True
    )
    binary = Path(built.stdout.strip().splitlines()[-1]) / "helm"
    home = tmp_path_factory.mktemp("helm")
    env = {
        **cluster.env,
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
    }

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([str(binary), *args], capture_output=True, text=True, env=env, timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(
                f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return result

    return run


def render(helm, namespace: str, *args: str) -> list[dict]:
    out = helm("template", "assay", str(CHART), "--namespace", namespace, *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [doc for doc in docs if doc["kind"] == kind]


def server_dry_run(cluster, namespace: str, docs: list[dict]) -> str:
    result = cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(docs), check=False
    )
    assert result.returncode == 0, f"the API server rejected the chart:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def chart_crds(cluster):
    """The chart's own CRDs (Helm installs crds/ before anything else), established."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CHART / "crds"))


def test_lint_is_clean_in_strict_mode(helm):
    for values in [None, *sorted((CHART / "ci").glob("*-values.yaml"))]:
        args = ["lint", "--strict", str(CHART)] + (["-f", str(values)] if values else [])
        result = helm(*args, check=False)
        assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
        assert "0 chart(s) failed" in result.stdout
        assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout


@pytest.mark.parametrize(
    "setting, message",
    [
        ("operator.replicas=-1", "at '/operator/replicas': minimum: got -1, want 1"),
        ("replicas=-1", "additional properties 'replicas' not allowed"),
        ("gateway.logFormat=xml", "/gateway/logFormat"),
        ("keys.uploadKey=short", "/keys/uploadKey"),
        ("runner.memoryLimit=lots", "/runner/memoryLimit"),
        ("egress.allow={localhost}", "/egress/allow/0"),
        ("gateway.exposedUrl=exposed.example.com", "/gateway/exposedUrl"),
        ("runner.cpuLimit=all", "/runner/cpuLimit"),
        ("gateway.uploadQuota.namespaceBytes=-1", "/gateway/uploadQuota/namespaceBytes"),
        ("gateway.store.index=mysql", "/gateway/store/index"),
        ("gateway.store.index=postgresql", "at '/gateway/store/postgresql/host': minLength: got 0, want 1"),
        ("gateway.replicas=2", "at '/gateway/replicas': 'anyOf' failed"),  # SQLite has one writer
        ("gateway.store.postgresql.port=0", "/gateway/store/postgresql/port"),
        ("gateway.store.objects=s3", "at '/gateway/store/s3/bucket': minLength: got 0, want 3"),
        ("gateway.store.s3.endpoint=weed:8333", "/gateway/store/s3/endpoint"),
    ],
)
def test_values_schema_rejects_a_bad_value(helm, setting, message):
    result = helm("template", "assay", str(CHART), "--set", setting, check=False)
    assert result.returncode != 0, f"--set {setting} was accepted"
    assert "don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr


def test_the_postgresql_index_runs_three_gateway_replicas_with_its_credentials_from_a_secret(helm):
    postgresql = ["--set", "gateway.store.index=postgresql", "--set", "gateway.store.postgresql.host=pg.db.svc"]
    postgresql += ["--set", "gateway.store.postgresql.existingSecret=assay-db"]
    docs = render(helm, "assay-system", *postgresql, "--set", "gateway.persistence.accessMode=ReadWriteMany")
    gateway = next(d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "assay-gateway")
    assert gateway["spec"]["replicas"] == 3 and gateway["spec"]["strategy"] == {"type": "RollingUpdate"}
    env = {e["name"]: e for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ASSAY_DATABASE_URL"]["value"] == "postgresql://pg.db.svc:5432/assay?sslmode=prefer"
    assert env["PGUSER"]["valueFrom"]["secretKeyRef"] == {"name": "assay-db", "key": "username"}
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "assay-db", "key": "password"}
    [claim] = by_kind(docs, "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    scaled = render(helm, "assay-system", *postgresql, "--set", "gateway.replicas=5")
    assert (
        next(d for d in by_kind(scaled, "Deployment") if d["metadata"]["name"] == "assay-gateway")["spec"]["replicas"]
        == 5
    )
    default = render(helm, "assay-system")
    gateway = next(d for d in by_kind(default, "Deployment") if d["metadata"]["name"] == "assay-gateway")
    assert gateway["spec"]["replicas"] == 1 and gateway["spec"]["strategy"] == {"type": "Recreate"}
    names = {e["name"] for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert not names & {"ASSAY_DATABASE_URL", "PGUSER", "PGPASSWORD", "ASSAY_OBJECTS_URL", "AWS_ACCESS_KEY_ID"}


def test_objects_in_s3_take_their_credentials_from_a_secret_and_with_postgresql_need_no_volume(helm):
    s3 = ["--set", "gateway.store.objects=s3", "--set", "gateway.store.s3.bucket=assay-results"]
    s3 += ["--set", "gateway.store.s3.existingSecret=assay-s3", "--set", "gateway.store.s3.endpoint=http://weed:8333"]
    postgresql = ["--set", "gateway.store.index=postgresql", "--set", "gateway.store.postgresql.host=pg"]
    postgresql += ["--set", "gateway.store.postgresql.existingSecret=assay-db"]
    docs = render(helm, "assay-system", *s3, *postgresql)
    gateway = next(d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "assay-gateway")
    env = {e["name"]: e for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ASSAY_OBJECTS_URL"]["value"] == "s3://assay-results/assay?region=us-east-1&endpoint=http://weed:8333"
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {"name": "assay-s3", "key": "access-key-id"}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "assay-s3", "key": "secret-access-key"}
    volumes = {v["name"]: v for v in gateway["spec"]["template"]["spec"]["volumes"]}
    assert volumes["store"] == {"name": "store", "emptyDir": {}} and not by_kind(docs, "PersistentVolumeClaim")
    # The SQLite index still lives on the volume.
    docs = render(helm, "assay-system", *s3)
    assert by_kind(docs, "PersistentVolumeClaim")


def test_default_render_is_accepted_by_the_api_server(cluster, helm, chart_crds, namespace):
    docs = render(helm, namespace)
    kinds = sorted(doc["kind"] for doc in docs)
    assert kinds == sorted(
        [
            "ServiceAccount",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterRoleBinding",
            "Deployment",
            "Deployment",
            "Service",
            "Service",
            "PersistentVolumeClaim",
            "Secret",
        ]
    )
    out = server_dry_run(cluster, namespace, docs)
    for doc in docs:
        assert f"{doc['metadata']['name']} created (server dry run)" in out, out


def test_all_features_render_is_accepted_by_the_api_server(cluster, helm, chart_crds, namespace):
    for crd in (SERVICEMONITOR_CRD, PROMETHEUSRULE_CRD):
        cluster.kubectl("apply", "--server-side", "-f", "-", input=crd)
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/servicemonitors.monitoring.coreos.com",
        "crd/prometheusrules.monitoring.coreos.com",
    )
    docs = render(helm, namespace, "-f", str(CHART / "ci" / "all-features-values.yaml"))
    [ingress] = by_kind(docs, "Ingress")
    monitors = {m["metadata"]["name"]: m for m in by_kind(docs, "ServiceMonitor")}
    assert ingress["spec"]["rules"][0]["host"] == "assay.test.example"
    assert ingress["spec"]["tls"][0]["secretName"] == "assay-tls"
    assert monitors["assay-gateway"]["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]
    assert monitors["assay-operator"]["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "15s"}
    ]
    assert monitors["assay-operator"]["metadata"]["labels"]["release"] == "prometheus"
    [gateway] = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "assay-gateway"]
    env = {e["name"]: e.get("value") for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ASSAY_PUBLIC_URL"] == "https://assay.test.example"
    assert env["ASSAY_AUTHORIZATION_CODE_TTL_SECONDS"] == "120"
    assert env["ASSAY_EXPOSED_URL"] == "https://exposed.test.example"
    assert env["ASSAY_EGRESS_ALLOW"] == "10.20.0.0/16,10.0.5.7:8443" and env["ASSAY_EGRESS_DENY"] == "[fd00::]/8:443"
    assert [
        env[f"ASSAY_UPLOAD_{scope}_MAX_{unit}"] for scope in ("RUN", "NAMESPACE") for unit in ("BYTES", "DOCUMENTS")
    ] == ["536870912", "2000", "0", "50000"]
    [operator] = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "assay-operator"]
    op_env = {e["name"]: e for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert op_env["ASSAY_SMTP_HOST"]["value"] == "smtp.test.example" and op_env["ASSAY_SMTP_PORT"]["value"] == "587"
    assert op_env["ASSAY_SMTP_STARTTLS"]["value"] == "true"
    assert op_env["ASSAY_SMTP_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "smtp-credentials", "key": "password"}
    assert op_env["ASSAY_TICK_CHUNK"]["value"] == "40"
    assert op_env["ASSAY_EGRESS_ALLOW"]["value"] == env["ASSAY_EGRESS_ALLOW"]
    # Every ASSAY_* variable the chart sets is a setting the process reads.
    from assay.api.settings import GatewaySettings
    from assay.operator.settings import OperatorSettings

    for deployment, settings in ((gateway, GatewaySettings), (operator, OperatorSettings)):
        names = [e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]]
        unknown = [n for n in names if n.startswith("ASSAY_") and n[6:].lower() not in settings.model_fields]
        assert not unknown, (
            f"{deployment['metadata']['name']} sets variables {settings.__name__} does not read: {unknown}"
        )
    out = server_dry_run(cluster, namespace, docs)
    assert "ingress.networking.k8s.io/assay-gateway created (server dry run)" in out
    assert "servicemonitor.monitoring.coreos.com/assay-gateway created (server dry run)" in out
    assert "servicemonitor.monitoring.coreos.com/assay-operator created (server dry run)" in out
    assert "prometheusrule.monitoring.coreos.com/assay created (server dry run)" in out
    assert "configmap/assay-dashboard created (server dry run)" in out


def test_images_keys_and_security_contexts_are_wired_through_values(helm):
    docs = render(
        helm,
        "assay-system",
        "--set",
        "runner.image.repository=registry.example/assay-runner",
        "--set",
        "runner.image.tag=1.2.3",
        "--set",
        "operator.image.tag=1.2.3",
        "--set",
        "keys.existingSecret=my-keys",
        "--set",
        "runner.cpuLimit=500m",
    )
    deployments = {d["metadata"]["name"]: d for d in by_kind(docs, "Deployment")}
    operator, gateway = deployments["assay-operator"], deployments["assay-gateway"]
    op = operator["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in op["env"]}
    assert op["image"] == "assay/operator:1.2.3"
    assert env["ASSAY_RUNNER_IMAGE"]["value"] == "registry.example/assay-runner:1.2.3"
    assert (env["ASSAY_RUNNER_CPU_LIMIT"]["value"], env["ASSAY_RUNNER_MEMORY_LIMIT"]["value"]) == ("500m", "1Gi")
    assert env["ASSAY_GATEWAY_URL"]["value"] == "http://assay-gateway.assay-system.svc:8000"
    assert env["ASSAY_UPLOAD_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "my-keys", "key": "upload-key"}
    assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert operator["spec"]["replicas"] == 2 and "--peering=assay" in op["args"]
    gw = gateway["spec"]["template"]["spec"]["containers"][0]
    assert gw["image"] == "assay/gateway:0.1.0"  # no tag given: the chart's appVersion
    assert gateway["spec"]["replicas"] == 1 and gateway["spec"]["strategy"] == {"type": "Recreate"}
    assert not by_kind(docs, "Secret"), "with keys.existingSecret the chart makes no Secret"
    for deployment in (operator, gateway):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert env["ASSAY_METRICS_PORT"]["value"] == "9090"
    # Every Service selects one Deployment's pods and targets a port its container names.
    for service in by_kind(docs, "Service"):
        selector = service["spec"]["selector"].items()
        [target] = [d for d in deployments.values() if selector <= d["spec"]["template"]["metadata"]["labels"].items()]
        names = {
            port["name"]: port["containerPort"] for port in target["spec"]["template"]["spec"]["containers"][0]["ports"]
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in names, (service["metadata"]["name"], port)


@pytest.fixture
def release(cluster, helm, chart_crds, namespace):
    """A real `helm install` into the test namespace. The pods get a node selector no node
    has: this exercises what Helm and the API server do, not the images (which are not built
    here), and the node agent leaves them alone."""
    name = f"a{uuid.uuid4().hex[:8]}"
    pending = [
        "--set",
        "operator.nodeSelector.assay\\.dev/never=scheduled",
        "--set",
        "gateway.nodeSelector.assay\\.dev/never=scheduled",
    ]
    notes = helm("install", name, str(CHART), "--namespace", namespace, *pending).stdout
    yield name, pending, notes
    helm("uninstall", name, "--namespace", namespace, check=False)
    for component in ("operator", "gateway"):
        cluster.kubectl(
            "delete", "clusterrole,clusterrolebinding", f"{name}-assay-{component}", "--ignore-not-found", check=False
        )


def secret_keys(cluster, namespace: str, name: str) -> dict[str, str]:
    out = cluster.kubectl("get", "secret", f"{name}-assay-keys", "-n", namespace, "-o", "yaml").stdout
    return {k: base64.b64decode(v).decode() for k, v in yaml.safe_load(out)["data"].items()}


def test_install_generates_keys_once_and_upgrade_keeps_them(cluster, helm, release, namespace):
    name, pending, notes = release
    assert f"Gateway:  http://{name}-assay-gateway.{namespace}.svc:8000" in notes
    assert f"Secret {name}-assay-keys" in notes
    keys = secret_keys(cluster, namespace, name)
    assert set(keys) == {"upload-key", "token-signing-key"}
    assert all(len(value) == 48 for value in keys.values())
    assert keys["upload-key"] != keys["token-signing-key"]
    helm("upgrade", name, str(CHART), "--namespace", namespace, *pending, "--set", "gateway.retentionDays=30")
    assert secret_keys(cluster, namespace, name) == keys
    deployment = yaml.safe_load(
        cluster.kubectl("get", "deployment", f"{name}-assay-gateway", "-n", namespace, "-o", "yaml").stdout
    )
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ASSAY_RETENTION_DAYS"] == "30"


def can_i(cluster, namespace: str, account: str, verb: str, resource: str, subresource: str) -> bool:
    args = [
        "auth",
        "can-i",
        verb,
        resource,
        "--as",
        f"system:serviceaccount:{namespace}:{account}",
        "-n",
        "elsewhere",
    ]  # a namespace the release is not in: the grants are cluster-wide
    if subresource:
        args += ["--subresource", subresource]
    answer = cluster.kubectl(*args, check=False).stdout.strip()
    assert answer in ("yes", "no"), f"kubectl auth can-i {verb} {resource}: {answer!r}"
    return answer == "yes"


@pytest.mark.parametrize(
    "component, needs, denied",
    [
        ("operator", OPERATOR_NEEDS, OPERATOR_DENIED),
        ("gateway", GATEWAY_NEEDS, GATEWAY_DENIED),
    ],
)
def test_rbac_grants_what_the_code_uses_and_no_more(cluster, release, namespace, component, needs, denied):
    name, _, _ = release
    account = f"{name}-assay-{component}"
    missing = [
        (verb, resource, sub, why)
        for verb, resource, sub, why in needs
        if not can_i(cluster, namespace, account, verb, resource, sub)
    ]
    assert not missing, f"{component} lacks: {missing}"
    granted = [
        (verb, resource, sub)
        for verb, resource, sub in denied
        if can_i(cluster, namespace, account, verb, resource, sub)
    ]
    assert not granted, f"{component} is granted more than it uses: {granted}"


def test_crd_check_catches_a_stale_chart_copy_and_reference(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_crds_for_chart", REPO / "hack" / "gen_crds.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    chart_crds = tmp_path / "chart-crds"
    chart_crds.mkdir()
    for path in (CHART / "crds").glob("*.yaml"):
        (chart_crds / path.name).write_text(path.read_text())
    reference = tmp_path / "README.md"
    reference.write_text((REPO / "crds" / "README.md").read_text())
    monkeypatch.setattr(gen, "CHART_CRD_DIR", chart_crds)
    monkeypatch.setattr(gen, "REFERENCE", reference)
    assert gen.drift() == ""

    (chart_crds / "loadtests.yaml").write_text(
        (chart_crds / "loadtests.yaml").read_text().replace("maximum: 64", "maximum: 65")
    )
    (chart_crds / "widgets.yaml").write_text("kind: CustomResourceDefinition\n")
    reference.write_text(reference.read_text().replace("| `spec.shards` |", "| `spec.shardz` |"))
    diff = gen.drift()
    assert "chart-crds/loadtests.yaml (committed)" in diff
    assert any(line.startswith("+") and line[1:].strip() == "maximum: 64" for line in diff.splitlines())
    assert "widgets.yaml: no kind generates this file any more" in diff
    assert "README.md (committed)" in diff and "+| `spec.shards` |" in diff


def as_service_account(cluster, namespace: str, account: str, path: Path) -> Cluster:
    """The cluster seen with a real token of `account` (TokenRequest), and nothing else."""
    token = cluster.kubectl("create", "token", account, "-n", namespace, "--duration", "2h").stdout.strip()
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "local", "cluster": admin["clusters"][0]["cluster"]}],
                "users": [{"name": account, "user": {"token": token}}],
                "contexts": [
                    {"name": account, "context": {"cluster": "local", "user": account, "namespace": namespace}}
                ],
                "current-context": account,
            }
        )
    )
    return Cluster(kubeconfig=str(path), bin_dir=cluster.bin_dir, state_dir=cluster.state_dir)


def test_operator_and_gateway_work_with_only_the_charts_rbac(cluster, release, namespace, tmp_path):
    """The operator and the gateway, each holding only its chart ServiceAccount's token: a
    ClientCredential is established, a LoadTest runs and uploads its results, the XTC API
    lists it and runs a copy (the gateway creating the LoadTest), a Monitor runs on request,
    and a Schedule's tick CronJob is created and deleted."""
    name, _, _ = release
    org = f"org-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("label", "namespace", namespace, f"assay.dev/org={org}")
    gateway = GatewayProcess(
        as_service_account(cluster, namespace, f"{name}-assay-gateway", tmp_path / "gw.kubeconfig"),
        tmp_path / "store",
        tmp_path / "gateway.log",
    ).start()
    operator = OperatorProcess(
        as_service_account(cluster, namespace, f"{name}-assay-operator", tmp_path / "op.kubeconfig"),
        tmp_path / "operator.log",
        None,
        gateway,
    ).start()  # cluster-wide, as deployed
    scopes = ("LOADTEST_LIST", "LOADTEST_STATUS", "LOADTEST_COPY_RUN")
    try:
        # Started before the credential's 60 s clock: a loaded machine can take a while to import.
        cluster.wait_for("the operator to start", lambda: "runner image" in operator.log(), timeout=120)
        with CountingTarget() as target:
            client_id, secret = create_credential(cluster, namespace, "chart-rbac", scopes=scopes)
            cluster.kubectl(
                "apply",
                "-n",
                namespace,
                "-f",
                "-",
                input=yaml.safe_dump(
                    {
                        "apiVersion": "assay.dev/v1alpha1",
                        "kind": "LoadTest",
                        "metadata": {"name": "least-privilege"},
                        "spec": {
                            "shards": 2,
                            "baseUrl": target.url,
                            "load": {"users": 2, "iterations": 3},
                            "flows": [{"name": "home", "requests": [{"url": "/"}]}],
                        },
                    }
                ),
            )
            token = request_token(cluster, gateway, client_id, secret, scopes)
            base = f"{gateway.url}/public/api/v1/orgs/{org}/projects/{namespace}/loadTests"
            with httpx.Client(headers=bearer(token), timeout=30) as api:

                def finished(number):
                    return lambda: (
                        lambda s: s if s["state"] in ("FINISHED", "FAILED") and s["latestReportNumber"] else None
                    )(api.get(f"{base}/{number}/status").json())

                listing = api.get(base)
                assert listing.status_code == 200, listing.text
                assert [(t["number"], t["name"]) for t in listing.json()["loadTests"]] == [(1, "least-privilege")]
                first = cluster.wait_for("the LoadTest and its uploaded report", finished(1), timeout=180)
                assert (first["state"], first["result"], first["requests"]) == ("FINISHED", "PASSED", 6), first
                copy = api.post(f"{base}/1/runCopy")
                assert copy.status_code == 201, copy.text
                second = cluster.wait_for("the copy and its uploaded report", finished(2), timeout=180)
                assert (second["state"], second["result"], second["requests"]) == ("FINISHED", "PASSED", 6), second
            assert target.total == 12

            # A Monitor run on request, and a Schedule becoming a tick CronJob that goes when
            # the Schedule does.
            cluster.kubectl(
                "apply",
                "-n",
                namespace,
                "-f",
                "-",
                input=yaml.safe_dump_all(
                    [
                        {
                            "apiVersion": "assay.dev/v1alpha1",
                            "kind": "Monitor",
                            "metadata": {"name": "ping"},
                            "spec": {
                                "steps": [
                                    {
                                        "stepType": "request",
                                        "url": target.url + "/ping",
                                        "assertions": [
                                            {"source": "response_status", "comparison": "equal", "value": 200}
                                        ],
                                    }
                                ]
                            },
                        },
                        {
                            "apiVersion": "assay.dev/v1alpha1",
                            "kind": "Schedule",
                            "metadata": {"name": "ping-often"},
                            "spec": {"target": {"kind": "Monitor", "name": "ping"}, "interval": "5m"},
                        },
                    ]
                ),
            )
            cluster.kubectl("annotate", "monitor", "ping", "-n", namespace, "assay.dev/run-request=once")
            monitor = cluster.wait_for(
                "the Monitor run",
                lambda: (lambda s: s if s.get("lastRun", {}).get("result") else None)(
                    kubectl_json(cluster, "get", "monitor", "ping", "-n", namespace).get("status") or {}
                ),
                timeout=180,
            )
            assert monitor["lastRun"]["result"] == "Passed", monitor
            cronjob = cluster.wait_for(
                "the Schedule's tick CronJob",
                lambda: (
                    kubectl_json(cluster, "get", "schedule", "ping-often", "-n", namespace).get("status") or {}
                ).get("cronJobName"),
                timeout=60,
            )
            assert kubectl_json(cluster, "get", "cronjob", cronjob, "-n", namespace)
            cluster.kubectl("delete", "schedule", "ping-often", "-n", namespace)
            cluster.wait_for(
                "the tick CronJob to be deleted",
                lambda: kubectl_json(cluster, "get", "cronjob", cronjob, "-n", namespace) is None,
                timeout=60,
            )
        for process in (operator, gateway):
            denials = re.findall(r'cannot \w+ resource "[^"]+"[^,\']*', process.log())
            assert not denials, sorted(set(denials))
    finally:
        operator.stop()
        gateway.stop()
        print(operator.log()[-3000:], gateway.log()[-3000:], sep="\n", file=sys.stderr)
