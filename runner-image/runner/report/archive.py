"""Result and report archives: the two zips a load-test run leaves behind.

* The result archive keeps the raw per-shard metrics exactly as the runners wrote them, with
  a manifest (run, load test, shard count, creation time, SHA-256 of every file), so a report
  can be rebuilt or audited later. When the shards kept timer records (`spec.timers`), it also
  holds them in Xceptance XLT's result layout under `xlt/`
  (`xlt/<shard-NNNN>/<flow>/<user>/timers.csv`, see xlt.py): extract `xlt/` and run XLT's
  report generator on it (README.md). The manifest's `xlt` says per shard how many records
  were seen and kept; `sampled` means XLT's counts fall short of the report's.
* The report archive is the static report: `index.html` (open it from the zip, no network
  needed), `report.json` (the summary comparison reports are built from) and three CSV tables.

Both are written atomically (a temporary file in the target folder, renamed over the target
once complete), so a reader never sees half an archive and a failed write leaves whatever was
there before. Entries come in a fixed order with fixed timestamps: the same input gives the
same bytes.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._zip import json_bytes, now_iso, write_zip_atomically
from .html import render_report
from .summary import SUMMARY_KIND, errors_csv, requests_csv, summarize, timeline_csv
from .xlt import shard_timer_files

RESULT_ARCHIVE_KIND = "assay-result-archive"
REPORT_FILES = ("index.html", "report.json", "requests.csv", "timeline.csv", "errors.csv")


class ArchiveError(ValueError):
    """An archive cannot be built from this input, or a file is not the archive it should be."""


# --- result archive -----------------------------------------------------------------------------


def _read_shard(path: Path) -> tuple[bytes, dict]:
    content = path.read_bytes()
    try:
        data = json.loads(content)
    except ValueError as exc:
        raise ArchiveError(f"{path}: not shard metrics JSON ({exc})") from None
    if not isinstance(data, dict) or "shard" not in data:
        raise ArchiveError(f"{path}: not shard metrics JSON (no shard number)")
    return content, data


def build_result_archive(shard_files: list[Path], out: Path, *, meta: Mapping) -> Path:
    """Zip the raw per-shard metrics files with a manifest; returns `out`.

    Shard files are stored as `shards/shard-NNNN.json` by shard number, whatever they were
    called, their timer records as XLT's `xlt/.../timers.csv`; the manifest records each
    file's original name and SHA-256. Files from different runs, or two files for the same
    shard, are refused."""
    if not shard_files:
        raise ArchiveError("a result archive needs at least one shard file")
    shards = []
    for path in shard_files:
        content, data = _read_shard(Path(path))
        shards.append((int(data["shard"]), Path(path), content, data))
    shards.sort(key=lambda s: s[0])
    numbers = [s[0] for s in shards]
    if len(set(numbers)) != len(numbers):
        duplicate = next(n for n in numbers if numbers.count(n) > 1)
        raise ArchiveError(f"shard {duplicate} is given more than once")
    run_ids = sorted({str(s[3].get("runId")) for s in shards})
    if len(run_ids) > 1:
        raise ArchiveError(f"the shard files belong to different runs: {', '.join(run_ids)}")
    run_id = meta.get("runId") or shards[0][3].get("runId")

    created_at = meta.get("createdAt") or now_iso()
    entries = [(f"shards/shard-{number:04d}.json", path, content) for number, path, content, _ in shards]
    xlt = []
    for number, path, _, data in shards:
        if data.get("timers"):
            files, info = shard_timer_files(number, data["timers"])
            entries.extend((name, path, content) for name, content in files)
            xlt.append(info)
    manifest = {
        "version": 1,
        "kind": RESULT_ARCHIVE_KIND,
        "runId": run_id,
        "loadTest": meta.get("loadTest"),
        "label": meta.get("label"),
        "shards": meta.get("shards") or max((s[3].get("shards") or 0 for s in shards), default=0) or len(shards),
        "createdAt": created_at,
        "files": [
            {"path": name, "source": path.name, "bytes": len(content), "sha256": hashlib.sha256(content).hexdigest()}
            for name, path, content in entries
        ],
        **({"xlt": xlt} if xlt else {}),
    }
    return write_zip_atomically(
        out,
        [("manifest.json", json_bytes(manifest)), *((name, content) for name, _, content in entries)],
        created_at=created_at,
    )


def verify_result_archive(archive: Path) -> dict:
    """The manifest of a result archive whose files all match their recorded SHA-256."""
    with zipfile.ZipFile(archive) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        if manifest.get("kind") != RESULT_ARCHIVE_KIND:
            raise ArchiveError(f"{archive}: not a result archive")
        for entry in manifest["files"]:
            if hashlib.sha256(zf.read(entry["path"])).hexdigest() != entry["sha256"]:
                raise ArchiveError(f"{archive}: {entry['path']} does not match its checksum")
    return manifest


# --- report archive -----------------------------------------------------------------------------


def build_report_archive(merged: Any, out: Path, *, meta: Mapping) -> Path:
    """Zip the static report of merged metrics (a dict or the load engine's object); returns `out`."""
    meta = dict(meta)
    meta.setdefault("createdAt", now_iso())
    summary = summarize(merged, meta)
    entries = [
        ("index.html", render_report(summary).encode()),
        ("report.json", json_bytes(summary)),
        ("requests.csv", requests_csv(summary)),
        ("timeline.csv", timeline_csv(summary)),
        ("errors.csv", errors_csv(summary)),
    ]
    return write_zip_atomically(out, entries, created_at=meta["createdAt"])


def read_report(archive: Path | str) -> dict:
    """The summary (`report.json`) of a report archive."""
    try:
        with zipfile.ZipFile(archive) as zf:
            summary = json.loads(zf.read("report.json"))
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ArchiveError(f"{archive}: not a report archive ({exc})") from None
    if summary.get("kind") != SUMMARY_KIND:
        raise ArchiveError(f"{archive}: report.json is not an Assay load-test report summary")
    return summary
