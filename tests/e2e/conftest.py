"""The e2e suite's real node (hack/realnode.py): a control plane, containerd, a kubelet,
kube-scheduler, kube-proxy and CoreDNS on this host, started once per session."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "hack"))
import realnode as stack  # noqa: E402

from tests.support.waiting import wait_for  # noqa: E402


@dataclass
class RealNode:
    """What a test needs to drive the node. Images: `tiny_image` (hack/nodeimage: `serve PORT
    TEXT`, `fetch URL`) and `pause_image` are loaded; `load_image(archive)` imports more (a
    docker-archive or OCI tar) into the kubelet's containerd namespace."""

    state_dir: Path
    kubeconfig: str
    bin_dir: Path
    containerd_socket: str
    node_name: str
    node_ip: str
    pod_cidr: str
    service_cidr: str
    cluster_domain: str
    tiny_image: str
    pause_image: str

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": self.kubeconfig, "PATH": f"{self.bin_dir}:{os.environ['PATH']}"}

    def kubectl(self, *args: str, check: bool = True, timeout: float = 120, input: str | None = None):
        result = subprocess.run(
            [str(self.bin_dir / "kubectl"), *args],
            text=True,
            capture_output=True,
            env=self.env,
            timeout=timeout,
            input=input,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return result

    def load_image(self, archive: str | Path) -> None:
        subprocess.run(
            ["ctr", "--address", self.containerd_socket, "-n", "k8s.io", "images", "import", str(archive)],
            check=True,
            capture_output=True,
        )

    def wait_for(self, what: str, check, timeout: float = 90, interval: float = 0.5):
        return wait_for(what, check, timeout, interval)


@pytest.fixture(scope="session")
def realnode_state_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("realnode")


@pytest.fixture(scope="session")
def realnode(realnode_state_dir: Path) -> RealNode:
    def log(msg: str) -> None:
        print(msg, file=sys.stderr)

    state = stack.up(realnode_state_dir, log=log)
    tools = stack.tools()
    try:
        yield RealNode(
            state_dir=realnode_state_dir,
            kubeconfig=state.kubeconfig,
            bin_dir=Path(tools["KUBE_BIN"]),
            containerd_socket=state.containerd_socket,
            node_name=state.node_name,
            node_ip=state.node_ip,
            pod_cidr=state.pod_cidr,
            service_cidr=state.service_cidr,
            cluster_domain=state.cluster_domain,
            tiny_image=tools["TINY_IMAGE"],
            pause_image=tools["PAUSE_IMAGE"],
        )
    finally:
        stack.down(realnode_state_dir, log=log)


@pytest.fixture
def node_namespace(realnode: RealNode) -> str:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    realnode.kubectl("create", "namespace", name)
    realnode.wait_for(
        "the namespace's default service account",
        lambda: realnode.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
    )
    yield name
    realnode.kubectl("delete", "namespace", name, "--wait=false", check=False)


def pytest_collection_modifyitems(items):
    # A real node needs a control plane too: `-m "not cluster"` (the unit runs) leaves the e2e
    # tests out, `-m cluster` and `make test` take them in.
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.cluster)
