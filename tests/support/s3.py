"""A throwaway S3-compatible server for the tests: SeaweedFS's `weed` (hack/install-seaweedfs.sh)
with its master, volume, filer and S3 gateway in one process, on loopback ports, data in a
temporary folder, one access key. Each test gets a prefix of its own in one bucket (`fresh_url`):
SeaweedFS gives every bucket volumes of its own, which a bucket per test would soon run out of."""

from __future__ import annotations

import itertools
import json
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ACCESS_KEY = "assay-test"
SECRET_KEY = "assay-test-secret-key"


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class S3Server:
    def __init__(self) -> None:
        self.bin_dir = Path(
            subprocess.run(
                ["bash", str(REPO / "hack" / "install-seaweedfs.sh")],
                check=True,
                capture_output=True,
                text=True,
                timeout=3600,
            ).stdout.strip()
        )
        self.dir = Path(tempfile.mkdtemp(prefix="assay-s3-"))
        self._names = itertools.count()
        self.bucket = "t" + uuid.uuid4().hex[:8]
        self._process: subprocess.Popen | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """What a process talking to the server needs (boto3 reads these)."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}

    def start(self) -> S3Server:
        identities = {
            "identities": [
                {
                    "name": "assay",
                    "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        (self.dir / "s3.json").write_text(json.dumps(identities))
        # Each of weed's servers listens on a port and on its gRPC port; all on loopback.
        master, volume, filer, s3, master_grpc, volume_grpc, filer_grpc, s3_grpc = _free_ports(8)
        self.port = s3
        (self.dir / "data").mkdir()
        args = [
            str(self.bin_dir / "weed"),
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={self.dir / 'data'}",
            f"-master.port={master}",
            f"-master.port.grpc={master_grpc}",
            "-master.volumeSizeLimitMB=64",
            f"-volume.port={volume}",
            f"-volume.port.grpc={volume_grpc}",
            "-volume.max=50",
            "-filer",
            f"-filer.port={filer}",
            f"-filer.port.grpc={filer_grpc}",
            "-s3",
            f"-s3.port={s3}",
            f"-s3.port.grpc={s3_grpc}",
            f"-s3.config={self.dir / 's3.json'}",
        ]
        log = open(self.dir / "weed.log", "wb")  # noqa: SIM115 (the server's, closed by stop)
        self._process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._log = log
        deadline = time.monotonic() + 90
        while True:
            try:
                # Ready once an object can be written: the gateway takes a while after it
                # answers to find its filer and their lock ring.
                client = self.client()
                if self.bucket not in {b["Name"] for b in client.list_buckets().get("Buckets", ())}:
                    client.create_bucket(Bucket=self.bucket)
                client.put_object(Bucket=self.bucket, Key="probe", Body=b"probe")
                client.delete_object(Bucket=self.bucket, Key="probe")
                break
            except Exception:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("weed did not start: see its log above") from None
                time.sleep(0.5)
        return self

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
            self._log.close()
            self._process = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def fresh_url(self) -> str:
        """The objects URL of a prefix nothing is under yet."""
        return f"s3://{self.bucket}/assay-{next(self._names)}?endpoint={self.endpoint}"

    def keys(self, url: str) -> list[str]:
        """Every object's key in the URL's bucket and prefix, without the prefix."""
        bucket, prefix = url[len("s3://") :].split("?")[0].split("/", 1)
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
        return sorted(item["Key"][len(prefix) + 1 :] for page in pages for item in page.get("Contents", ()))
