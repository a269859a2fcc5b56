"""Shared fixtures: the real local control plane, fresh namespaces, the operator process.

The control plane (etcd, kube-apiserver, kube-controller-manager and a node agent, all
built by hack/) starts once per test session in a temporary folder and stops at the end.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.credentials import make_namespace
from tests.support.postgres import PostgresServer
from tests.support.s3 import S3Server
from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parent.parent


def _load_hack(name: str):
    spec = importlib.util.spec_from_file_location(f"hack_{name}", REPO / "hack" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


localkube = _load_hack("localkube")


@dataclass
class Cluster:
    kubeconfig: str
    bin_dir: Path
    state_dir: Path

    @property
    def env(self) -> dict[str, str]:
        # The gateway's and operator's egress policy: loopback test targets (ephemeral ports) only.
        return {
            **os.environ,
            "KUBECONFIG": self.kubeconfig,
            "ASSAY_EGRESS_ALLOW": localkube.egress_allow(),
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        }

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(self.bin_dir / "kubectl"), *args],
            input=input,
            text=True,
            capture_output=True,
            env=self.env,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return result

    def api_client(self):
        import kubernetes

        return kubernetes.config.new_client_from_config(config_file=self.kubeconfig)

    def wait_for(self, what: str, check, timeout: float = 60, interval: float = 0.5):
        """Poll `check` until it returns something truthy; fail with `what` on timeout."""
        return wait_for(what, check, timeout, interval)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> Cluster:
    state_dir = tmp_path_factory.mktemp("localkube")
    state = localkube.up(state_dir, log=lambda msg: print(msg, file=sys.stderr))
    cluster = Cluster(kubeconfig=state.kubeconfig, bin_dir=localkube.kube_bin_dir(), state_dir=state_dir)
    try:
        crds = sorted(str(p) for p in (REPO / "crds").glob("*.yaml"))
        if crds:
            cluster.kubectl("apply", "--server-side", *sum((["-f", c] for c in crds), []))
            cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", *sum((["-f", c] for c in crds), []))
        cluster.wait_for(
            "the node agent's node",
            lambda: cluster.kubectl("get", "nodes", "-o", "name", check=False).stdout.strip(),
            timeout=30,
        )
        yield cluster
    finally:
        localkube.down(state_dir, log=lambda msg: print(msg, file=sys.stderr))


@pytest.fixture
def namespace(cluster: Cluster) -> str:
    name = f"t-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", name)
    cluster.wait_for(
        "the namespace's default service account",
        lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
    )
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


class ManagedProcess:
    """A real child process a test can kill (SIGKILL, mid-whatever) or stop gracefully."""

    proc: subprocess.Popen | None = None
    log_path: Path

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class OperatorProcess(ManagedProcess):
    """`python -m assay.operator` as a real process, killable mid-run: watching `namespaces`
    (one or several), and telling runner pods where `gateway` is when one is given."""

    def __init__(
        self,
        cluster: Cluster,
        log_path: Path,
        namespaces: str | list[str] | None = None,
        gateway: GatewayProcess | None = None,
        *,
        peering: str | None = None,
        priority: int | None = None,
        metrics_port: int | None = None,
        env: dict[str, str] | None = None,
    ):
        self.cluster, self.log_path, self.gateway = cluster, log_path, gateway
        self.namespaces = [namespaces] if isinstance(namespaces, str) else list(namespaces or [])
        self.peering, self.priority, self.metrics_port = peering, priority, metrics_port
        self.extra_env = dict(env or {})
        self.proc: subprocess.Popen | None = None

    @property
    def namespace(self) -> str | None:
        return self.namespaces[0] if self.namespaces else None

    def start(self) -> OperatorProcess:
        args = [sys.executable, "-m", "assay.operator"]
        for namespace in self.namespaces:
            args += ["--namespace", namespace]
        if self.peering:
            args += ["--peering", self.peering]
        if self.priority is not None:
            args += ["--priority", str(self.priority)]
        if self.metrics_port is not None:
            args += ["--metrics-port", str(self.metrics_port)]
        env = {**self.cluster.env, "ASSAY_RUNNER_IMAGE": "assay/runner:test", **self.extra_env}
        if self.gateway:
            env.update(ASSAY_GATEWAY_URL=self.gateway.url, ASSAY_UPLOAD_KEY=self.gateway.UPLOAD_KEY)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd="/", env=env)
        return self


@pytest.fixture
def operator(cluster: Cluster, namespace: str, tmp_path: Path):
    proc = OperatorProcess(cluster, tmp_path / "operator.log", namespace).start()
    yield proc
    proc.stop()
    print(proc.log()[-4000:], file=sys.stderr)


class GatewayProcess(ManagedProcess):
    """`python -m assay.api` as a real uvicorn process on a free loopback port, with its store
    in a temporary folder; killable and restartable on the same store.

    With `--gateway-store=postgresql` every gateway keeps its index in a PostgreSQL schema
    and its documents in an S3 bucket of its own (`servers`, set for the session), so the
    same tests run the gateway on either backend."""

    UPLOAD_KEY = "test-upload-key-0123456789abcdef"
    SIGNING_KEY = "test-token-signing-key-0123456789abcdef"
    servers: tuple[PostgresServer, S3Server] | None = None

    def __init__(
        self, cluster: Cluster, store_dir: Path, log_path: Path, *, shared: tuple[str, str, S3Server] | None = None
    ):
        """`shared` (a database URL, an objects URL, their S3 server) makes this gateway a
        replica of others started with the same."""
        self.cluster, self.store_dir, self.log_path = cluster, store_dir, log_path
        self.port = localkube.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.database_url = self.objects_url = self.s3 = None
        if shared is not None:
            self.database_url, self.objects_url, self.s3 = shared
        elif self.servers is not None:
            postgres, self.s3 = self.servers
            self.database_url, self.objects_url = postgres.fresh_url(), self.s3.fresh_url()

    @property
    def env(self) -> dict[str, str]:
        backend = {"ASSAY_DATABASE_URL": self.database_url, "ASSAY_OBJECTS_URL": self.objects_url}
        return {
            **self.cluster.env,
            "ASSAY_STORE_DIR": str(self.store_dir),
            "ASSAY_PUBLIC_URL": self.url,
            "ASSAY_UPLOAD_KEY": self.UPLOAD_KEY,
            "ASSAY_TOKEN_SIGNING_KEY": self.SIGNING_KEY,
            "ASSAY_KUBECONFIG": self.cluster.kubeconfig,
            **{name: value for name, value in backend.items() if value},
        }

    def open_store(self):
        """The gateway's store, opened beside it as another replica would: for tests that look
        at what was stored."""
        from assay.api.store import Store

        return Store(self.store_dir, database_url=self.database_url, objects_url=self.objects_url)

    def stored_keys(self, pattern: str) -> list[str]:
        """The keys of the stored documents and archives matching `pattern` (fnmatch, where `*`
        spans folders too), on the volume or in the bucket."""
        if self.s3 is not None:
            keys = self.s3.keys(self.objects_url)
        else:
            keys = [str(p.relative_to(self.store_dir)) for p in (self.store_dir / "runs").rglob("*") if p.is_file()]
        return sorted(key for key in keys if fnmatch.fnmatchcase(key, pattern))

    def read_object(self, key: str) -> bytes:
        with self.open_store() as store:
            data = store.objects.get(key)
        assert data is not None, f"no stored object {key}"
        return data

    def start(self) -> GatewayProcess:
        import urllib.request

        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "assay.api", "--port", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd="/",
            env=self.env,
        )

        def healthy():
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                return urllib.request.urlopen(self.url + "/healthz", timeout=1).status == 200
            except OSError:
                return False

        self.cluster.wait_for("the gateway to answer /healthz", healthy, timeout=30, interval=0.2)
        return self


@pytest.fixture
def gateway(cluster: Cluster, tmp_path: Path):
    proc = GatewayProcess(cluster, tmp_path / "store", tmp_path / "gateway.log").start()
    yield proc
    proc.stop()
    print(proc.log()[-4000:], file=sys.stderr)


@pytest.fixture
def operator_with_gateway(cluster: Cluster, namespace: str, gateway: GatewayProcess, tmp_path: Path):
    proc = OperatorProcess(cluster, tmp_path / "operator.log", namespace, gateway=gateway).start()
    yield proc
    proc.stop()
    print(proc.log()[-4000:], file=sys.stderr)


# --- a second tenant, and an operator watching both ---------------------------------------------


@pytest.fixture
def other_account(cluster, namespace):
    name = make_namespace(cluster, f"{namespace}-b", {"purpose": "second-tenant"})
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def two_tenants_operator(cluster, namespace, other_account, gateway, tmp_path):
    proc = OperatorProcess(cluster, tmp_path / "operator.log", [namespace, other_account], gateway).start()
    yield proc
    proc.stop()
    print(proc.log()[-4000:], file=sys.stderr)


# --- the store's index: SQLite, and PostgreSQL on a throwaway server ------------------------------


@pytest.fixture(scope="session")
def postgres():
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def database_url(request) -> str | None:
    """Where a test's store keeps its index: None for SQLite in the store's folder, else a
    PostgreSQL schema of its own. Stores opened with the same URL share the index, as the
    replicas of one gateway do."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres").fresh_url()


@pytest.fixture
def make_store(database_url):
    """Store(root, ...) on the parametrized index."""
    from assay.api.store import Store

    def make(root: Path, **kwargs):
        return Store(root, database_url=database_url, **kwargs)

    return make


@pytest.fixture(scope="session")
def s3():
    """SeaweedFS's S3 gateway; its credentials in this process's environment, where boto3
    (and every child process) finds them."""
    server = S3Server().start()
    saved = {name: os.environ.get(name) for name in server.env}
    os.environ.update(server.env)
    yield server
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    server.stop()


@pytest.fixture
def objects_url(s3) -> str:
    """A bucket of the test's own."""
    return s3.fresh_url()


def pytest_addoption(parser):
    parser.addoption(
        "--gateway-store",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="the gateways the tests start keep their store in SQLite and files (the default) "
        "or in PostgreSQL and S3, on servers the suite starts",
    )


def pytest_collection_modifyitems(config, items):
    """On PostgreSQL and S3 the tests that start a gateway run; the rest would repeat the
    default run unchanged."""
    if config.getoption("--gateway-store") == "sqlite":
        return
    selected = [item for item in items if "gateway" in getattr(item, "fixturenames", ())]
    config.hook.pytest_deselected(items=[item for item in items if item not in selected])
    items[:] = selected


@pytest.fixture(scope="session", autouse=True)
def gateway_store(request):
    """Every GatewayProcess on the backend `--gateway-store` names."""
    if request.config.getoption("--gateway-store") == "postgresql":
        GatewayProcess.servers = (request.getfixturevalue("postgres"), request.getfixturevalue("s3"))
    yield request.config.getoption("--gateway-store")
    GatewayProcess.servers = None
