"""The lock files agree with pyproject.toml: every declared dependency is pinned at a version its
specifier allows, nothing is pinned as ours that pyproject.toml no longer declares, every pin
carries hashes, and the runtime set is pinned alike in both files. `make lock` fixes a failure."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
OURS = "assay (pyproject.toml)"


def parse_lock(path: Path) -> dict[str, dict]:
    """name -> {version, marker, hashes, via} from a hashed, annotated `uv pip compile` output."""
    pins: dict[str, dict] = {}
    current = None
    for line in path.read_text().splitlines():
        if pin := re.match(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+?)(?:\s*;\s*(.*?))?\s*\\?$", line):
            current = pins[canonicalize_name(pin[1])] = {
                "version": pin[2],
                "marker": (pin[3] or "").strip(),
                "hashes": 0,
                "via": set(),
            }
        elif current is not None and line.strip().startswith("--hash="):
            current["hashes"] += 1
        elif current is not None and (via := re.match(r"^\s*#\s+(?:via\s+)?(.+)$", line)):
            if via[1].strip() != "via":
                current["via"].add(via[1].strip())
    return pins


def declared(extras: bool) -> list[Requirement]:
    names = list(PYPROJECT["dependencies"])
    if extras:
        names += [req for group in PYPROJECT["optional-dependencies"].values() for req in group]
    return [Requirement(name) for name in names]


def disagreements(pins: dict[str, dict], requirements: list[Requirement]) -> list[str]:
    found = []
    for requirement in requirements:
        pin = pins.get(canonicalize_name(requirement.name))
        if pin is None:
            found.append(f"{requirement} is not pinned")
        elif not requirement.specifier.contains(pin["version"], prereleases=True):
            found.append(f"{requirement.name}=={pin['version']} does not satisfy {requirement}")
    ours = {name for name, pin in pins.items() if OURS in pin["via"]}
    wanted = {canonicalize_name(r.name) for r in requirements}
    found += [f"{name} is pinned as a direct dependency but not declared" for name in sorted(ours - wanted)]
    found += [f"{name} has no hashes" for name, pin in pins.items() if not pin["hashes"]]
    return found


@pytest.mark.parametrize(("lock", "extras"), [("requirements.txt", False), ("requirements-dev.txt", True)])
def test_the_lock_pins_exactly_what_pyproject_declares(lock, extras):
    pins = parse_lock(REPO / lock)
    assert len(pins) > 20, f"{lock} has too few pins to be the lock"
    problems = disagreements(pins, declared(extras))
    assert not problems, f"{lock} disagrees with pyproject.toml (run `make lock`): {problems}"


def test_the_runtime_pins_are_the_same_in_both_locks():
    runtime, dev = parse_lock(REPO / "requirements.txt"), parse_lock(REPO / "requirements-dev.txt")
    differ = {
        name: (pin["version"], dev.get(name, {}).get("version"))
        for name, pin in runtime.items()
        if dev.get(name, {}).get("version") != pin["version"]
    }
    assert not differ, f"runtime pins differ between the locks: {differ}"


def test_a_changed_pyproject_is_reported(tmp_path):
    pins = parse_lock(REPO / "requirements.txt")
    runtime = declared(extras=False)
    dropped = [r for r in runtime if r.name != "croniter"]
    assert disagreements(pins, runtime + [Requirement("left-pad>=1")]) == ["left-pad>=1 is not pinned"]
    assert disagreements(pins, dropped) == ["croniter is pinned as a direct dependency but not declared"]
    raised = [Requirement("cryptography>=999") if r.name == "cryptography" else r for r in runtime]
    assert len(disagreements(pins, raised)) == 1
