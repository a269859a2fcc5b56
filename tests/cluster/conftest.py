"""Fixtures the VNG tests share: a second tenant, and an operator watching both tenants."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import OperatorProcess
from tests.support.credentials import make_namespace


@pytest.fixture
def other_account(cluster, namespace):
    name = make_namespace(cluster, f"{namespace}-b", {"purpose": "vng-tenancy"})
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def vng_operator(cluster, namespace, other_account, gateway, tmp_path):
    proc = OperatorProcess(cluster, tmp_path / "operator.log", [namespace, other_account], gateway).start()
    yield proc
    proc.stop()
    print(proc.log()[-4000:], file=sys.stderr)
