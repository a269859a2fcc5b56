"""The Assay custom resources (group assay.dev, version v1alpha1) as pydantic models.

These models are the single source of truth: `hack/gen_crds.py` writes `crds/*.yaml` from
`KINDS`, and the operator, the runner and the REST gateway parse and build objects with them.
"""

from . import clientcredential, loadtest, monitor, schedule, testsuite
from .clientcredential import ClientCredential, ClientCredentialSpec, ClientCredentialStatus
from .common import (
    API_VERSION,
    GROUP,
    VERSION,
    Assertion,
    Condition,
    ConfigMapKeyRef,
    HttpRequest,
    ObjectMeta,
    ParameterPool,
    Resource,
    Rule,
    SecretRef,
    Variable,
    parse_duration,
)
from .loadtest import (
    Flow,
    LoadParameterPool,
    LoadProfile,
    LoadRequest,
    LoadSummary,
    LoadTest,
    LoadTestSpec,
    LoadTestStatus,
    ParsedCriterion,
    ShardCounts,
    Stage,
    parse_criterion,
)
from .monitor import (
    ConditionStep,
    Environment,
    GhostInspectorStep,
    Monitor,
    MonitorRun,
    MonitorSpec,
    MonitorStatus,
    PauseStep,
    RequestStep,
    SubtestStep,
)
from .runs import Run, RunCounts, RunPhase, RunResult, RunState
from .schedule import Schedule, ScheduleSpec, ScheduleStatus, ScheduleTarget
from .schema import CrdKind, PrinterColumn, build_crd, structural_schema
from .testsuite import SuiteFlow, SuiteRun, TestSuite, TestSuiteSpec, TestSuiteStatus

KINDS: tuple[CrdKind, ...] = (
    loadtest.CRD,
    testsuite.CRD,
    monitor.CRD,
    schedule.CRD,
    clientcredential.CRD,
)
"""Every custom resource kind Assay serves, in a stable order."""

KINDS_BY_NAME: dict[str, CrdKind] = {k.kind: k for k in KINDS}

__all__ = [
    "API_VERSION",
    "GROUP",
    "KINDS",
    "KINDS_BY_NAME",
    "VERSION",
    "Assertion",
    "ClientCredential",
    "ClientCredentialSpec",
    "ClientCredentialStatus",
    "Condition",
    "ConditionStep",
    "ConfigMapKeyRef",
    "CrdKind",
    "Environment",
    "Flow",
    "GhostInspectorStep",
    "HttpRequest",
    "LoadParameterPool",
    "LoadProfile",
    "LoadRequest",
    "LoadSummary",
    "LoadTest",
    "LoadTestSpec",
    "LoadTestStatus",
    "Monitor",
    "MonitorRun",
    "MonitorSpec",
    "MonitorStatus",
    "ObjectMeta",
    "ParameterPool",
    "ParsedCriterion",
    "PauseStep",
    "PrinterColumn",
    "RequestStep",
    "Resource",
    "Rule",
    "Run",
    "RunCounts",
    "RunPhase",
    "RunResult",
    "RunState",
    "Schedule",
    "ScheduleSpec",
    "ScheduleStatus",
    "ScheduleTarget",
    "SecretRef",
    "ShardCounts",
    "Stage",
    "SubtestStep",
    "SuiteFlow",
    "SuiteRun",
    "TestSuite",
    "TestSuiteSpec",
    "TestSuiteStatus",
    "Variable",
    "build_crd",
    "parse_criterion",
    "parse_duration",
    "structural_schema",
]
