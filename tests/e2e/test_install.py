"""Assay as users install it: `helm install` of charts/assay with the built images on a real
node (containerd, kubelet, kube-proxy, CoreDNS), every pod in a container under the chart's
security contexts, probes and resources, the gateway's store on a `local` PersistentVolume,
two operator replicas. One release serves every scenario of this module, in order:

- the pods: uid 10001, read-only root, Ready through their probes, the chart's requests and
  cgroup memory limits, the store's files owned by 10001 on the volume, Services and DNS;
- the demo's LoadTest against the demo API in a pod (runner image, command override),
  reached by its Service name: counted requests equal received ones, the gateway serves the
  report and result archives; the XTC curl sequence through the gateway Service;
- the gateway pod and the working operator replica deleted mid-run: every shard stored once,
  the counts still match, and a running runner pod's uid, cgroup limit and progress lines;
- a Monitor on a 1-minute Schedule (applied first, checked later) runs from its CronJob and
  reports through the gateway, its webhook reaching the demo API;
- `helm upgrade` keeps the keys and the store; `helm uninstall` leaves what the chart's
  README says it leaves.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from assay.crds.contracts.upload import RunGrant, upload_token
from assay.operator.__main__ import peering_priority
from tests.conftest import localkube
from tests.support.credentials import bearer, create_credential, request_token
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "assay"
E2E_VALUES = CHART / "ci" / "e2e-values.yaml"
RELEASE, SYSTEM = "assay", "assay-system"
PROJECT = ORG = "e2e"
STORAGE_CLASS = "assay-local"  # ci/e2e-values.yaml's gateway.persistence.storageClassName
GATEWAY, OPERATOR = f"{RELEASE}-gateway", f"{RELEASE}-operator"
UID = 10001
API = f"http://demo-api.{PROJECT}.svc:8080"
# What the demo's LoadTest calls; the Monitor calls /api/* and posts to /hooks/*.
LOAD_PATHS = ("GET /items", "GET /items/1", "GET /health")
XTC_SCOPES = (
    "LOADTEST_LIST",
    "LOADTEST_STATUS",
    "LOADTEST_DETAILS",
    "LOADTEST_COPY_RUN",
    "LOADTEST_REPORT_DOWNLOAD",
    "LOADTEST_RESULT_DOWNLOAD",
)


# --- the node and the cluster, with waits that say what was going on -----------------------------


class Kube:
    """kubectl against the real node's cluster; `wait_for` fails with the pods, events and
    logs of the namespaces involved."""

    def __init__(self, realnode):
        self.node = realnode
        self.env = realnode.env
        self.kubectl_path = realnode.bin_dir / "kubectl"

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120):
        return self.node.kubectl(*args, input=input, check=check, timeout=timeout)

    def get(self, *args: str) -> dict | None:
        out = self.kubectl("get", *args, "-o", "json", check=False)
        return json.loads(out.stdout) if out.returncode == 0 else None

    def items(self, *args: str) -> list[dict]:
        return (self.get(*args) or {}).get("items") or []

    def diagnostics(self, namespaces=(SYSTEM, PROJECT)) -> str:
        out = [self.kubectl("get", "nodes,pv,pvc", "-A", "-o", "wide", check=False).stdout]
        for ns in namespaces:
            out.append(self.kubectl("get", "pods,jobs,cronjobs", "-n", ns, "-o", "wide", check=False).stdout)
            events = self.kubectl("get", "events", "-n", ns, "--sort-by=.lastTimestamp", check=False).stdout
            out.append("\n".join(events.splitlines()[-25:]))
            for pod in self.items("pods", "-n", ns):
                name = pod["metadata"]["name"]
                ready = all(c.get("ready") for c in pod["status"].get("containerStatuses") or [{}])
                if not ready or name.startswith((OPERATOR, GATEWAY)):
                    logs = self.kubectl("logs", "-n", ns, name, "--all-containers", "--tail=40", check=False)
                    out.append(f"--- logs of {ns}/{name}\n{logs.stdout}{logs.stderr}")
        return "\n".join(out)

    def wait_for(self, what: str, check, timeout: float = 120, interval: float = 1.0, namespaces=(SYSTEM, PROJECT)):
        return wait_for(what, check, timeout, interval, describe=lambda: self.diagnostics(namespaces))

    def pods(self, component: str) -> list[dict]:
        return self.items("pods", "-n", SYSTEM, "-l", f"app.kubernetes.io/component={component}")

    def ready_pods(self, component: str) -> list[dict]:
        return [p for p in self.pods(component) if is_ready(p) and not p["metadata"].get("deletionTimestamp")]

    def exec(self, namespace: str, pod: str, *command: str, check: bool = True):
        return self.kubectl("exec", "-n", namespace, pod, "--", *command, check=check)


def is_ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or [])


class PortForward:
    """`kubectl port-forward svc/assay-gateway`, as the chart's NOTES say; started again when the
    pod behind it was replaced (a forward sticks to one pod)."""

    def __init__(self, port: int, log_path: Path):
        self.port, self.log_path = port, log_path
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def healthy(self) -> bool:
        try:
            return httpx.get(self.url + "/healthz", timeout=3).status_code == 200
        except httpx.HTTPError:
            return False

    def ensure(self, kube: Kube) -> str:
        if self.proc and self.proc.poll() is None and self.healthy():
            return self.url
        self.stop()
        self.proc = subprocess.Popen(
            [str(kube.kubectl_path), "-n", SYSTEM, "port-forward", f"svc/{GATEWAY}", f"{self.port}:8000"],
            stdout=open(self.log_path, "ab"),
            stderr=subprocess.STDOUT,
            env=kube.env,
        )
        kube.wait_for("the gateway through kubectl port-forward", self.healthy, timeout=60)
        return self.url

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


def helm_bin() -> Path:
    out = subprocess.run(["bash", str(REPO / "hack" / "install-helm.sh")], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip().splitlines()[-1]) / "helm"


@dataclass
class Release:
    kube: Kube
    helm: Path
    forward: PortForward
    volume: Path
    values: list[str]

    def helm_run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        out = subprocess.run(
            [str(self.helm), *args], capture_output=True, text=True, env=self.kube.env, timeout=timeout
        )
        if out.returncode != 0:
            raise AssertionError(
                f"helm {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}\n{self.kube.diagnostics()}"
            )
        return out

    @property
    def gateway(self) -> str:
        return self.forward.ensure(self.kube)

    def keys(self) -> dict[str, str]:
        data = self.kube.get("secret", f"{RELEASE}-keys", "-n", SYSTEM)["data"]
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    def stored_run(self, kind: str, owner: dict, run_id: str) -> dict:
        """What the gateway stored for a run (its ingest API, with that run's upload token)."""
        meta = owner["metadata"]
        grant = RunGrant(meta["namespace"], kind, meta["name"], meta["uid"], run_id)
        token = upload_token(self.keys()["upload-key"], grant)
        response = httpx.get(f"{self.gateway}/internal/v1/runs/{run_id}", headers=bearer(token), timeout=30)
        assert response.status_code == 200, response.text
        return response.json()


# --- the release, installed once ---------------------------------------------------------------------


def local_volume(kube: Kube, node_name: str, path: Path) -> None:
    """A StorageClass without a provisioner and one `local` PersistentVolume on the node for the
    gateway's claim: the local plugin applies the pod's fsGroup to it (hostPath would not)."""
    kube.kubectl(
        "apply",
        "-f",
        "-",
        input=yaml.safe_dump_all(
            [
                {
                    "apiVersion": "storage.k8s.io/v1",
                    "kind": "StorageClass",
                    "metadata": {"name": STORAGE_CLASS},
                    "provisioner": "kubernetes.io/no-provisioner",
                    "volumeBindingMode": "WaitForFirstConsumer",
                },
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolume",
                    "metadata": {"name": "assay-e2e-store"},
                    "spec": {
                        "capacity": {"storage": "1Gi"},
                        "accessModes": ["ReadWriteOnce"],
                        "persistentVolumeReclaimPolicy": "Retain",
                        "storageClassName": STORAGE_CLASS,
                        "local": {"path": str(path)},
                        "nodeAffinity": {
                            "required": {
                                "nodeSelectorTerms": [
                                    {
                                        "matchExpressions": [
                                            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node_name]}
                                        ]
                                    }
                                ]
                            }
                        },
                    },
                },
            ]
        ),
    )


def demo_api(kube: Kube) -> None:
    """hack/demo_api.py in a pod of the runner image (a command override, the code from a
    ConfigMap) behind Service demo-api, in the project namespace."""
    kube.kubectl("create", "namespace", PROJECT)
    kube.kubectl("label", "namespace", PROJECT, f"assay.dev/org={ORG}")
    kube.kubectl("create", "configmap", "demo-api", "-n", PROJECT, f"--from-file={REPO / 'hack' / 'demo_api.py'}")
    image = f"assay/runner:{yaml.safe_load((CHART / 'Chart.yaml').read_text())['appVersion']}"
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "demo-api", "labels": {"app": "demo-api"}},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "api",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "env": [{"name": "PYTHONPATH", "value": "/demo"}],
                    # demo_api.py listens on loopback; behind a Service it needs every address.
                    "command": [
                        "python",
                        "-c",
                        "import demo_api, http.server as h; s = h.ThreadingHTTPServer(('0.0.0.0', 8080), "
                        "demo_api.Handler); s.daemon_threads = True; s.serve_forever()",
                    ],
                    "ports": [{"containerPort": 8080}],
                    # Not an HTTP probe: the counters are the LoadTest's, GET /health included.
                    "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 2},
                    "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [{"name": "code", "mountPath": "/demo"}],
                }
            ],
            "volumes": [{"name": "code", "configMap": {"name": "demo-api"}}],
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "demo-api"},
        "spec": {"selector": {"app": "demo-api"}, "ports": [{"port": 8080, "targetPort": 8080}]},
    }
    kube.kubectl("apply", "-n", PROJECT, "-f", "-", input=yaml.safe_dump_all([manifest, service]))


def example(name: str) -> list[dict]:
    """The examples/ manifests, pointed at the demo API's Service."""
    text = (REPO / "examples" / name).read_text().replace("http://127.0.0.1:18080", API)
    return [d for d in yaml.safe_load_all(text) if d]


def demo_counts(kube: Kube) -> dict[str, int]:
    """The demo API's request counters, read inside its pod."""
    out = kube.exec(
        PROJECT,
        "demo-api",
        "python",
        "-c",
        "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8080/stats').read().decode())",
    )
    return json.loads(out.stdout)["requests"]


def load_requests(kube: Kube) -> int:
    return sum(n for k, n in demo_counts(kube).items() if k in LOAD_PATHS)


@pytest.fixture(scope="module")
def release(realnode, tmp_path_factory):
    """Images imported into the node's containerd, the chart installed with --wait, the demo
    API running, and the example Monitor's 1-minute Schedule applied (checked last)."""
    kube = Kube(realnode)
    started = time.monotonic()
    subprocess.run(
        ["bash", str(REPO / "hack" / "build-images.sh"), "--load", str(realnode.containerd_socket)],
        check=True,
        timeout=3600,
    )
    print(f"e2e: images loaded after {time.monotonic() - started:.0f}s", file=sys.stderr)
    helm = helm_bin()
    # The example Monitor's staging environment runs in region "local".
    kube.kubectl("label", "node", realnode.node_name, "topology.kubernetes.io/region=local", "--overwrite")
    volume = tmp_path_factory.mktemp("gateway-store")
    volume.chmod(0o755)
    local_volume(kube, realnode.node_name, volume)

    forward = PortForward(localkube.free_port(), tmp_path_factory.mktemp("forward") / "port-forward.log")
    values = [
        "-f",
        str(E2E_VALUES),
        "--set",
        f"gateway.publicUrl={forward.url}",
        "--set-json",
        f"egress.allow={json.dumps([realnode.service_cidr, realnode.pod_cidr])}",
    ]
    rel = Release(kube, helm, forward, volume, values)
    rel.helm_run(
        "install", RELEASE, str(CHART), "-n", SYSTEM, "--create-namespace", "--wait", "--timeout", "8m", *values
    )
    print(f"e2e: release installed after {time.monotonic() - started:.0f}s", file=sys.stderr)
    demo_api(kube)
    kube.kubectl("wait", "-n", PROJECT, "--for=condition=Ready", "pod/demo-api", "--timeout=120s")
    monitor, staging = example("monitor.yaml")[0], example("schedule.yaml")[0]
    kube.kubectl("apply", "-n", PROJECT, "-f", "-", input=yaml.safe_dump_all([monitor, staging]))
    yield rel
    forward.stop()


# --- the pods ------------------------------------------------------------------------------------------


def test_pods_run_as_10001_on_a_read_only_root_ready_through_their_probes(release):
    kube = release.kube
    operators, gateways = kube.ready_pods("operator"), kube.ready_pods("gateway")
    assert len(operators) == 2 and len(gateways) == 1, kube.diagnostics()
    for pod in [*operators, gateways[0]]:
        name = pod["metadata"]["name"]
        container = pod["spec"]["containers"][0]
        # Ready came from the kubelet's probes: the gateway's readiness on /healthz:http; the
        # operator has a liveness probe only, on Kopf's endpoint, which the kubelet polls.
        probe = container.get("readinessProbe") or container["livenessProbe"]
        assert probe["httpGet"]["path"] == "/healthz"
        restarts = pod["status"]["containerStatuses"][0]["restartCount"]
        assert restarts == 0, f"{name} restarted {restarts} times:\n{kube.diagnostics()}"

        status = kube.exec(SYSTEM, name, "cat", "/proc/1/status").stdout
        uids = re.search(r"^Uid:\s+(.*)$", status, re.M).group(1).split()
        gids = re.search(r"^Gid:\s+(.*)$", status, re.M).group(1).split()
        groups = re.search(r"^Groups:\s*(.*)$", status, re.M).group(1).split()
        assert set(uids) == {str(UID)} and set(gids) == {str(UID)} and str(UID) in groups, status
        assert re.search(r"^CapEff:\s+0+$", status, re.M), status
        assert re.search(r"^NoNewPrivs:\s+1$", status, re.M), status
        assert re.search(r"^Seccomp:\s+2$", status, re.M), status

        denied = kube.exec(SYSTEM, name, "python", "-c", "open('/probe', 'w')", check=False)
        assert denied.returncode != 0 and "Read-only file system" in denied.stderr, denied
        kube.exec(SYSTEM, name, "python", "-c", "open('/tmp/probe', 'w').write('x')")

    # The operator's liveness endpoint answers on the port the probe names.
    op = operators[0]["metadata"]["name"]
    kube.exec(
        SYSTEM, op, "python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz')"
    )


SOURCES = {"operator": "operator", "api": "api", "crds": "crds", "runner": "runner-image/runner"}


def test_the_images_hold_this_trees_code(release):
    """Every Python file of the packages, in the operator and gateway containers, is the one in
    this checkout: a stale image would test old code."""
    wanted = {
        f"{package}/{path.relative_to(REPO / folder)}": hashlib.sha256(path.read_bytes()).hexdigest()
        for package, folder in SOURCES.items()
        for path in (REPO / folder).rglob("*.py")
        if "__pycache__" not in path.parts
    }
    script = (
        "import hashlib, json, os, sys, assay.crds\n"
        "root = os.path.dirname(os.path.dirname(assay.crds.__file__))\n"
        "out = {}\n"
        "for rel in json.load(sys.stdin):\n"
        "    p = os.path.join(root, rel)\n"
        "    out[rel] = hashlib.sha256(open(p, 'rb').read()).hexdigest() if os.path.exists(p) else None\n"
        "print(json.dumps(out))\n"
    )
    kube = release.kube
    for component in ("operator", "gateway"):
        pod = kube.ready_pods(component)[0]["metadata"]["name"]
        out = kube.kubectl(
            "exec", "-i", "-n", SYSTEM, pod, "--", "python", "-c", script, input=json.dumps(list(wanted))
        )
        found = json.loads(out.stdout)
        stale = sorted(rel for rel, digest in wanted.items() if found[rel] != digest)
        assert not stale, f"the {component} image holds other code than this checkout in: {stale}"


def cgroup_memory_limit(kube: Kube, namespace: str, pod: str) -> int:
    # cgroup v2 inside the container, or v1 where the node's kernel mounts that.
    script = (
        "import os\n"
        "for p in ('/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes'):\n"
        "    if os.path.exists(p): print(open(p).read().strip()); break\n"
    )
    return int(kube.exec(namespace, pod, "python", "-c", script).stdout.strip())


def test_resources_are_the_charts_requests_and_the_containers_memory_limit(release):
    kube = release.kube
    chart = yaml.safe_load((CHART / "values.yaml").read_text())
    for component in ("operator", "gateway"):
        wanted = chart[component]["resources"]
        for pod in kube.ready_pods(component):
            name = pod["metadata"]["name"]
            requests = json.loads(
                kube.kubectl(
                    "get", "pod", name, "-n", SYSTEM, "-o", "jsonpath={.spec.containers[0].resources.requests}"
                ).stdout
            )
            assert requests == wanted["requests"], (name, requests)
            limit = {"512Mi": 512 << 20, "1Gi": 1 << 30}[wanted["limits"]["memory"]]
            assert cgroup_memory_limit(kube, SYSTEM, name) == limit, name


def test_the_store_is_owned_by_10001_on_the_local_volume(release):
    kube = release.kube
    pvc = kube.get("pvc", GATEWAY, "-n", SYSTEM)
    assert pvc["status"]["phase"] == "Bound" and pvc["spec"]["volumeName"] == "assay-e2e-store"
    files = [p for p in release.volume.rglob("*")]
    assert files, "the gateway stored nothing on its volume"
    for path in files:
        assert path.stat().st_uid == UID and path.stat().st_gid == UID, (path, path.stat())
    # fsGroup: the kubelet gave the volume's root to group 10001, setgid, so the store may write.
    root = release.volume.stat()
    assert root.st_gid == UID and root.st_mode & 0o2070 == 0o2070, oct(root.st_mode)
    gateway = kube.ready_pods("gateway")[0]["metadata"]["name"]
    assert kube.exec(SYSTEM, gateway, "id", "-G").stdout.split().count(str(UID)) >= 1


def test_services_and_dns_reach_the_gateway_and_the_operators(release):
    kube = release.kube
    gateway_svc = kube.get("service", GATEWAY, "-n", SYSTEM)
    assert [(p["name"], p["port"]) for p in gateway_svc["spec"]["ports"]] == [("http", 8000)]
    metrics_svc = kube.get("service", f"{OPERATOR}-metrics", "-n", SYSTEM)
    assert metrics_svc["spec"]["clusterIP"] == "None"
    endpoints = kube.get("endpoints", f"{OPERATOR}-metrics", "-n", SYSTEM)
    assert sum(len(s.get("addresses") or []) for s in endpoints["subsets"]) == 2

    # From an operator pod: the gateway's in-cluster URL (the one it hands the runner pods) by
    # name, and each replica's /metrics through the headless Service's DNS records.
    op = kube.ready_pods("operator")[0]
    env = {e["name"]: e.get("value") for e in op["spec"]["containers"][0]["env"]}
    assert env["ASSAY_GATEWAY_URL"] == f"http://{GATEWAY}.{SYSTEM}.svc:8000"
    script = (
        "import socket, sys, urllib.request\n"
        f"print(urllib.request.urlopen('{env['ASSAY_GATEWAY_URL']}/healthz', timeout=10).status)\n"
        f"addrs = sorted({{a[4][0] for a in socket.getaddrinfo('{OPERATOR}-metrics.{SYSTEM}.svc', 9090)}})\n"
        "print(len(addrs))\n"
        "for a in addrs: print(urllib.request.urlopen(f'http://{a}:9090/metrics', timeout=10).status)\n"
    )
    out = kube.exec(SYSTEM, op["metadata"]["name"], "python", "-c", script).stdout.split()
    assert out == ["200", "2", "200", "200"], out


# --- the demo's LoadTest and the XTC sequence ------------------------------------------------------


def wait_for_loadtest(kube: Kube, name: str, timeout: float = 300) -> dict:
    def final():
        lt = kube.get("loadtest", name, "-n", PROJECT)
        return lt if ((lt or {}).get("status") or {}).get("phase") in ("Succeeded", "Failed") else None

    return kube.wait_for(f"LoadTest {name} to finish", final, timeout=timeout, interval=2)


def test_the_demo_loadtest_counts_match_and_the_gateway_serves_its_archives(release):
    kube = release.kube
    before = load_requests(kube)
    (loadtest,) = example("loadtest-quick.yaml")
    loadtest["metadata"]["name"] = "demo-shop"
    kube.kubectl("apply", "-n", PROJECT, "-f", "-", input=json.dumps(loadtest))
    done = wait_for_loadtest(kube, "demo-shop")
    status = done["status"]
    assert status["phase"] == "Succeeded", status
    received = load_requests(kube) - before
    assert status["summary"]["requests"] == received > 0, (status["summary"], received)
    assert status["shards"]["succeeded"] == 2

    # The runner pods ran under the chart's runner settings, unprivileged, with no API token.
    pods = kube.items("pods", "-n", PROJECT, "-l", f"batch.kubernetes.io/job-name={status['jobName']}")
    assert len(pods) == 2
    for pod in pods:
        spec = pod["spec"]
        assert spec["securityContext"]["runAsUser"] == UID and spec["securityContext"]["runAsNonRoot"]
        assert spec["automountServiceAccountToken"] is False
        container = spec["containers"][0]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["resources"]["requests"] == {"cpu": "250m", "memory": "256Mi"}
        assert container["image"] == "assay/runner:0.1.0" and container["imagePullPolicy"] == "IfNotPresent"
        logs = kube.kubectl("logs", "-n", PROJECT, pod["metadata"]["name"]).stdout
        # Its start line and its final table (a shard this short may end before a progress line).
        assert "assay-runner: shard" in logs and re.search(r"^total +\d+ +0 ", logs, re.M), logs

    record = release.stored_run("LoadTest", done, status["runId"])
    assert sorted(d["name"] for d in record["documents"]) == ["shard-0.json", "shard-1.json"]
    assert (record["run"]["state"], record["run"]["shardsReceived"]) == ("succeeded", 2)
    assert sorted(a["kind"] for a in record["archives"]) == ["report", "result"]


@pytest.fixture(scope="module")
def xtc(release):
    client_id, secret = create_credential(release.kube, PROJECT, "e2e-xtc", scopes=XTC_SCOPES)
    release.forward.ensure(release.kube)
    return client_id, secret


def xtc_token(release, xtc) -> str:
    release.forward.ensure(release.kube)
    return request_token(release.kube, release.forward, *xtc, XTC_SCOPES)


def test_the_xtc_curl_sequence_through_the_gateway_service(release, xtc):
    kube = release.kube
    token = xtc_token(release, xtc)
    base = f"{release.gateway}/public/api/v1/orgs/{ORG}/projects/{PROJECT}/loadTests"
    before = load_requests(kube)
    with httpx.Client(headers=bearer(token), timeout=60) as api:
        listing = api.get(base)
        assert listing.status_code == 200, listing.text
        (number,) = [t["number"] for t in listing.json()["loadTests"] if t["name"] == "demo-shop"]
        details = api.get(f"{base}/{number}")
        assert details.status_code == 200, details.text
        original = details.json()["summary"]["requests"]
        assert original == kube.get("loadtest", "demo-shop", "-n", PROJECT)["status"]["summary"]["requests"]
        status = api.get(f"{base}/{number}/status")
        assert status.json()["state"] == "FINISHED" and status.json()["result"] == "PASSED", status.text

        copy = api.post(f"{base}/{number}/runCopy")
        assert copy.status_code == 201, copy.text
        made = copy.json()
        assert made["copiedFrom"] == number and copy.headers["location"] == made["links"]["details"]

        def finished():
            s = api.get(f"{base}/{made['number']}/status").json()
            return s if s["state"] in ("FINISHED", "FAILED") and s["latestReportNumber"] else None

        final = kube.wait_for("the XTC copy and its report", finished, timeout=300, interval=2)
        assert (final["state"], final["result"]) == ("FINISHED", "PASSED"), final
        assert final["requests"] == load_requests(kube) - before > 0

        copied = api.get(f"{base}/{made['number']}").json()
        report = api.get(copied["reports"][0]["downloadUrl"])
        assert report.status_code == 200 and report.headers["content-type"] == "application/zip", report.text
        with zipfile.ZipFile(io.BytesIO(report.content)) as archive:
            assert "<html" in archive.read("index.html").decode().lower()
        result = api.get(copied["results"][0]["downloadUrl"])
        assert result.status_code == 200 and result.headers["content-type"] == "application/zip", result.text
        with zipfile.ZipFile(io.BytesIO(result.content)) as archive:
            assert archive.namelist(), "an empty result archive"


# --- deleting the gateway and the working operator mid-run -------------------------------------------


def working(kube: Kube) -> list[str]:
    """The replicas whose last word on the peering was to resume: Kopf starts paused, and
    pauses again in favour of a peer of higher priority."""
    names = []
    for pod in kube.ready_pods("operator"):
        name = pod["metadata"]["name"]
        said = re.findall(r"(Resuming|Pausing) operations", kube.kubectl("logs", "-n", SYSTEM, name).stdout)
        if said and said[-1] == "Resuming":
            names.append(name)
    return names


def leader(kube: Kube) -> str:
    """The working replica: the highest priority, which each replica derives from its pod name."""
    names = [p["metadata"]["name"] for p in kube.ready_pods("operator")]
    expected = max(names, key=peering_priority)
    kube.wait_for(f"{expected} to be the one working replica", lambda: working(kube) == [expected], timeout=60)
    return expected


def test_deleting_the_gateway_and_the_working_operator_mid_run_loses_and_doubles_nothing(release):
    kube = release.kube
    before = load_requests(kube)
    users, iterations = 4, 40
    manifest = {
        "apiVersion": "assay.dev/v1alpha1",
        "kind": "LoadTest",
        "metadata": {"name": "handover"},
        "spec": {
            "shards": 2,
            "baseUrl": API,
            "load": {"users": users, "iterations": iterations},
            # About 40 s per user: long enough to delete both pods while the shards run.
            "flows": [{"name": "browse", "thinkTime": "500ms", "requests": [{"url": "/items"}, {"url": "/items/1"}]}],
        },
    }
    first = leader(kube)
    kube.kubectl("apply", "-n", PROJECT, "-f", "-", input=json.dumps(manifest))

    def running_runners():
        lt = kube.get("loadtest", "handover", "-n", PROJECT) or {}
        job = (lt.get("status") or {}).get("jobName")
        pods = kube.items("pods", "-n", PROJECT, "-l", f"batch.kubernetes.io/job-name={job}") if job else []
        running = [p for p in pods if p["status"].get("phase") == "Running"]
        return running if len(running) == 2 else None

    runners = kube.wait_for("both shards running", running_runners, timeout=120)
    runner = runners[0]["metadata"]["name"]
    # A runner container as the kubelet started it: uid 10001, the chart's memory limit, no
    # writable root, and its progress lines in `kubectl logs`.
    status = kube.exec(PROJECT, runner, "cat", "/proc/1/status").stdout
    assert set(re.search(r"^Uid:\s+(.*)$", status, re.M).group(1).split()) == {str(UID)}, status
    assert cgroup_memory_limit(kube, PROJECT, runner) == 1 << 30
    denied = kube.exec(PROJECT, runner, "python", "-c", "open('/probe', 'w')", check=False)
    assert "Read-only file system" in denied.stderr, denied
    # ...but a writable /tmp, where ssl needs a client certificate to be a file.
    kube.exec(PROJECT, runner, "python", "-c", "import tempfile; tempfile.mkstemp()")
    kube.wait_for(
        "the runner's progress lines",
        lambda: re.search(r"\] users +\d+ .* req/s", kube.kubectl("logs", "-n", PROJECT, runner).stdout),
        timeout=30,
    )

    old_gateway = kube.ready_pods("gateway")[0]["metadata"]["name"]
    kube.kubectl("delete", "pod", "-n", SYSTEM, old_gateway, "--wait=false")
    kube.kubectl("delete", "pod", "-n", SYSTEM, first, "--wait=false")
    lt = wait_for_loadtest(kube, "handover", timeout=300)
    status = lt["status"]
    assert status["phase"] == "Succeeded", status
    planned = users * iterations * 2
    received = load_requests(kube) - before
    assert status["summary"]["requests"] == received == planned, (status["summary"], received)
    # One Job for the run, two pods: nothing ran twice.
    owned = [
        j
        for j in kube.items("jobs", "-n", PROJECT)
        if any(o["uid"] == lt["metadata"]["uid"] for o in j["metadata"].get("ownerReferences") or [])
    ]
    assert [j["metadata"]["name"] for j in owned] == [status["jobName"]]
    assert len(kube.items("pods", "-n", PROJECT, "-l", f"batch.kubernetes.io/job-name={status['jobName']}")) == 2

    kube.wait_for(
        "a new gateway pod",
        lambda: [p for p in kube.ready_pods("gateway") if p["metadata"]["name"] != old_gateway],
        timeout=120,
    )
    kube.wait_for("two operator replicas again", lambda: len(kube.ready_pods("operator")) == 2, timeout=120)
    assert first not in {p["metadata"]["name"] for p in kube.ready_pods("operator")}
    leader(kube)
    record = release.stored_run("LoadTest", lt, status["runId"])
    assert [d["name"] for d in record["documents"]] == ["shard-0.json", "shard-1.json"], record["documents"]
    assert (record["run"]["state"], record["run"]["shardsReceived"]) == ("succeeded", 2)
    assert sorted((a["kind"], a["number"]) for a in record["archives"]) == [("report", 1), ("result", 1)]


# --- the Monitor's 1-minute Schedule, applied when the release came up --------------------------------


def test_a_monitor_on_a_1_minute_schedule_runs_from_its_cronjob_and_reports_through_the_gateway(release):
    kube = release.kube
    schedule = kube.wait_for(
        "the Schedule to be Ready",
        lambda: (lambda s: s if (s or {}).get("status", {}).get("cronJobName") else None)(
            kube.get("schedule", "accounts-api-staging", "-n", PROJECT)
        ),
        timeout=60,
    )
    cronjob = kube.get("cronjob", schedule["status"]["cronJobName"], "-n", PROJECT)
    assert cronjob["spec"]["schedule"] == "* * * * *"

    def scheduled_run():
        monitor = kube.get("monitor", "accounts-api", "-n", PROJECT) or {}
        runs = [
            e
            for e in (monitor.get("status") or {}).get("history") or []
            if e.get("schedule") == "accounts-api-staging" and e.get("result")
        ]
        return (monitor, runs[0]) if runs else None

    # The first tick comes at the next full minute after the Schedule was made Ready.
    monitor, run = kube.wait_for("a scheduled run of accounts-api", scheduled_run, timeout=180, interval=3)
    assert run["result"] == "Passed" and run["environment"] == "staging", run
    ticks = kube.items("jobs", "-n", PROJECT, "-l", "assay.dev/kind!=LoadTest")
    assert any(j["metadata"].get("ownerReferences", [{}])[0].get("kind") == "CronJob" for j in ticks), ticks

    record = release.stored_run("Monitor", monitor, run["runId"])
    assert record["run"]["project"] == PROJECT and record["run"]["result"] == "passed", record["run"]
    assert sorted(d["name"] for d in record["documents"]) == ["monitor-result.json", "monitor-steps.json"]
    counts = demo_counts(kube)
    assert counts.get("POST /api/login", 0) >= 1 and counts.get("GET /api/orders", 0) >= 1, counts
    # The operator's result webhook, to the demo API's Service address: the e2e values allow
    # the service range past the egress policy.
    kube.wait_for(
        "the Monitor's result webhook",
        lambda: demo_counts(kube).get("POST /hooks/monitor-results", 0) >= 1,
        timeout=60,
    )


# --- upgrade and uninstall --------------------------------------------------------------------------


def test_helm_upgrade_keeps_the_keys_and_the_store(release, xtc):
    kube = release.kube
    keys = release.keys()
    token = xtc_token(release, xtc)
    base = f"{release.gateway}/public/api/v1/orgs/{ORG}/projects/{PROJECT}/loadTests"
    before = httpx.get(base, headers=bearer(token), timeout=30).json()["loadTests"]
    old_pods = {p["metadata"]["name"] for p in kube.pods("gateway") + kube.pods("operator")}

    release.helm_run(
        "upgrade",
        RELEASE,
        str(CHART),
        "-n",
        SYSTEM,
        "--wait",
        "--timeout",
        "5m",
        *release.values,
        "--set",
        "gateway.retentionDays=30",
        "--set",
        "operator.runHistoryLimit=12",
    )
    kube.wait_for(
        "only new gateway and operator pods",
        lambda: (lambda pods: len(pods) == 3 and not old_pods & {p["metadata"]["name"] for p in pods})(
            kube.ready_pods("gateway") + kube.ready_pods("operator")
        ),
        timeout=180,
    )
    gateway = kube.ready_pods("gateway")[0]
    env = {e["name"]: e.get("value") for e in gateway["spec"]["containers"][0]["env"]}
    assert env["ASSAY_RETENTION_DAYS"] == "30"
    assert release.keys() == keys

    # The token issued before still verifies (same signing key), and the store kept every run.
    with httpx.Client(headers=bearer(token), timeout=60) as api:
        release.forward.ensure(kube)
        after = api.get(base)
        assert after.status_code == 200, after.text
        assert [(t["number"], t["name"], t["state"]) for t in after.json()["loadTests"]] == [
            (t["number"], t["name"], t["state"]) for t in before
        ]
        shop = next(t for t in before if t["name"] == "demo-shop")
        details = api.get(f"{base}/{shop['number']}").json()
        report = api.get(details["reports"][0]["downloadUrl"])
        assert report.status_code == 200 and len(report.content) == details["reports"][0]["size"]


def test_helm_uninstall_leaves_what_the_chart_readme_says(release):
    kube = release.kube
    readme = (CHART / "README.md").read_text()
    release.helm_run("uninstall", RELEASE, "-n", SYSTEM, "--wait", "--timeout", "3m")
    kube.wait_for("the release's pods to go", lambda: not kube.items("pods", "-n", SYSTEM), timeout=120)

    kinds = kube.kubectl("api-resources", "--verbs=list", "--namespaced", "-o", "name").stdout.split()
    kinds = [k for k in kinds if k not in ("events", "events.events.k8s.io")]
    left = kube.kubectl("get", ",".join(kinds), "-n", SYSTEM, "-o", "name").stdout.split()
    # What every namespace has, whoever installed what.
    left = sorted(n for n in left if n not in ("configmap/kube-root-ca.crt", "serviceaccount/default"))
    assert left == [f"persistentvolumeclaim/{GATEWAY}", f"secret/{RELEASE}-keys"], left
    for name in left:
        assert f"`{name.split('/')[1]}`" in readme
    assert kube.get("pvc", GATEWAY, "-n", SYSTEM)["status"]["phase"] == "Bound"
    # The store's index and the runs' files stay on the volume.
    assert (release.volume / "index.sqlite3").is_file() and any((release.volume / "runs").iterdir())

    cluster_wide = kube.kubectl("get", "clusterroles,clusterrolebindings", "-o", "name").stdout.split()
    assert not [n for n in cluster_wide if f"/{RELEASE}-" in n], cluster_wide
    crds = kube.kubectl("get", "crd", "-o", "name").stdout.split()
    assert {
        f"customresourcedefinition.apiextensions.k8s.io/{p}.assay.dev"
        for p in ("loadtests", "monitors", "schedules", "testsuites", "clientcredentials")
    } <= set(crds)
    assert kube.get("clusterkopfpeering", "assay") is not None
    # The projects' resources stay; a LoadTest without the finalizer goes without the operator.
    assert kube.get("loadtest", "demo-shop", "-n", PROJECT)["metadata"].get("finalizers") is None
    kube.kubectl("delete", "loadtest", "demo-shop", "-n", PROJECT, "--timeout=30s")
    # A Schedule keeps Kopf's finalizer (its resync timer), so with no operator its deletion
    # waits until the finalizer is taken off by hand; its tick CronJob, owned by it, goes with it.
    schedule = kube.get("schedule", "accounts-api-staging", "-n", PROJECT)
    assert schedule["metadata"]["finalizers"] == ["assay.dev/operator"]
    cronjob = schedule["status"]["cronJobName"]
    assert kube.get("cronjob", cronjob, "-n", PROJECT) is not None
    stuck = kube.kubectl("delete", "schedules", "--all", "-n", PROJECT, "--timeout=5s", check=False)
    assert stuck.returncode != 0 and kube.get("schedule", "accounts-api-staging", "-n", PROJECT) is not None
    kube.kubectl(
        "patch",
        "schedule",
        "accounts-api-staging",
        "-n",
        PROJECT,
        "--type=merge",
        "-p",
        '{"metadata":{"finalizers":null}}',
    )
    kube.wait_for(
        "the tick CronJob to go with its Schedule",
        lambda: kube.get("cronjob", cronjob, "-n", PROJECT) is None,
        timeout=60,
    )
