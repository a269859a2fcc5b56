"""The images' wheel: built from exactly what runner-image/Dockerfile copies (and .dockerignore
lets through), it holds every module and data file of the four package folders, so no image
starts without a module the source tree has."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "runner-image" / "Dockerfile"

# The distribution's folders and the import paths they map to (pyproject.toml package-dir).
PACKAGE_FOLDERS = {
    "operator": "assay/operator",
    "api": "assay/api",
    "crds": "assay/crds",
    "runner-image/runner": "assay/runner",
}
DATA_SUFFIXES = {".py", ".yaml", ".css", ".js"}


def build_stage_copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY in the build stage, before the first `FROM ... AS base`."""
    text = DOCKERFILE.read_text()
    stage = text.split(" AS base", 1)[0].split(" AS build", 1)[1]
    copies = []
    for line in stage.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            *sources, destination = line.split()[1:]
            copies.append((sources, destination))
    return copies


def test_every_copied_path_is_let_through_by_dockerignore():
    allowed = {
        line[1:].rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines() if line.startswith("!")
    }
    assert (REPO / ".dockerignore").read_text().splitlines()[1] == "*", "the .dockerignore is an allowlist"
    for sources, _ in build_stage_copies():
        for source in sources:
            assert source.rstrip("/") in allowed, f"{source} is copied but .dockerignore excludes it"


def test_the_wheel_holds_every_module_and_data_file(tmp_path):
    context = tmp_path / "src"
    context.mkdir()
    for sources, destination in build_stage_copies():
        for source in sources:
            target = context / destination if destination not in ("./", ".") else context / Path(source).name
            if (REPO / source).is_dir():
                shutil.copytree(REPO / source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy(REPO / source, target)
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "--wheel-dir",
            str(tmp_path / "wheels"),
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp_path / "wheels").glob("assay-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())

    expected = set()
    for folder, package in PACKAGE_FOLDERS.items():
        for path in (REPO / folder).rglob("*"):
            relative = path.relative_to(REPO / folder)
            if (
                path.suffix in DATA_SUFFIXES
                and "__pycache__" not in relative.parts
                and not re.match(r"^(bench|tests?)/", relative.as_posix())
            ):
                expected.add(f"{package}/{relative.as_posix()}")
    missing = sorted(expected - names)
    assert not missing, f"the images would lack: {missing} (pyproject.toml packages / package-data?)"
