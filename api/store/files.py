"""Durable file writes on the store's volume: all or nothing, and still there after a crash.

A file is written to a temporary name in its final folder, flushed and fsynced, renamed over
its final name (atomic on POSIX file systems), and the folder is fsynced so the rename itself
survives a power cut. A reader sees the old file or the new one, never a part of one; a
writer killed half-way leaves a `.tmp-*` file that `sweep_temporaries` removes later.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

TEMP_PREFIX = ".tmp-"
_COPY_CHUNK = 1 << 20


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(path: Path) -> Path:
    """Create `path` and its missing parents, fsyncing each new entry's parent."""
    path = Path(path)
    if path.is_dir():
        return path
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir()
        fsync_dir(folder.parent)
    return path


def _temporary(folder: Path, name: str) -> tuple[int, Path]:
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{name[:40]}.", dir=folder)
    return fd, Path(tmp)


def write_atomically(path: Path, data: bytes) -> Path:
    """Write `data` to `path` all or nothing, durably."""
    path = Path(path)
    folder = ensure_dir(path.parent)
    fd, tmp = _temporary(folder, path.name)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        tmp.chmod(0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(folder)
    return path


def stage_copy(source: Path, folder: Path) -> tuple[Path, int, str]:
    """Copy `source` to a fsynced temporary file in `folder`; returns (temporary, size, sha256).
    The caller renames it into place (`commit_staged`) or discards it."""
    folder = ensure_dir(folder)
    fd, tmp = _temporary(folder, Path(source).name)
    digest, size = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            while chunk := src.read(_COPY_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        tmp.chmod(0o644)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return tmp, size, digest.hexdigest()


def commit_staged(tmp: Path, path: Path) -> None:
    os.replace(tmp, path)
    fsync_dir(path.parent)


def discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        Path(path).unlink()


def remove_tree(path: Path) -> None:
    if Path(path).exists():
        shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            fsync_dir(Path(path).parent)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as src:
        while chunk := src.read(_COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
