"""A real local Kubernetes control plane for development and tests.

Starts etcd, kube-apiserver and kube-controller-manager (built by hack/build-kube.sh) on
loopback with freshly generated certificates and a service-account key, writes an admin
kubeconfig, and starts the local node agent (hack/nodeagent.py) so that Job and CronJob pods
run. Nothing here is mocked: Jobs, Indexed Jobs, CronJobs, garbage collection and admission are
the real controllers'.

    python hack/localkube.py up   [--dir .assay] [--agent NAME=LABEL,...] [--no-agent]
    python hack/localkube.py down [--dir .assay] [--purge]
    python hack/localkube.py status [--dir .assay]

State (certificates, etcd data, logs, the kubeconfig and the pids) lives in --dir, so
`down` can stop exactly what `up` started.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DIR = REPO / ".assay"
STATE_FILE = "localkube.json"
SERVICE_CIDR = "10.0.0.0/24"
SERVICE_IP = "10.0.0.1"
# Controllers that need a cloud, a CNI or a kubelet's heartbeat make no sense here; the node
# lifecycle controller would taint the agent's node whenever a heartbeat is late.
CONTROLLERS = (
    "*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-service-lb-controller,-route,-persistentvolume-expander"
)
# A real node (hack/realnode.py) heartbeats like any kubelet, and registers tainted not-ready
# until the node lifecycle controller sees it Ready.
CONTROLLERS_REAL_NODE = CONTROLLERS.replace(",-nodelifecycle", "")
DEFAULT_AGENTS = ["assay-local=topology.kubernetes.io/region=local"]


@dataclass
class ClusterState:
    dir: str
    kubeconfig: str
    api_url: str
    etcd_url: str
    pids: dict[str, int] = field(default_factory=dict)
    agents: list[str] = field(default_factory=list)
    # Set when the control plane serves a real node: the address (on the node's bridge) the
    # API server binds and advertises instead of loopback, so that pods reach it.
    node_ip: str = ""

    @classmethod
    def load(cls, state_dir: Path) -> ClusterState | None:
        path = state_dir / STATE_FILE
        if not path.exists():
            return None
        return cls(**json.loads(path.read_text()))

    def save(self) -> None:
        path = Path(self.dir) / STATE_FILE
        path.write_text(json.dumps(asdict(self), indent=2))


def kube_bin_dir() -> Path:
    """Build (or find in the cache) the pinned binaries and return their folder."""
    out = subprocess.run(["bash", str(REPO / "hack" / "build-kube.sh")], check=True, stdout=subprocess.PIPE, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


# The stack's own listeners (etcd, the API server, the controller manager, the gateway, the
# operator) take ports below the kernel's ephemeral range; test targets and other servers that
# bind port 0 land inside it. The local stack's egress policy (ASSAY_EGRESS_ALLOW, see
# assay.runner.egress) opens loopback inside that range only, so a URL a tenant writes reaches
# a test target but never the stack itself.
STACK_PORTS_FROM = 20000


def ephemeral_ports() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def egress_allow() -> str:
    """The local stack's egress allow-list: loopback servers on ephemeral ports."""
    low, high = ephemeral_ports()
    return f"127.0.0.1:{low}-{high},[::1]:{low}-{high}"


def free_port() -> int:
    """A free loopback port for a stack listener, outside the ephemeral range."""
    low = STACK_PORTS_FROM
    high = max(ephemeral_ports()[0] - 1, low + 1000)
    for _ in range(200):
        port = random.randint(low, high)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {low}-{high}")


# --- certificates -------------------------------------------------------------------------


def _write_key(path: Path, key) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _issue(ca_key, ca_name, subject, *, sans=(), client=False, server=False, ca=False):
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_name or subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    usages = []
    if client:
        usages.append(x509.ExtendedKeyUsageOID.CLIENT_AUTH)
    if server:
        usages.append(x509.ExtendedKeyUsageOID.SERVER_AUTH)
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
    if sans:
        names = []
        for san in sans:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(san)))
            except ValueError:
                names.append(x509.DNSName(san))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key or key, hashes.SHA256())
    return key, cert


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def generate_pki(pki: Path, node_ip: str = "") -> None:
    """CA, API server serving cert, client certs, and the service-account signing key; with a
    real node's address also the API server's client cert for kubelets."""
    pki.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _issue(None, None, _name("assay-local-ca"), ca=True)
    _write_key(pki / "ca.key", ca_key)
    _write_cert(pki / "ca.crt", ca_cert)
    sans = [
        "127.0.0.1",
        "::1",
        "localhost",
        SERVICE_IP,
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ] + ([node_ip] if node_ip else [])
    key, cert = _issue(ca_key, ca_cert.subject, _name("kube-apiserver"), sans=sans, server=True)
    _write_key(pki / "apiserver.key", key)
    _write_cert(pki / "apiserver.crt", cert)
    for stem, cn, org in [
        ("admin", "assay-admin", "system:masters"),
        ("controller-manager", "system:kube-controller-manager", None),
        ("kubelet-client", "kube-apiserver-kubelet-client", "system:masters"),
    ]:
        key, cert = _issue(ca_key, ca_cert.subject, _name(cn, org), client=True)
        _write_key(pki / f"{stem}.key", key)
        _write_cert(pki / f"{stem}.crt", cert)
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_key(pki / "sa.key", sa_key)
    (pki / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def write_kubeconfig(path: Path, pki: Path, api_url: str, user: str, stem: str) -> None:
    import base64

    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "assay-local", "cluster": {"server": api_url, "certificate-authority-data": b64(pki / "ca.crt")}}
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(pki / f"{stem}.crt"),
                    "client-key-data": b64(pki / f"{stem}.key"),
                },
            }
        ],
        "contexts": [{"name": "assay-local", "context": {"cluster": "assay-local", "user": user}}],
        "current-context": "assay-local",
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)


# --- processes ----------------------------------------------------------------------------


def _spawn(name: str, argv: list[str], logs: Path) -> int:
    log = open(logs / f"{name}.log", "ab")
    # A session of its own, so `down` can stop the process and anything it started.
    proc = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
    )
    return proc.pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0); reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def _wait(what: str, check, timeout: float, logs: Path, log_name: str, pid: int) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            tail = (logs / f"{log_name}.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{what} exited during start-up; last log lines:\n{tail}")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{what} was not ready after {timeout:.0f}s (see {logs / (log_name + '.log')})")


def _https_ok(url: str, pki: Path) -> bool:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    with urllib.request.urlopen(url, context=ctx, timeout=2) as resp:
        return resp.status == 200


def start_etcd(bins: Path, data: Path, logs: Path) -> tuple[int, str]:
    client, peer = free_port(), free_port()
    url = f"http://127.0.0.1:{client}"
    pid = _spawn(
        "etcd",
        [
            str(bins / "etcd"),
            "--name",
            "assay",
            "--data-dir",
            str(data / "etcd"),
            "--listen-client-urls",
            url,
            "--advertise-client-urls",
            url,
            "--listen-peer-urls",
            f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{peer}",
            "--initial-cluster",
            f"assay=http://127.0.0.1:{peer}",
            # A development store: losing the last writes on a power cut is acceptable, fsync
            # latency on a small shared disk is not.
            "--unsafe-no-fsync",
            "--quota-backend-bytes",
            str(2 * 1024**3),
            "--log-level",
            "warn",
        ],
        logs,
    )
    _wait("etcd", lambda: urllib.request.urlopen(url + "/health", timeout=2).status == 200, 30, logs, "etcd", pid)
    return pid, url


def pki_serves(pki: Path, address: str) -> bool:
    """Whether the API server's certificate is valid for `address`."""
    try:
        cert = x509.load_pem_x509_certificate((pki / "apiserver.crt").read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, x509.ExtensionNotFound):
        return False
    return ipaddress.ip_address(address) in sans.get_values_for_type(x509.IPAddress)


def real_node_flags(pki: Path) -> list[str]:
    # Node authorization gives a kubelet exactly its own node's objects; `kubectl logs/exec`
    # reach the kubelet by its InternalIP with a client cert, and check its serving cert.
    return [
        "--kubelet-preferred-address-types",
        "InternalIP",
        "--kubelet-client-certificate",
        str(pki / "kubelet-client.crt"),
        "--kubelet-client-key",
        str(pki / "kubelet-client.key"),
        "--kubelet-certificate-authority",
        str(pki / "ca.crt"),
    ]


def start_apiserver(bins: Path, pki: Path, etcd_url: str, logs: Path, node_ip: str = "") -> tuple[int, str]:
    port = free_port()
    host = node_ip or "127.0.0.1"
    api_url = f"https://{host}:{port}"
    pid = _spawn(
        "kube-apiserver",
        [
            str(bins / "kube-apiserver"),
            "--etcd-servers",
            etcd_url,
            "--bind-address",
            host,
            "--advertise-address",
            host,
            "--secure-port",
            str(port),
            "--tls-cert-file",
            str(pki / "apiserver.crt"),
            "--tls-private-key-file",
            str(pki / "apiserver.key"),
            "--client-ca-file",
            str(pki / "ca.crt"),
            "--service-account-key-file",
            str(pki / "sa.pub"),
            "--service-account-signing-key-file",
            str(pki / "sa.key"),
            "--service-account-issuer",
            "https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range",
            SERVICE_CIDR,
            "--authorization-mode",
            "Node,RBAC" if node_ip else "RBAC",
            "--allow-privileged=true",
            "--enable-priority-and-fairness=false",
            "--profiling=false",
            "--v=1",
        ]
        + (real_node_flags(pki) if node_ip else []),
        logs,
    )
    _wait("kube-apiserver", lambda: _https_ok(api_url + "/readyz", pki), 120, logs, "kube-apiserver", pid)
    return pid, api_url


def start_controller_manager(
    bins: Path, pki: Path, state_dir: Path, api_url: str, logs: Path, controllers: str = CONTROLLERS
) -> int:
    kubeconfig = state_dir / "controller-manager.kubeconfig"
    write_kubeconfig(kubeconfig, pki, api_url, "system:kube-controller-manager", "controller-manager")
    return _spawn(
        "kube-controller-manager",
        [
            str(bins / "kube-controller-manager"),
            "--kubeconfig",
            str(kubeconfig),
            "--authentication-kubeconfig",
            str(kubeconfig),
            "--authorization-kubeconfig",
            str(kubeconfig),
            "--bind-address",
            "127.0.0.1",
            "--secure-port",
            str(free_port()),
            "--service-account-private-key-file",
            str(pki / "sa.key"),
            "--root-ca-file",
            str(pki / "ca.crt"),
            "--use-service-account-credentials=true",
            "--controllers",
            controllers,
            "--leader-elect=false",
            "--v=1",
        ],
        logs,
    )


def start_agent(name: str, labels: list[str], state_dir: Path, kubeconfig: Path, logs: Path) -> int:
    # Its pods run as processes of this host, in the gateway's and operator's network position,
    # so they get the same egress policy (unless the caller set one of its own).
    argv = [
        sys.executable,
        str(REPO / "hack" / "nodeagent.py"),
        "--kubeconfig",
        str(kubeconfig),
        "--node",
        name,
        "--workdir",
        str(state_dir / "pods" / name),
        "--egress-allow",
        os.environ.get("ASSAY_EGRESS_ALLOW", egress_allow()),
        "--egress-deny",
        os.environ.get("ASSAY_EGRESS_DENY", ""),
    ]
    for label in labels:
        argv += ["--label", label]
    return _spawn(f"nodeagent-{name}", argv, logs)


def _default_service_account_ready(kubectl: Path, kubeconfig: Path) -> bool:
    # The service-account controller creating `default` proves the controller manager is
    # up and talking to the API server; pods cannot be admitted before it exists.
    out = subprocess.run(
        [
            str(kubectl),
            "--kubeconfig",
            str(kubeconfig),
            "get",
            "serviceaccount",
            "default",
            "-n",
            "default",
            "-o",
            "name",
        ],
        capture_output=True,
        text=True,
    )
    return out.returncode == 0


def parse_agent(spec: str) -> tuple[str, list[str]]:
    """`name=k=v,k2=v2` -> (name, ["k=v", "k2=v2"])."""
    name, _, labels = spec.partition("=")
    return name, [label for label in labels.split(",") if label]


def up(state_dir: Path = DEFAULT_DIR, agents: list[str] | None = None, log=print, node_ip: str = "") -> ClusterState:
    """Start the control plane (and the node agents); with `node_ip`, the variant a real node
    (hack/realnode.py) joins: no agents, the API server on that address."""
    state_dir = state_dir.resolve()
    existing = ClusterState.load(state_dir)
    if existing and existing.node_ip == node_ip and all(_alive(pid) for pid in existing.pids.values()):
        log(f"localkube: already running, kubeconfig {existing.kubeconfig}")
        return existing
    if existing:
        down(state_dir, log=log)
    agents = DEFAULT_AGENTS if agents is None and not node_ip else agents or []
    started = time.monotonic()
    bins = kube_bin_dir()
    pki, logs, data = state_dir / "pki", state_dir / "logs", state_dir / "data"
    for d in (logs, data):
        d.mkdir(parents=True, exist_ok=True)
    if not (pki / "sa.key").exists() or (node_ip and not pki_serves(pki, node_ip)):
        generate_pki(pki, node_ip)
    kubeconfig = state_dir / "kubeconfig"
    state = ClusterState(dir=str(state_dir), kubeconfig=str(kubeconfig), api_url="", etcd_url="", node_ip=node_ip)
    try:
        state.pids["etcd"], state.etcd_url = start_etcd(bins, data, logs)
        state.save()
        state.pids["kube-apiserver"], state.api_url = start_apiserver(bins, pki, state.etcd_url, logs, node_ip)
        state.save()
        write_kubeconfig(kubeconfig, pki, state.api_url, "assay-admin", "admin")
        controllers = CONTROLLERS_REAL_NODE if node_ip else CONTROLLERS
        kcm = start_controller_manager(bins, pki, state_dir, state.api_url, logs, controllers)
        state.pids["kube-controller-manager"] = kcm
        state.save()
        _wait(
            "kube-controller-manager",
            lambda: _default_service_account_ready(bins / "kubectl", kubeconfig),
            90,
            logs,
            "kube-controller-manager",
            kcm,
        )
        for spec in agents:
            name, labels = parse_agent(spec)
            state.pids[f"nodeagent-{name}"] = start_agent(name, labels, state_dir, kubeconfig, logs)
            state.agents.append(name)
        state.save()
    except BaseException:
        down(state_dir, log=log)
        raise
    log(f"localkube: up in {time.monotonic() - started:.1f}s, API {state.api_url}, kubeconfig {kubeconfig}")
    return state


def _stop(pid: int, grace: float = 10) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def down(state_dir: Path = DEFAULT_DIR, purge: bool = False, log=print) -> None:
    state_dir = state_dir.resolve()
    state = ClusterState.load(state_dir)
    if state:
        # Agents first, so they can still mark their pods; etcd last.
        order = sorted(state.pids, key=lambda n: (not n.startswith("nodeagent"), n == "etcd"))
        for name in order:
            _stop(state.pids[name])
        (state_dir / STATE_FILE).unlink(missing_ok=True)
        log(f"localkube: stopped {', '.join(order)}")
    else:
        log("localkube: nothing running")
    if purge:
        import shutil

        for sub in ("data", "pki", "logs", "pods"):
            shutil.rmtree(state_dir / sub, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="state folder (default: .assay)")
    parser.add_argument(
        "--agent",
        action="append",
        metavar="NAME=LABELS",
        help="a node agent to run, e.g. us1=topology.kubernetes.io/region=us1 (repeatable)",
    )
    parser.add_argument("--no-agent", action="store_true", help="start no node agent")
    parser.add_argument("--purge", action="store_true", help="with down: delete etcd data and certificates")
    args = parser.parse_args()
    if args.command == "up":
        up(args.dir, [] if args.no_agent else args.agent)
    elif args.command == "down":
        down(args.dir, purge=args.purge)
    else:
        state = ClusterState.load(args.dir.resolve())
        if not state:
            print("localkube: not running")
            sys.exit(1)
        for name, pid in state.pids.items():
            print(f"{name:28} pid {pid:<8} {'running' if _alive(pid) else 'STOPPED'}")
        print(f"kubeconfig: {state.kubeconfig}")


if __name__ == "__main__":
    main()
