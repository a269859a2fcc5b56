"""TestSuite: ordered flows of API requests (Loadmill test suites, VNG provider runs)."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field, StringConstraints

from .common import (
    MAX_REQUESTS,
    AssayModel,
    Conditions,
    HttpRequest,
    ParameterPool,
    Resource,
    SecretVariables,
    StatusModel,
)
from .runs import Run
from .schema import CrdKind, PrinterColumn

MAX_FLOWS = 100
MAX_LABELS = 50
MAX_HISTORY = 20


class SuiteConf(AssayModel):
    use_cookies: bool = True
    """Keep cookies between the requests of a flow."""


class SuiteFlow(AssayModel):
    """A flow: requests run in order, sharing extracted variables."""

    id: Optional[Annotated[str, StringConstraints(max_length=64)]] = None
    """Stable flow id, as the Loadmill API reports it."""
    name: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    description: str = ""
    ci_enabled: bool = True
    """The CI toggle: a suite run without forceAllFlows runs only flows that have it on."""
    labels: Annotated[list[str], Field(max_length=MAX_LABELS)] = []
    parameters: dict[str, str] = {}
    """Flow parameters; they override the suite's."""
    parameter_pool: Optional[ParameterPool] = None
    stop_on_failure: bool = True
    """Skip the flow's remaining requests after the first failing one."""
    requests: Annotated[list[HttpRequest], Field(min_length=1, max_length=MAX_REQUESTS)]

    def pool_for_run(self, pool: Optional[str] = None) -> Optional[ParameterPool]:
        """The parameter pool a run uses: the flow's own, or, when the run names a pool
        (Loadmill's `pool`), the flow's only if it has that name; a flow whose pool has another
        name runs once, without a pool."""
        if pool is None or (self.parameter_pool is not None and self.parameter_pool.name == pool):
            return self.parameter_pool
        return None


class TestSuiteSpec(AssayModel):
    """The flows of the suite and the parameters they start with."""

    __test__ = False  # a model, not a pytest test class

    description: str = ""
    labels: Annotated[list[str], Field(max_length=MAX_LABELS)] = []
    """Labels select flows for a run (Loadmill team labels)."""
    parameters: dict[str, str] = {}
    """Default parameter values; a run can override them."""
    secret_parameters: SecretVariables = []
    """Parameters whose values are secrets, inline or from Secrets. They win over the suite's
    `parameters`; a flow's parameters and a run's overrides win over them. Reports leave them out."""
    conf: SuiteConf = SuiteConf()
    flows: Annotated[list[SuiteFlow], Field(min_length=1, max_length=MAX_FLOWS)]

    def ci_flows(self, force_all: bool = False, labels: Optional[list[str]] = None) -> list[SuiteFlow]:
        """The flows a run executes: those with the CI toggle on, or all with forceAllFlows;
        when the run names labels (Loadmill's `labels`), only those of them that carry one of
        the labels (the suite's own labels count for each of its flows)."""
        flows = list(self.flows) if force_all else [f for f in self.flows if f.ci_enabled]
        if labels:
            wanted = set(labels)
            flows = [f for f in flows if wanted & {*self.labels, *f.labels}]
        return flows


class SuiteRun(Run):
    """A suite run; its `counts` are flow runs (Loadmill's `progress` and `successRate` derive
    from them)."""


class TestSuiteStatus(StatusModel):
    __test__ = False  # a model, not a pytest test class

    last_run: Optional[SuiteRun] = None
    history: Annotated[list[SuiteRun], Field(max_length=MAX_HISTORY)] = []
    """The most recent runs, newest first; the result store keeps all of them."""
    observed_generation: Optional[int] = None
    conditions: Conditions = []


class TestSuite(Resource):
    """TestSuite is an ordered set of flows of API requests, with extractions, assertions,
    labels, parameters and CSV parameter pools; flows can be switched off for CI runs. Each run
    is a suite run made of flow runs. It is also the scenario behind VNG provider runs."""

    __test__ = False  # a model, not a pytest test class

    kind: Literal["TestSuite"] = "TestSuite"
    spec: TestSuiteSpec
    status: TestSuiteStatus = TestSuiteStatus()


CRD = CrdKind(
    resource=TestSuite,
    spec=TestSuiteSpec,
    status=TestSuiteStatus,
    plural="testsuites",
    singular="testsuite",
    short_names=("ts", "suite"),
    printer_columns=(
        PrinterColumn("Phase", "string", ".status.lastRun.phase"),
        PrinterColumn("Result", "string", ".status.lastRun.result"),
        PrinterColumn("Passed", "integer", ".status.lastRun.counts.passed"),
        PrinterColumn("Failed", "integer", ".status.lastRun.counts.failed"),
        PrinterColumn("Last Run", "date", ".status.lastRun.startTime"),
    ),
)
