"""Where the store keeps documents and archives, and everything in which the two places differ.

An object has a key, `runs/<run id>/<sha256[:16]>-<name>` for a document and
`runs/<run id>/archives/<kind>-<n>.zip` for an archive; the index's `path` column holds it.

                    the volume (the default)            S3-compatible object storage
    where           <root>/<key>                        s3://bucket/prefix/<key> (ASSAY_OBJECTS_URL)
    a write         a temporary file, fsynced, renamed  one PUT (atomic: whole or absent)
                    over the key (files.py)
    an archive      staged in its final folder, renamed staged under staging/, copied to its
                    to its key in the index transaction key in the index transaction
                    (`stage`, `commit`)                 (`stage`, `commit`)
    a local file    the object's own file               downloaded once into <root>/cache/
                    (`local_file`: FileResponse, the    (keys are never rewritten, so a
                    shard merge's links)                cached copy never goes stale)
    sweeping        files and staged ones older than    objects and staged ones older than
                    an hour that no index row names     an hour that no row names; old cache

Either way the durability rules of store.py hold: an object is complete before the row naming
it commits, a key is never rewritten, and what an interrupted write leaves behind is swept.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from . import files

_CHUNK = 1 << 20


class VolumeObjects:
    """Objects as files under the store's folder."""

    def __init__(self, root: Path):
        self.root = root
        self.runs_dir = files.ensure_dir(root / "runs")
        self.staging_dir = files.ensure_dir(root / "staging")

    def path(self, key: str) -> Path:
        return self.root / key

    def local_file(self, key: str) -> Path:
        return self.root / key

    def put(self, key: str, data: bytes) -> None:
        files.write_atomically(self.root / key, data)

    def get(self, key: str) -> bytes | None:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            return None

    def exists(self, key: str) -> bool:
        return (self.root / key).exists()

    def delete(self, key: str) -> None:
        files.discard(self.root / key)

    def delete_run(self, run_id: str) -> None:
        files.remove_tree(self.runs_dir / run_id)

    def stage(self, source: Path, key: str) -> tuple[Path, int, str]:
        """Copy `source` next to where `key` goes; (staged, size, sha256)."""
        return files.stage_copy(source, (self.root / key).parent)

    def commit(self, staged: Path, key: str) -> None:
        files.commit_staged(staged, self.root / key)

    def discard(self, staged: Path) -> None:
        files.discard(staged)

    def sweep(self, referenced: set[str], now: float, max_age: float) -> int:
        candidates = [*self.staging_dir.iterdir()]
        for run_dir in self.runs_dir.iterdir():
            if run_dir.is_dir():
                candidates += [p for p in run_dir.iterdir() if p.is_file()]
                if (run_dir / "archives").is_dir():
                    candidates += list((run_dir / "archives").iterdir())
        removed = 0
        for path in candidates:
            if path.is_file() and str(path.relative_to(self.root)) in referenced:
                continue
            try:
                if now - path.stat().st_mtime < max_age:
                    continue
            except FileNotFoundError:
                continue
            if path.is_dir():
                files.remove_tree(path)
            else:
                files.discard(path)
            removed += 1
        return removed


class S3Objects:
    """Objects in an S3-compatible bucket, which several gateway replicas share.

    `url` is s3://bucket[/prefix][?endpoint=https://host:port&region=name&addressing=path];
    without an endpoint, AWS's. The credentials are boto3's usual ones (AWS_ACCESS_KEY_ID and
    AWS_SECRET_ACCESS_KEY, a web identity, an instance role)."""

    def __init__(self, url: str, root: Path):
        import boto3
        from botocore.config import Config

        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"the objects URL must be s3://bucket[/prefix], not {url!r}")
        query = dict(parse_qsl(parts.query))
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/") + "/" if parts.path.strip("/") else ""
        self.root = root
        self.cache_dir = files.ensure_dir(root / "cache")
        self.staging_dir = files.ensure_dir(root / "staging")
        config = Config(
            s3={"addressing_style": query.get("addressing", "path")},
            retries={"max_attempts": 5, "mode": "standard"},
            max_pool_connections=50,
        )
        self.client = boto3.session.Session().client(
            "s3", endpoint_url=query.get("endpoint"), region_name=query.get("region", "us-east-1"), config=config
        )
        self._missing = (self.client.exceptions.NoSuchKey,)

    def _key(self, key: str) -> str:
        return self.prefix + key

    def path(self, key: str) -> Path:
        return self.cache_dir / key

    def local_file(self, key: str) -> Path:
        path = self.cache_dir / key
        if not path.exists():
            folder = files.ensure_dir(path.parent)
            tmp = folder / f"{files.TEMP_PREFIX}{uuid.uuid4().hex}"
            try:
                self.client.download_file(self.bucket, self._key(key), str(tmp))
                tmp.chmod(0o644)
                os.replace(tmp, path)
            finally:
                files.discard(tmp)
        return path

    def put(self, key: str, data: bytes) -> None:
        # The server checks the bytes it received against their MD5.
        digest = hashlib.md5(data, usedforsecurity=False).digest()
        self.client.put_object(
            Bucket=self.bucket, Key=self._key(key), Body=data, ContentMD5=base64.b64encode(digest).decode()
        )

    def get(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self._missing:
            return None

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        files.discard(self.cache_dir / key)

    def _listing(self, prefix: str) -> Iterator[tuple[str, float]]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(prefix))
        for page in pages:
            for item in page.get("Contents", ()):
                yield item["Key"][len(self.prefix) :], item["LastModified"].timestamp()

    def _delete_keys(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = [{"Key": self._key(key)} for key in keys[start : start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def delete_run(self, run_id: str) -> None:
        self._delete_keys([key for key, _ in self._listing(f"runs/{run_id}/")])
        files.remove_tree(self.cache_dir / "runs" / run_id)

    def stage(self, source: Path, key: str) -> tuple[str, int, str]:
        """Upload `source` under a staging key of its own; (staging key, size, sha256)."""
        digest, size = hashlib.sha256(), 0
        with open(source, "rb") as src:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
        staged = f"staging/{uuid.uuid4().hex}-{Path(key).name}"
        self.client.upload_file(str(source), self.bucket, self._key(staged))
        return staged, size, digest.hexdigest()

    def commit(self, staged: str, key: str) -> None:
        self.client.copy_object(
            Bucket=self.bucket, Key=self._key(key), CopySource={"Bucket": self.bucket, "Key": self._key(staged)}
        )
        self.delete(staged)

    def discard(self, staged: str) -> None:
        with contextlib.suppress(*self._missing):
            self.delete(staged)

    def sweep(self, referenced: set[str], now: float, max_age: float) -> int:
        """Unreferenced objects and staged ones older than `max_age`; local scratch space and
        cached copies as old (a cached copy is downloaded again when needed)."""
        stale = [
            key
            for prefix in ("runs/", "staging/")
            for key, modified in self._listing(prefix)
            if key not in referenced and now - modified >= max_age
        ]
        self._delete_keys(stale)
        removed = len(stale)
        for path in [*self.staging_dir.iterdir()]:
            with contextlib.suppress(FileNotFoundError):
                if now - path.stat().st_mtime >= max_age:
                    files.remove_tree(path) if path.is_dir() else files.discard(path)
                    removed += 1
        for path in [p for p in self.cache_dir.rglob("*") if p.is_file()]:
            with contextlib.suppress(FileNotFoundError):
                if now - path.stat().st_atime >= max_age:
                    files.discard(path)
        return removed


def objects_for(root: Path, objects_url: str | None) -> VolumeObjects | S3Objects:
    """S3 when an objects URL is given, else files on the store's volume."""
    return S3Objects(objects_url, root) if objects_url else VolumeObjects(root)
