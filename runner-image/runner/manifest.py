"""Reading the manifests the runner executes: a custom resource as YAML or JSON."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from assay.crds.loadtest import LoadTestSpec


class ManifestError(ValueError):
    """A manifest that cannot be run; the message names the file and the field."""


def load_manifest(path: str | Path) -> dict:
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ManifestError(f"{path}: {exc}") from exc
    if not isinstance(doc, dict) or "spec" not in doc:
        raise ManifestError(f"{path}: not a custom resource (no 'spec')")
    return doc


def loadtest_spec(doc: dict, source: str = "manifest") -> LoadTestSpec:
    if doc.get("kind", "LoadTest") != "LoadTest":
        raise ManifestError(f"{source}: kind {doc.get('kind')!r} is not a LoadTest")
    try:
        return LoadTestSpec.model_validate(doc["spec"])
    except ValidationError as exc:
        problems = "; ".join(
            f"spec.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ManifestError(f"{source}: {problems}") from exc
