"""The import contract's list of operator handler modules is the list of modules that register
Kopf handlers, so a new handler module cannot slip past the "no handler imports another" rule."""

import re
import tomllib

from tests.conftest import REPO

HANDLER = re.compile(r"^@kopf\.(on|timer|daemon|index)\b", re.M)


def test_the_handler_contract_names_every_module_that_registers_handlers():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    contract = next(c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "independence")
    registering = {
        f"assay.operator.{path.stem}"
        for path in (REPO / "operator").glob("*.py")
        if path.stem != "__main__" and HANDLER.search(path.read_text())
    }
    assert registering, "no handler module found: the pattern is stale"
    assert set(contract["modules"]) == registering
