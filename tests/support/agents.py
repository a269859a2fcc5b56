"""Extra node agents on the test control plane: nodes with labels of their own, such as one
node per region, so that runs with node selectors land on the node they ask for."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REGION_LABEL = "topology.kubernetes.io/region"


@contextlib.contextmanager
def node_agents(cluster, tmp_path_factory, labels_by_node: dict[str, dict[str, str]]) -> Iterator[None]:
    """Run one hack/nodeagent.py per node with its labels until the block ends, then delete
    the nodes."""
    procs = []
    for node, labels in labels_by_node.items():
        workdir = tmp_path_factory.mktemp(node)
        log = open(workdir / "agent.log", "ab")
        label_args = [arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")]
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(REPO / "hack" / "nodeagent.py"),
                    "--kubeconfig",
                    cluster.kubeconfig,
                    "--node",
                    node,
                    *label_args,
                    "--workdir",
                    str(workdir / "pods"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=cluster.env,
            )
        )

    def ready():
        items = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
        ready_nodes = {
            n["metadata"]["name"]
            for n in items
            if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))
        }
        return set(labels_by_node) <= ready_nodes

    try:
        cluster.wait_for("the extra node agents' nodes to be Ready", ready, timeout=60)
        yield
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        cluster.kubectl("delete", "node", *labels_by_node, "--wait=false", check=False)


def region_nodes(prefix: str, regions) -> dict[str, dict[str, str]]:
    """{node name: labels} for one node per region."""
    return {f"{prefix}-{region}": {REGION_LABEL: region} for region in regions}
