"""`make up` / `make down`: the local stack comes up usable and goes down without leftovers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import localkube

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[2]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def test_stack_up_serves_loadtests_and_down_leaves_no_process(tmp_path, cluster):
    # `cluster` only guarantees the binaries are built; this test runs a stack of its own.
    port, demo_port = localkube.free_port(), localkube.free_port()
    env = {
        **os.environ,
        "ASSAY_STATE_DIR": str(tmp_path / "state"),
        "ASSAY_GATEWAY_PORT": str(port),
        "DEMO_PORT": str(demo_port),
    }
    up = subprocess.run(["bash", "hack/stack.sh", "up"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        stack_env = dict(line.split("=", 1) for line in (tmp_path / "state" / "env").read_text().splitlines())
        kubeconfig = stack_env["KUBECONFIG"]
        assert Path(kubeconfig).exists()
        get = subprocess.run(
            [str(cluster.bin_dir / "kubectl"), "--kubeconfig", kubeconfig, "get", "loadtests", "-A"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert get.returncode == 0, get.stderr
        assert stack_env["ASSAY_GATEWAY_URL"] == f"http://127.0.0.1:{port}"
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
        # The examples' target, for a first `kubectl apply -f examples/loadtest.yaml` by hand.
        products = httpx.get(f"http://127.0.0.1:{demo_port}/api/products?page=1", timeout=10)
        assert products.status_code == 200 and products.json()["items"][0]["id"] == 1

        def regions():
            nodes = subprocess.run(
                [
                    str(cluster.bin_dir / "kubectl"),
                    "--kubeconfig",
                    kubeconfig,
                    "get",
                    "nodes",
                    "-L",
                    "topology.kubernetes.io/region",
                    "--no-headers",
                ],
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout
            return {line.split()[-1] for line in nodes.splitlines() if line.strip()} >= {"local", "us1", "eu1"}

        cluster.wait_for("a node agent per region", regions, timeout=60)
        pids = json.loads((tmp_path / "state" / "localkube.json").read_text())["pids"]
        for part in ("operator", "gateway", "demo-api"):
            pids[part] = int((tmp_path / "state" / f"{part}.pid").read_text())
        assert set(pids) >= {"etcd", "kube-apiserver", "kube-controller-manager", "operator", "gateway", "demo-api"}
        assert all(alive(pid) for pid in pids.values())
    finally:
        down = subprocess.run(
            ["bash", "hack/stack.sh", "down"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
        )
    assert down.returncode == 0, down.stdout + down.stderr
    left = {name: pid for name, pid in pids.items() if alive(pid)}
    assert not left, f"still running after make down: {left}"
    assert not (tmp_path / "state" / "env").exists()


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_stack_up_refuses_a_taken_gateway_port(tmp_path, cluster):
    # Another process holds the gateway's port: `up` must say so, and leave no .assay/env
    # pointing at that process.
    squatter = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port := localkube.free_port())],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {**os.environ, "ASSAY_STATE_DIR": str(tmp_path / "state"), "ASSAY_GATEWAY_PORT": str(port)}
    try:
        cluster.wait_for("the squatter to listen", lambda: not port_free(port))
        up = subprocess.run(
            ["bash", "hack/stack.sh", "up"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
        )
    finally:
        subprocess.run(["bash", "hack/stack.sh", "down"], cwd=REPO, env=env, capture_output=True, timeout=120)
        squatter.terminate()
        squatter.wait(10)
    assert up.returncode != 0, up.stdout
    assert f"port {port} for the gateway is taken by" in up.stderr, up.stderr
    assert f"pid={squatter.pid}," in up.stderr, up.stderr
    assert not (tmp_path / "state" / "env").exists()
    assert not (tmp_path / "state" / "gateway.pid").exists()
