"""Reading the manifests the runner executes: a custom resource as YAML or JSON."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import ValidationError

from assay.crds.contracts.runner_settings import env_name
from assay.crds.loadtest import LoadTestSpec
from assay.crds.secrets import SecretUnavailable, with_secret_values

SECRETS_DIR_ENV = env_name("secrets_dir")
"""A folder with one file per secret key: the run's Secret, mounted by the operator."""


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
        problems = "; ".join(f"spec.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ManifestError(f"{source}: {problems}") from exc


def _read_secret_file(folder: str | None, key: str) -> str | None:
    if not folder or "/" in key or key in (".", ".."):
        return None
    try:
        return (Path(folder) / key).read_text()
    except OSError:
        return None


def with_run_secrets(document: dict, source: str = "manifest") -> dict:
    """The manifest with its secret fields' values read from ASSAY_SECRETS_DIR, one file per
    Secret key (the operator points every reference of a run at the run's own Secret, so the
    Secret's name is not needed). Raises ManifestError naming a value that is not there."""
    folder = os.environ.get(SECRETS_DIR_ENV)
    try:
        return with_secret_values(document, lambda _name, key: _read_secret_file(folder, key))
    except SecretUnavailable as exc:
        hint = "" if folder else f" ({SECRETS_DIR_ENV} is not set)"
        raise ManifestError(f"{source}: {exc}{hint}") from exc
    except ValidationError:
        return document  # the caller's validation reports the spec's problems
