"""The API-test engine: Runscope-style Monitor runs and the pieces other runners reuse.

Layers, each importing only those before it:

    templating   `{{name}}` and helpers              render, check_template, TemplateError, HELPERS
                 (assay.runner.templating, the language the load engine speaks too)
    http         one request, timed                   Exchange, send, make_client
    extract      values out of an Exchange            extract, ExtractionError
    results      Runscope-shaped result models        RunResult, StepResult, AssertionResult, ...
    assertions   comparisons                          evaluate, compare
    monitor      Monitor runs                         run_monitor, GhostInspectorIntegration
    validate     definition checks before a run       validate_monitor
    report       terminal report, progress, JUnit     ProgressPrinter, format_run, junit_xml

`auth` (AuthSession) and `scripts` (ScriptRunner) plug into `monitor`; `scripts` runs the
QuickJS side (`script_engine`) in killable worker processes (`workers`). `suite` runs
TestSuites on the same layers.
"""

from .assertions import compare, evaluate
from .extract import ExtractionError, extract
from .http import Exchange, make_client, send
from .monitor import GhostInspectorIntegration, ProgressEvent, UnknownEnvironment, run_monitor
from .results import AssertionResult, RunResult, ScriptResult, StepDetail, StepResult, VariableResult
from ..templating import HELPERS, TemplateError, check_template, render
from .validate import validate_monitor

__all__ = [
    "HELPERS",
    "AssertionResult",
    "Exchange",
    "ExtractionError",
    "GhostInspectorIntegration",
    "ProgressEvent",
    "RunResult",
    "ScriptResult",
    "StepDetail",
    "StepResult",
    "TemplateError",
    "UnknownEnvironment",
    "VariableResult",
    "check_template",
    "compare",
    "evaluate",
    "extract",
    "make_client",
    "render",
    "run_monitor",
    "send",
    "validate_monitor",
]
