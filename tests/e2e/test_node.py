"""The real node (hack/realnode.py): pods run in containers with pod IPs, reach each other
through a ClusterIP Service by its DNS name, `kubectl logs` reads them, and `down` leaves
nothing behind on the host."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import RealNode, stack

pytestmark = pytest.mark.e2e


def pod_json(realnode: RealNode, namespace: str, name: str) -> dict:
    return json.loads(realnode.kubectl("get", "pod", name, "-n", namespace, "-o", "json").stdout)


def phase(realnode: RealNode, namespace: str, name: str) -> str:
    return pod_json(realnode, namespace, name)["status"].get("phase", "")


def test_pod_runs_in_a_container_with_a_pod_ip(realnode, node_namespace):
    realnode.kubectl(
        "run", "sleeper", "-n", node_namespace, f"--image={realnode.pause_image}", "--image-pull-policy=Never"
    )
    realnode.wait_for("the pod to run", lambda: phase(realnode, node_namespace, "sleeper") == "Running")
    pod = pod_json(realnode, node_namespace, "sleeper")
    assert pod["spec"]["nodeName"] == realnode.node_name
    ip = pod["status"]["podIP"]
    prefix = realnode.pod_cidr.rsplit(".", 2)[0] + "."
    assert ip.startswith(prefix) and ip != realnode.node_ip, ip
    # A container, not a host process: containerd runs it as a task under its container ID.
    container_id = pod["status"]["containerStatuses"][0]["containerID"]
    assert container_id.startswith("containerd://")
    tasks = subprocess.run(
        ["ctr", "--address", realnode.containerd_socket, "-n", "k8s.io", "tasks", "ls"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert container_id.removeprefix("containerd://") in tasks


def fetch_in_pod(realnode: RealNode, namespace: str, name: str, url: str) -> None:
    """A pod of the tiny image that GETs `url` once (`kubectl logs` has what it got)."""
    realnode.kubectl(
        "run",
        name,
        "-n",
        namespace,
        f"--image={realnode.tiny_image}",
        "--image-pull-policy=Never",
        "--restart=Never",
        "--",
        "fetch",
        url,
    )


def test_pod_reaches_a_service_by_dns_name_and_logs_are_readable(realnode, node_namespace):
    manifest = f"""
apiVersion: v1
kind: Pod
metadata: {{name: web, labels: {{app: web}}}}
spec:
  containers:
  - name: web
    image: {realnode.tiny_image}
    imagePullPolicy: Never
    args: [serve, "8080", greetings]
    readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec: {{selector: {{app: web}}, ports: [{{port: 80, targetPort: 8080}}]}}
"""
    realnode.kubectl("apply", "-n", node_namespace, "-f", "-", input=manifest)
    realnode.wait_for("the server pod", lambda: phase(realnode, node_namespace, "web") == "Running")
    realnode.wait_for(
        "the Service's endpoint",
        lambda: realnode.kubectl(
            "get",
            "endpointslices",
            "-n",
            node_namespace,
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "jsonpath={.items[*].endpoints[?(@.conditions.ready==true)].addresses[0]}",
        ).stdout.strip(),
    )
    url = f"http://web.{node_namespace}.svc.{realnode.cluster_domain}/"
    fetch_in_pod(realnode, node_namespace, "client", url)
    realnode.wait_for(
        "the client pod to finish", lambda: phase(realnode, node_namespace, "client") in ("Succeeded", "Failed")
    )
    logs = realnode.kubectl("logs", "client", "-n", node_namespace).stdout
    assert phase(realnode, node_namespace, "client") == "Succeeded", logs
    assert logs == "200 greetings from web\n"
    assert "serving on :8080" in realnode.kubectl("logs", "web", "-n", node_namespace).stdout


def test_pods_reach_the_api_server_through_the_kubernetes_service(realnode, node_namespace):
    # In-cluster clients use https://kubernetes.default; plain HTTP to it gets the API
    # server's own TLS refusal, which only the API server behind the Service can send.
    fetch_in_pod(realnode, node_namespace, "api", "http://kubernetes.default:443/")
    realnode.wait_for("the pod to finish", lambda: phase(realnode, node_namespace, "api") in ("Succeeded", "Failed"))
    logs = realnode.kubectl("logs", "api", "-n", node_namespace).stdout
    assert logs.startswith("400 Client sent an HTTP request to an HTTPS server"), logs


def test_pods_reach_nothing_off_the_machine(realnode, node_namespace):
    # TEST-NET-1: no pod, Service or node address covers it, so the forward guard drops it.
    fetch_in_pod(realnode, node_namespace, "outside", "http://192.0.2.1/")
    realnode.wait_for("the pod to fail", lambda: phase(realnode, node_namespace, "outside") == "Failed", timeout=60)
    assert "Client.Timeout exceeded" in realnode.kubectl("logs", "outside", "-n", node_namespace).stdout


def alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def leftovers(realnode: RealNode, netns: set[str], pids: list[int]) -> dict[str, list[str]]:
    roots = (str(realnode.state_dir) + "/", str(stack.base_dir(realnode.state_dir)) + "/")
    return {
        "links": [p.name for p in Path("/sys/class/net").iterdir() if p.name.startswith("assay")],
        "veths": [
            p.name
            for p in Path("/sys/class/net").iterdir()
            if (p / "brport" / "bridge").exists() and (p / "brport" / "bridge").resolve().name.startswith("assay")
        ],
        "shims": [str(p) for p in stack.shim_pids(realnode.containerd_socket)],
        "mounts": [
            m
            for m in (line.split()[1] for line in Path("/proc/mounts").read_text().splitlines())
            if m.startswith(roots)
        ],
        "netns": sorted(n for n in netns if (stack.NETNS_DIR / n).exists()),
        "kube chains": stack.kube_chains(),
        "cgroups": [str(m / stack.CGROUP_ROOT) for m in stack.cgroup_mounts() if (m / stack.CGROUP_ROOT).exists()],
        "node dirs": [d for d in (str(stack.base_dir(realnode.state_dir)),) if os.path.exists(d)],
        "processes": [str(pid) for pid in pids if alive(pid)],
    }


def test_down_leaves_nothing_behind(realnode, node_namespace):
    # A running pod, so that there are containers, shims, a netns, a veth and mounts to remove.
    realnode.kubectl(
        "run", "held", "-n", node_namespace, f"--image={realnode.pause_image}", "--image-pull-policy=Never"
    )
    realnode.wait_for("the pod to run", lambda: phase(realnode, node_namespace, "held") == "Running")
    netns = {p.name for p in stack.NETNS_DIR.glob("cni-*")}
    assert netns and stack.shim_pids(realnode.containerd_socket) and stack.kube_chains()
    state = json.loads((realnode.state_dir / "realnode.json").read_text())
    control = json.loads((realnode.state_dir / "localkube.json").read_text())
    pids = [*state["pids"].values(), *control["pids"].values()]
    try:
        stack.down(realnode.state_dir)
        left = leftovers(realnode, netns, pids)
        assert not any(left.values()), left
        # Idempotent: a second down finds nothing and fails on nothing.
        stack.down(realnode.state_dir)
    finally:
        # The node comes back for the rest of the session, with the same kubeconfig path.
        stack.up(realnode.state_dir)
    assert realnode.kubectl("get", "node", realnode.node_name).returncode == 0
