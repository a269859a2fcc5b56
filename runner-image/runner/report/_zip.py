"""Writing zips all or nothing, with entries in a fixed order and fixed timestamps."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .metrics import epoch_seconds, iso_utc


def json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=False, ensure_ascii=False) + "\n").encode()


def _zip_time(created_at: str) -> tuple[int, int, int, int, int, int]:
    # Zip timestamps are local-time-less and cannot go before 1980.
    moment = datetime.fromtimestamp(max(epoch_seconds(created_at) or 0, 315532800), UTC)
    return moment.timetuple()[:6]


def write_zip_atomically(out: Path, entries: Iterable[tuple[str, bytes]], *, created_at: str) -> Path:
    """Write `entries` (name, content) into the zip `out` in the order given, all or nothing."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    tmp = Path(tmp_name)
    date_time = _zip_time(created_at)
    try:
        with os.fdopen(fd, "wb") as raw:
            with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                for name, content in entries:
                    info = zipfile.ZipInfo(name, date_time=date_time)
                    info.compress_type = zipfile.ZIP_DEFLATED
                    info.external_attr = 0o644 << 16
                    zf.writestr(info, content)
            raw.flush()
            os.fsync(raw.fileno())
        tmp.chmod(0o644)  # mkstemp creates 0600; archives are meant to be shared
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return out


def now_iso() -> str:
    return iso_utc(datetime.now(UTC).timestamp())
