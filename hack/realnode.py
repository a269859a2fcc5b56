"""A real Kubernetes node beside the local control plane: pods run in containers.

Starts the control plane of hack/localkube.py in its real-node variant (the API server on the
node's address instead of loopback, node authorization, the node lifecycle controller), then on
this host: a bridge holding the node's address, containerd (runc, the CNI bridge, host-local and
portmap plugins), a kubelet, kube-scheduler, kube-proxy (iptables mode) and CoreDNS as a host
process on the node's address (the kubelet's clusterDNS). Everything comes from
hack/install-node.sh; no registry is reachable, so the pod sandboxes use a local pause image.

    python hack/realnode.py up     [--dir .assay]
    python hack/realnode.py down   [--dir .assay]
    python hack/realnode.py status [--dir .assay]

Nothing is routed off the machine: pod traffic may reach pods, Services and the node's address
only. `down` removes every container, mount, network namespace, link, iptables chain and cgroup
`up` made, also after an `up` that failed half way. One real node per host: kube-proxy owns the
host's KUBE-* chains.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

sys.path.insert(0, str(Path(__file__).resolve().parent))
import localkube  # noqa: E402

REPO = localkube.REPO
STATE_FILE = "realnode.json"
NODE_NAME = "assay-real"
NODE_BRIDGE = "assay-node0"
NODE_IP = "10.243.0.1"
NODE_PREFIX = 24
CNI_BRIDGE = "assay-cni0"
CNI_NETWORK = "assay-pods"
CLUSTER_CIDR = "10.244.0.0/16"
POD_CIDR = "10.244.0.0/24"
SERVICE_CIDR = localkube.SERVICE_CIDR
CLUSTER_DOMAIN = "cluster.local"
CGROUP_ROOT = "assay-node0"
FORWARD_CHAIN = "ASSAY-NODE-FORWARD"
# What `down` sweeps from every iptables table: kube-proxy's, the CNI plugins' and ours.
CHAIN_PREFIXES = ("KUBE-", "CNI-", "ASSAY-NODE-")
CNI_CACHE = Path("/var/lib/cni")
NETNS_DIR = Path("/var/run/netns")
STOP_ORDER = ("kubelet", "kube-scheduler", "kube-proxy", "coredns", "containerd")


@dataclass
class NodeState:
    dir: str
    # containerd's and the kubelet's roots; a short path, because their unix sockets live there.
    base: str
    kubeconfig: str = ""
    api_url: str = ""
    containerd_socket: str = ""
    node_name: str = NODE_NAME
    node_ip: str = NODE_IP
    pod_cidr: str = POD_CIDR
    service_cidr: str = SERVICE_CIDR
    cluster_domain: str = CLUSTER_DOMAIN
    pids: dict[str, int] = field(default_factory=dict)
    ip_forward: str = ""
    started_at: float = 0.0

    @classmethod
    def load(cls, state_dir: Path) -> NodeState | None:
        path = state_dir / STATE_FILE
        if not path.exists():
            return None
        return cls(**json.loads(path.read_text()))

    def save(self) -> None:
        (Path(self.dir) / STATE_FILE).write_text(json.dumps(asdict(self), indent=2))


def tools() -> dict[str, str]:
    """Install (or find) what the node runs; see hack/install-node.sh."""
    out = subprocess.run(
        ["bash", str(REPO / "hack" / "install-node.sh"), "--print"], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def base_dir(state_dir: Path) -> Path:
    # Unix socket paths are limited to 107 bytes; the kubelet's are nested deep in its root.
    if len(str(state_dir)) <= 48:
        return state_dir / "node"
    return Path("/run") / f"assay-node-{hashlib.sha256(str(state_dir).encode()).hexdigest()[:10]}"


def _run(*argv: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, input=input)
    if check and result.returncode != 0:
        raise RuntimeError(f"realnode: {' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


# --- certificates -------------------------------------------------------------------------


def issue_node_certs(pki: Path) -> None:
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    ca_name = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes()).subject
    certs = [
        ("node", localkube._name(f"system:node:{NODE_NAME}", "system:nodes"), {"client": True}),
        ("kubelet-serving", localkube._name(NODE_NAME), {"server": True, "sans": [NODE_IP, NODE_NAME]}),
        ("scheduler", localkube._name("system:kube-scheduler"), {"client": True}),
        ("proxy", localkube._name("system:kube-proxy"), {"client": True}),
        ("coredns", localkube._name("assay:coredns"), {"client": True}),
    ]
    for stem, subject, kwargs in certs:
        key, cert = localkube._issue(ca_key, ca_name, subject, **kwargs)
        localkube._write_key(pki / f"{stem}.key", key)
        localkube._write_cert(pki / f"{stem}.crt", cert)


# CoreDNS's `kubernetes` plugin reads these; no bootstrap role grants exactly them.
COREDNS_RBAC = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "assay:coredns"}
rules:
- {apiGroups: [""], resources: [endpoints, services, pods, namespaces], verbs: [list, watch]}
- {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "assay:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "assay:coredns"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "assay:coredns"}]
"""


# --- host networking ----------------------------------------------------------------------


def link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def link_alias(name: str) -> str:
    try:
        return Path(f"/sys/class/net/{name}/ifalias").read_text().strip()
    except OSError:
        return ""


def make_node_bridge(state_dir: Path) -> None:
    # The alias names the state folder that owns the bridge, so a second `up` elsewhere refuses.
    _run("ip", "link", "add", NODE_BRIDGE, "type", "bridge")
    _run("ip", "link", "set", NODE_BRIDGE, "alias", str(state_dir))
    _run("ip", "addr", "add", f"{NODE_IP}/{NODE_PREFIX}", "dev", NODE_BRIDGE)
    _run("ip", "link", "set", NODE_BRIDGE, "up")


def ensure_forward_guard() -> None:
    """Pods may reach pods, Services and the node; every other forwarded packet is dropped.
    First in FORWARD, ahead of kube-proxy's accepts."""
    for cmd in ("iptables",):
        if _run(cmd, "-w", "-n", "-L", FORWARD_CHAIN, check=False).returncode != 0:
            _run(cmd, "-w", "-N", FORWARD_CHAIN)
            for dest in (POD_CIDR, SERVICE_CIDR, f"{NODE_IP}/32"):
                _run(cmd, "-w", "-A", FORWARD_CHAIN, "-d", dest, "-j", "RETURN")
            _run(cmd, "-w", "-A", FORWARD_CHAIN, "-j", "DROP")
        while _run(cmd, "-w", "-D", "FORWARD", "-s", POD_CIDR, "-j", FORWARD_CHAIN, check=False).returncode == 0:
            pass
        _run(cmd, "-w", "-I", "FORWARD", "1", "-s", POD_CIDR, "-j", FORWARD_CHAIN)


def sweep_iptables() -> list[str]:
    """Delete every rule that jumps to, and every chain named with, one of CHAIN_PREFIXES."""
    removed = []
    for cmd in ("iptables", "ip6tables"):
        if not shutil.which(f"{cmd}-save"):
            continue
        for table in ("filter", "nat", "mangle", "raw"):
            dump = _run(f"{cmd}-save", "-t", table, check=False).stdout
            ours = [
                line.split()[0][1:]
                for line in dump.splitlines()
                if line.startswith(":") and line[1:].startswith(CHAIN_PREFIXES)
            ]
            rules = [
                line.split(None, 1)[1]
                for line in dump.splitlines()
                if line.startswith("-A ") and any(f"-j {c}" in line or f"-g {c}" in line for c in ours)
            ]
            for rule in rules:
                _run(cmd, "-w", "-t", table, "-D", *_split_rule(rule), check=False)
            for chain in ours:
                _run(cmd, "-w", "-t", table, "-F", chain, check=False)
            for chain in ours:
                if _run(cmd, "-w", "-t", table, "-X", chain, check=False).returncode == 0:
                    removed.append(f"{cmd}/{table}/{chain}")
    return removed


def _split_rule(rule: str) -> list[str]:
    import shlex

    return shlex.split(rule)


def kube_chains() -> list[str]:
    found = []
    for cmd in ("iptables-save", "ip6tables-save"):
        if shutil.which(cmd):
            dump = _run(cmd, check=False).stdout
            found += [line[1:].split()[0] for line in dump.splitlines() if line.startswith(":KUBE-")]
    return found


# --- cgroups ------------------------------------------------------------------------------


def cgroup_mounts() -> list[Path]:
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[0] in ("cgroup", "cgroup2"):
            mounts.append(Path(left.split()[4]))
    return sorted(set(mounts))


def make_cgroups() -> None:
    """The kubelet's cgroupRoot must exist in every hierarchy before it starts."""
    for mount in cgroup_mounts():
        root = mount / CGROUP_ROOT
        root.mkdir(exist_ok=True)
        # A new v1 cpuset is empty; its tasks could run nowhere.
        for name in ("cpuset.cpus", "cpuset.mems"):
            if (mount / name).exists() and not (root / name).read_text().strip():
                (root / name).write_text((mount / name).read_text())


def join_cgroup(pid: int, name: str) -> None:
    for mount in cgroup_mounts():
        group = mount / CGROUP_ROOT / name
        group.mkdir(parents=True, exist_ok=True)
        for cpuset in ("cpuset.cpus", "cpuset.mems"):
            if (group / cpuset).exists() and not (group / cpuset).read_text().strip():
                (group / cpuset).write_text((mount / CGROUP_ROOT / cpuset).read_text())
        try:
            (group / "cgroup.procs").write_text(str(pid))
        except OSError:
            pass


def cgroup_pids() -> set[int]:
    pids: set[int] = set()
    for mount in cgroup_mounts():
        root = mount / CGROUP_ROOT
        if root.is_dir():
            for procs in root.rglob("cgroup.procs"):
                try:
                    pids.update(int(p) for p in procs.read_text().split())
                except OSError:
                    pass
    return pids


def remove_cgroups() -> None:
    for mount in cgroup_mounts():
        root = mount / CGROUP_ROOT
        if root.is_dir():
            for group in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                group.rmdir()
            root.rmdir()


# --- processes ----------------------------------------------------------------------------


def shim_pids(socket_path: str) -> set[int]:
    """containerd-shims of our containerd (they outlive it), found by its address."""
    found = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and b"containerd-shim" in argv[0] and socket_path.encode() in argv:
                found.add(int(proc.name))
    return found


def netns_inode(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def kill_all(pids_of, what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while (pids := pids_of()) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
    if pids_of():
        raise RuntimeError(f"realnode: {what} still running after SIGKILL: {sorted(pids_of())}")


def unmount_under(*roots: Path) -> int:
    prefixes = tuple(str(r) + "/" for r in roots)
    count = 0
    for _ in range(5):
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        # /proc/mounts escapes spaces as \040; our paths have none.
        ours = sorted({m for m in mounts if m.startswith(prefixes) or m in {str(r) for r in roots}}, key=len)
        if not ours:
            break
        for mount in reversed(ours):
            if _run("umount", mount, check=False).returncode != 0:
                _run("umount", "-l", mount, check=False)
            count += 1
    return count


# --- readiness ----------------------------------------------------------------------------


def dns_query(server: str, name: str, timeout: float = 2) -> list[str]:
    """The A records `server` answers for `name` (a minimal resolver: no dig on the host)."""
    qid = random.randint(0, 0xFFFF)
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    packet = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + question + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, (server, 53))
        resp, _ = sock.recvfrom(4096)
    if struct.unpack(">H", resp[:2])[0] != qid:
        return []
    answers = struct.unpack(">H", resp[6:8])[0]
    pos = 12 + len(question) + 4
    found = []
    for _ in range(answers):
        while resp[pos] and resp[pos] < 0xC0:
            pos += resp[pos] + 1
        pos += 2 if resp[pos] >= 0xC0 else 1
        rtype, _, _, length = struct.unpack(">HHIH", resp[pos : pos + 10])
        pos += 10
        if rtype == 1 and length == 4:
            found.append(socket.inet_ntoa(resp[pos : pos + 4]))
        pos += length
    return found


def _get_ok(url: str) -> bool:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with urllib.request.urlopen(url, context=ctx, timeout=2) as resp:
        return resp.status == 200


def node_ready(kubectl: list[str]) -> bool:
    out = _run(*kubectl, "get", "node", NODE_NAME, "-o", "json", check=False)
    if out.returncode != 0:
        return False
    node = json.loads(out.stdout)
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))
    tainted = any(t["key"] == "node.kubernetes.io/not-ready" for t in node["spec"].get("taints", []))
    return ready and not tainted


# --- configuration ------------------------------------------------------------------------


def cni_config(base: Path) -> dict:
    return {
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": CNI_BRIDGE,
                "isGateway": True,
                # Nothing leaves the machine, so nothing needs the node's source address.
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(base / "cni" / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "loopback"},
        ],
    }


def containerd_config(base: Path, sock: Path, tool: dict[str, str]) -> str:
    # No registry mirrors or credentials: a pull fails fast, the images are imported.
    return f"""version = 2
root = "{base}/containerd/root"
state = "{base}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{sock}"

[ttrpc]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{base}/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{tool["PAUSE_IMAGE"]}"
  # Without it every sandbox fails ("can't get final child's PID from pipe"): the host runs
  # with an oom_score_adj a container cannot lower.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{tool["CNI_BIN"]}"
    conf_dir = "{base}/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{base}/containerd/runc"
"""


def kubelet_config(base: Path, pki: Path, sock: Path, port: int, healthz_port: int) -> dict:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "containerRuntimeEndpoint": f"unix://{sock}",
        # The host is cgroup v1 with cgroupfs, and swap may be on.
        "failCgroupV1": False,
        "failSwapOn": False,
        "cgroupDriver": "cgroupfs",
        # Everything the kubelet and its pods run in lives under one cgroup `down` removes.
        "cgroupRoot": f"/{CGROUP_ROOT}",
        "kubeletCgroups": f"/{CGROUP_ROOT}/kubelet",
        "address": NODE_IP,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "tlsCertFile": str(pki / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        # Only holders of a certificate from the cluster's CA get past authentication.
        "authorization": {"mode": "AlwaysAllow"},
        "clusterDNS": [NODE_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        # Pods resolve through CoreDNS only; the host's resolvers are off limits.
        "resolvConf": "",
        "podCIDR": POD_CIDR,
        "podLogsDir": str(base / "pod-logs"),
        "registerNode": True,
        "serializeImagePulls": False,
        # A shared development disk: never evict, never collect the imported images.
        "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "staticPodPath": "",
    }


def corefile(kubeconfig: Path, health_port: int) -> str:
    # No `forward`: names outside the cluster get no answer, as nothing is routed off the host.
    return f""".:53 {{
    bind {NODE_IP}
    errors
    health 127.0.0.1:{health_port}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} assay-local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 30
    loop
}}
"""


# --- up / down ----------------------------------------------------------------------------


def up(state_dir: Path = localkube.DEFAULT_DIR, log=print) -> NodeState:
    state_dir = state_dir.resolve()
    existing = NodeState.load(state_dir)
    control = localkube.ClusterState.load(state_dir)
    pids = [*(existing.pids.values() if existing else []), *(control.pids.values() if control else [])]
    if existing and set(existing.pids) == set(STOP_ORDER) and control and all(map(localkube._alive, pids)):
        log(f"realnode: already running, kubeconfig {existing.kubeconfig}")
        return existing
    owner = link_alias(NODE_BRIDGE)
    if link_exists(NODE_BRIDGE) and owner != str(state_dir):
        raise RuntimeError(
            f"realnode: another real node is up on this host (bridge {NODE_BRIDGE}, state {owner or 'unknown'});"
            f" stop it first: python hack/realnode.py down --dir {owner or '...'}"
        )
    if existing or link_exists(NODE_BRIDGE):
        down(state_dir, log=log)
    started = time.monotonic()
    tool = tools()
    bins = Path(tool["KUBE_BIN"])
    base = base_dir(state_dir)
    logs, pki = state_dir / "logs", state_dir / "pki"
    logs.mkdir(parents=True, exist_ok=True)
    sock = base / "containerd" / "containerd.sock"
    state = NodeState(dir=str(state_dir), base=str(base), containerd_socket=str(sock), started_at=time.time())
    state.ip_forward = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    state.save()

    def wait(name: str, check, timeout: float) -> None:
        try:
            localkube._wait(name, check, timeout, logs, name, state.pids[name])
        except (RuntimeError, TimeoutError) as e:
            raise RuntimeError(f"realnode: {name} did not start (log: {logs / name}.log): {e}") from None

    def spawn(name: str, argv: list[str]) -> None:
        state.pids[name] = localkube._spawn(name, argv, logs)
        state.save()

    try:
        make_node_bridge(state_dir)
        cluster = localkube.up(state_dir, agents=[], log=log, node_ip=NODE_IP)
        state.kubeconfig, state.api_url = cluster.kubeconfig, cluster.api_url
        state.save()
        kubectl = [str(bins / "kubectl"), "--kubeconfig", cluster.kubeconfig]
        issue_node_certs(pki)
        for stem, user in [
            ("node", f"system:node:{NODE_NAME}"),
            ("scheduler", "system:kube-scheduler"),
            ("proxy", "system:kube-proxy"),
            ("coredns", "assay:coredns"),
        ]:
            localkube.write_kubeconfig(state_dir / f"{stem}.kubeconfig", pki, cluster.api_url, user, stem)
        _run(*kubectl, "apply", "-f", "-", input=COREDNS_RBAC)

        for sub in ("cni/net.d", "cni/ipam", "containerd", "kubelet", "pod-logs"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        (base / "cni" / "net.d" / "10-assay.conflist").write_text(json.dumps(cni_config(base), indent=2))
        (base / "containerd" / "config.toml").write_text(containerd_config(base, sock, tool))
        make_cgroups()
        spawn("containerd", ["containerd", "--config", str(base / "containerd" / "config.toml")])
        join_cgroup(state.pids["containerd"], "containerd")
        ctr = ["ctr", "--address", str(sock), "-n", "k8s.io"]
        wait("containerd", lambda: _run(*ctr, "version", check=False).returncode == 0, 30)
        for archive in (tool["PAUSE_ARCHIVE"], tool["TINY_ARCHIVE"]):
            _run(*ctr, "images", "import", "--no-unpack", archive)

        ensure_forward_guard()
        kubelet_port, kubelet_healthz = localkube.free_port(), localkube.free_port()
        config = kubelet_config(base, pki, sock, kubelet_port, kubelet_healthz)
        (state_dir / "kubelet.yaml").write_text(json.dumps(config, indent=2))
        spawn(
            "kubelet",
            [
                str(bins / "kubelet"),
                "--config",
                str(state_dir / "kubelet.yaml"),
                "--kubeconfig",
                str(state_dir / "node.kubeconfig"),
                "--root-dir",
                str(base / "kubelet"),
                "--hostname-override",
                NODE_NAME,
                "--node-ip",
                NODE_IP,
                "--v=1",
            ],
        )
        wait("kubelet", lambda: _get_ok(f"http://127.0.0.1:{kubelet_healthz}/healthz"), 60)
        wait("kubelet", lambda: node_ready(kubectl), 120)
        log(f"realnode: node {NODE_NAME} Ready ({NODE_IP})")

        scheduler_port = localkube.free_port()
        sched_kc = str(state_dir / "scheduler.kubeconfig")
        spawn(
            "kube-scheduler",
            [
                str(bins / "kube-scheduler"),
                "--kubeconfig",
                sched_kc,
                "--authentication-kubeconfig",
                sched_kc,
                "--authorization-kubeconfig",
                sched_kc,
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                str(scheduler_port),
                "--leader-elect=false",
                "--v=1",
            ],
        )
        wait("kube-scheduler", lambda: _get_ok(f"https://127.0.0.1:{scheduler_port}/healthz"), 60)

        proxy_healthz = localkube.free_port()
        spawn(
            "kube-proxy",
            [
                str(bins / "kube-proxy"),
                "--kubeconfig",
                str(state_dir / "proxy.kubeconfig"),
                "--proxy-mode",
                "iptables",
                "--hostname-override",
                NODE_NAME,
                "--cluster-cidr",
                CLUSTER_CIDR,
                "--healthz-bind-address",
                f"127.0.0.1:{proxy_healthz}",
                "--metrics-bind-address",
                f"127.0.0.1:{localkube.free_port()}",
                # NodePorts on the node's address only; the host's sysctls stay as they are.
                "--nodeport-addresses",
                f"{NODE_IP}/32",
                "--iptables-localhost-nodeports=false",
                "--conntrack-max-per-core=0",
                "--v=1",
            ],
        )
        wait("kube-proxy", lambda: _get_ok(f"http://127.0.0.1:{proxy_healthz}/healthz"), 60)
        ensure_forward_guard()

        dns_health = localkube.free_port()
        (state_dir / "Corefile").write_text(corefile(state_dir / "coredns.kubeconfig", dns_health))
        spawn("coredns", [tool["COREDNS"], "-conf", str(state_dir / "Corefile")])
        api_service = f"kubernetes.default.svc.{CLUSTER_DOMAIN}"
        wait("coredns", lambda: localkube.SERVICE_IP in dns_query(NODE_IP, api_service), 60)
    except BaseException:
        down(state_dir, log=log)
        raise
    log(f"realnode: up in {time.monotonic() - started:.1f}s; containerd {sock}, kubeconfig {state.kubeconfig}")
    return state


def down(state_dir: Path = localkube.DEFAULT_DIR, log=print) -> None:
    state_dir = state_dir.resolve()
    state = NodeState.load(state_dir)
    base = Path(state.base) if state else base_dir(state_dir)
    sock = str(base / "containerd" / "containerd.sock")
    if state:
        # No grace: whatever they would tidy up on the way out, the rest of `down` removes.
        for name in STOP_ORDER:
            if name in state.pids and name != "containerd":
                localkube._stop(state.pids[name], grace=0.5)
    sandboxes = [p.name for p in (base / "containerd" / "root" / "io.containerd.grpc.v1.cri" / "sandboxes").glob("*")]
    # The pods' network namespaces are known by their processes; find them before those go.
    netns = {ino for pid in cgroup_pids() if (ino := netns_inode(pid))}
    kill_all(lambda: cgroup_pids() | shim_pids(sock), "pod containers and shims")
    if state and "containerd" in state.pids:
        localkube._stop(state.pids["containerd"], grace=2)
    removed_ns = []
    if NETNS_DIR.is_dir():
        for ns in NETNS_DIR.glob("cni-*"):
            try:
                mine = ns.stat().st_ino in netns
            except OSError:
                continue
            if mine:
                _run("umount", str(ns), check=False)
                ns.unlink(missing_ok=True)
                removed_ns.append(ns.name)
    mounts = unmount_under(base, state_dir)
    links = []
    if link_exists(CNI_BRIDGE):
        for line in _run("ip", "-o", "link", "show", "master", CNI_BRIDGE, check=False).stdout.splitlines():
            veth = line.split(":")[1].strip().split("@")[0]
            _run("ip", "link", "del", veth, check=False)
            links.append(veth)
    for bridge in (CNI_BRIDGE, NODE_BRIDGE):
        if link_exists(bridge) and (bridge == CNI_BRIDGE or link_alias(bridge) in ("", str(state_dir))):
            _run("ip", "link", "del", bridge)
            links.append(bridge)
    chains = sweep_iptables()
    remove_cgroups()
    localkube.down(state_dir, log=log)
    if state and state.ip_forward:
        Path("/proc/sys/net/ipv4/ip_forward").write_text(state.ip_forward)
    # libcni caches each attachment's result outside any configurable root, by sandbox ID; the
    # loopback results of sandboxes the kubelet already removed are known by their age only.
    since = state.started_at if state and state.started_at else time.time()
    for path in CNI_CACHE.glob("results/*"):
        if (
            path.name.startswith(f"{CNI_NETWORK}-")
            or any(f"-{sandbox}-" in path.name for sandbox in sandboxes)
            or (path.name.startswith("cni-loopback-") and path.stat().st_mtime >= since)
        ):
            path.unlink(missing_ok=True)
    shutil.rmtree(base, ignore_errors=True)
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    log(
        f"realnode: down ({mounts} mounts, {len(removed_ns)} netns,"
        f" links {links}, {len(chains)} iptables chains removed)"
    )


def status(state_dir: Path) -> int:
    state = NodeState.load(state_dir.resolve())
    if not state:
        print("realnode: not running")
        return 1
    for name, pid in state.pids.items():
        print(f"{name:28} pid {pid:<8} {'running' if localkube._alive(pid) else 'STOPPED'}")
    print(f"node {state.node_name} {state.node_ip}, pods {state.pod_cidr}, containerd {state.containerd_socket}")
    print(f"kubeconfig: {state.kubeconfig}")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--dir", type=Path, default=localkube.DEFAULT_DIR, help="state folder (default: .assay)")
    args = parser.parse_args()
    if args.command == "up":
        up(args.dir)
    elif args.command == "down":
        down(args.dir)
    else:
        sys.exit(status(args.dir))


if __name__ == "__main__":
    main()
