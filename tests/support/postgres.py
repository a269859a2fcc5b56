"""A throwaway PostgreSQL server for the tests: Debian's binaries (hack/install-postgres.sh),
a fresh cluster in a temporary folder on a loopback port, stopped at the end. Each test gets
a schema of its own in it (`fresh_url`), which the store creates and migrates like a new
database, so tests never see each other's rows."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self, *, durable: bool = False) -> None:
        self.durable = durable
        """fsync as a production server does (benchmarks); tests go without."""
        self.bin_dir = Path(
            subprocess.run(
                ["bash", str(REPO / "hack" / "install-postgres.sh")], check=True, capture_output=True, text=True
            ).stdout.strip()
        )
        # PostgreSQL refuses to run as root: then it runs as Debian's `postgres` user, in a
        # folder that user owns (pytest's own temporary folders are root's alone).
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.dir = Path(tempfile.mkdtemp(prefix="assay-pg-"))
        if self._as:
            shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self.port = _free_port()
        self._names = itertools.count()
        self._prefix = "t" + uuid.uuid4().hex[:8]

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self._as, str(self.bin_dir / tool), *args], check=True, capture_output=True, text=True, timeout=120
        )

    def start(self) -> PostgresServer:
        self._run("initdb", "-D", str(self.data), "-U", "assay", "-A", "trust", "-E", "UTF8", "--no-sync")
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c max_connections=400"
        if not self.durable:
            # Durability is not what the tests are about: no fsync keeps a test's schema cheap.
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.dir / "server.log"), "-w", "start")
        return self

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"postgresql://assay@127.0.0.1:{self.port}/postgres"

    def fresh_url(self) -> str:
        """The URL of an index nobody used yet: a new schema, created by the store on first use."""
        return f"{self.url}?schema={self._prefix}_{next(self._names)}"
