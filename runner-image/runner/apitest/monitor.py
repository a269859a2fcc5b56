"""Running a Monitor (a Runscope API test): its steps in order, in one environment.

Variables start as the environment's `initialVariables` (each value templated, so
`{{timestamp}}` works there), then `params` override them. The environment script runs
before the first step. Every step then sees the variables the steps before it left.

Steps
    request          before_scripts -> render URL, headers (environment headers first, the
                     step's replace those of the same name), body or form, auth fields ->
                     authenticate (step auth, else environment auth) -> send -> variables ->
                     assertions -> scripts. A transport error fails the step, with the reason.
    pause            sleep `duration` seconds.
    condition        render both operands, compare with the assertion comparisons; the nested
                     steps run only when it holds (else they are reported as not run).
    subtest          resolve the other Monitor (by `monitor` name or `testUuid`), run it with
                     `params` rendered with this run's variables, then apply this step's
                     variables and assertions to the subtest's result: response_json is the
                     Test Result Detail plus `variables` (the subtest's final variables),
                     response_status 200 when it passed, else 500. Without assertions the step
                     fails when the subtest failed.
    ghost-inspector  GET {base_url}/tests/{testId}/execute/?apiKey=...[&startUrl=...] on the
                     integration named by `integrationId`; variables and assertions apply to
                     the JSON answer. Without assertions the step fails on a non-2xx answer
                     or `data.passing: false`. The API key never appears in results.
    skipped: true    reported as skipped, not run.

`stopOnFailure` reports every step after the first failed one as skipped. `preserveCookies`
keeps one cookie jar for the run; without it each step starts with none.
`retryOnFailure` and `webhooks` are copied into the result: the operator acts on them.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Literal, Mapping, Optional, Union
from urllib.parse import urlencode

import httpx

from assay.crds import Assertion, Monitor, Variable
from assay.crds.monitor import (
    ConditionStep,
    Environment,
    GhostInspectorStep,
    PauseStep,
    RequestStep,
    SubtestStep,
)

from .assertions import condition_holds, evaluate
from .auth import AuthSession
from .extract import ExtractionError, as_text, extract
from .http import DEFAULT_TIMEOUT_S, Exchange, make_client, send
from .results import (
    RESULT_SOURCES,
    RunResult,
    ScriptResult,
    StepDetail,
    StepResult,
    SubtestDetail,
    Timings,
    VariableResult,
)
from ..templating import TemplateError, render

MAX_SUBTEST_DEPTH = 10
USER_AGENT = "assay-runner/1.0"
"""Sent unless a step or environment sets User-Agent, as Runscope sends runscope/1.0."""
GHOST_INSPECTOR_API = "https://api.ghostinspector.com/v1"
GHOST_INSPECTOR_TIMEOUT_S = 600.0
"""Ghost Inspector answers the execute call when the browser test has finished."""


@dataclass(frozen=True)
class GhostInspectorIntegration:
    """A team's Ghost Inspector account, named in steps by its integration id."""

    api_key: str
    base_url: str = GHOST_INSPECTOR_API


@dataclass(frozen=True)
class ProgressEvent:
    """What `on_progress` receives while a run goes on. `step` is set for step events; a
    step_finished event's step carries its result."""

    kind: Literal["run_started", "step_started", "step_finished", "run_finished"]
    run: RunResult
    step: Optional[StepResult] = None


MonitorResolver = Callable[[str], Union[Monitor, Awaitable[Monitor]]]
AuthProvider = Callable[[Optional[str], bool], Any]
"""Makes the authentication session of a run: (client certificate, verify_ssl) -> AuthSession."""


class UnknownEnvironment(ValueError):
    pass


def environment_for(monitor: Monitor, name: Optional[str]) -> Optional[Environment]:
    """The environment a run uses; raises UnknownEnvironment when `name` is not one of them."""
    env = monitor.spec.environment(name)
    if name is not None and env is None:
        names = ", ".join(e.name for e in monitor.spec.environments) or "none"
        raise UnknownEnvironment(f"monitor {monitor.metadata.name!r} has no environment {name!r} (has: {names})")
    return env


async def run_monitor(
    monitor: Monitor,
    *,
    environment: Optional[str] = None,
    params: Mapping[str, str] = {},
    resolve_monitor: Optional[MonitorResolver] = None,
    integrations: Mapping[str, GhostInspectorIntegration] = {},
    on_progress: Optional[Callable[[ProgressEvent], None]] = None,
    auth_provider: Optional[AuthProvider] = None,
    script_runner: Any = None,
    script_libraries: Mapping[str, str] = {},
    run_id: Optional[str] = None,
    request_timeout: float = DEFAULT_TIMEOUT_S,
) -> RunResult:
    """Run the monitor's steps once and return the Runscope-shaped result.

    `environment` names one of spec.environments (default: spec.defaultEnvironment, else the
    first). `params` override the initial variables. `resolve_monitor` finds subtests by name
    or test uuid (it may be async). `auth_provider` replaces `AuthSession` and `script_runner`
    the `ScriptRunner` built from the environment's script libraries, whose sources
    `script_libraries` gives by id. Raises UnknownEnvironment for an environment the monitor
    does not have."""
    env = environment_for(monitor, environment)
    run = _Run(
        monitor,
        env,
        params=params,
        resolve_monitor=resolve_monitor,
        integrations=integrations,
        on_progress=on_progress,
        auth_provider=auth_provider,
        script_runner=script_runner,
        script_libraries=script_libraries,
        run_id=run_id,
        request_timeout=request_timeout,
        call_stack=(),
    )
    return await run.execute()


@dataclass
class _Rendered:
    method: str
    url: str
    headers: list[tuple[str, str]]
    body: Optional[str]
    form: Optional[dict[str, list[str]]]

    def with_changes(self, changed: Mapping[str, Any]) -> _Rendered:
        """This request with a pre-request script's changes (script_view's keys) applied."""
        if not changed:
            return self
        headers = self.headers
        if "headers" in changed:
            headers = [(name, value) for name, values in changed["headers"].items() for value in values]
        body, form = self.body, self.form
        if "body" in changed:
            body, form = changed["body"], None
        return _Rendered(changed.get("method", self.method), changed.get("url", self.url), headers, body, form)

    def script_view(self) -> dict[str, Any]:
        grouped: dict[str, list[str]] = {}
        for name, value in self.headers:
            grouped.setdefault(name, []).append(value)
        body = self.body if self.body is not None else (urlencode(self.form, doseq=True) if self.form else "")
        return {"method": self.method, "url": self.url, "headers": grouped, "body": body}


def _monitor_key(monitor: Monitor) -> str:
    return monitor.metadata.uid or monitor.metadata.name or ""


@dataclass
class _Run:
    monitor: Monitor
    env: Optional[Environment]
    params: Mapping[str, str]
    resolve_monitor: Optional[MonitorResolver]
    integrations: Mapping[str, GhostInspectorIntegration]
    on_progress: Optional[Callable[[ProgressEvent], None]]
    auth_provider: Optional[AuthProvider]
    script_runner: Any
    script_libraries: Mapping[str, str]
    run_id: Optional[str]
    request_timeout: float
    call_stack: tuple[str, ...]
    variables: dict[str, str] = field(default_factory=dict)
    stop_reason: Optional[str] = None
    """Set once the remaining steps must be skipped; says why."""
    result: RunResult = field(init=False)
    session: Any = field(init=False)
    """The run's AuthSession (or what auth_provider made)."""
    client: httpx.AsyncClient = field(init=False)

    # --- the run ------------------------------------------------------------------------------

    async def execute(self) -> RunResult:
        env, meta = self.env, self.monitor.metadata
        self.result = RunResult(
            test_run_id=self.run_id or str(uuid.uuid4()),
            test_id=meta.uid or meta.name,
            test_name=self.monitor.spec.display_name or meta.name,
            bucket_key=meta.namespace,
            environment_id=env.id if env else None,
            environment_name=env.name if env else None,
            retry_on_failure=env.retry_on_failure if env else False,
            stop_on_failure=env.stop_on_failure if env else False,
            webhooks=list(env.webhooks) if env else [],
        )
        self.session = session = (self.auth_provider or AuthSession)(
            env.client_certificate if env else None, env.verify_ssl if env else True
        )
        try:
            self._start_variables()
        except TemplateError as exc:
            self.result.error = str(exc)
            self.stop_reason = "the run could not start"
        client_kwargs = {
            "timeout": self.request_timeout,
            "headers": {"User-Agent": USER_AGENT},
            **session.client_kwargs(),
        }
        async with make_client(**client_kwargs) as client:
            self.client = client
            if env is not None and env.script and self.stop_reason is None:
                await self._environment_script(env)
            self._emit("run_started")
            try:
                for index, step in enumerate(self.monitor.spec.steps):
                    await self._step(step, f"steps[{index}]", parent=None)
            finally:
                close = getattr(session, "close", None)
                if close is not None:
                    close()
        secret = {v.name for v in self.env.secret_variables} if self.env is not None else set()
        self.result.variables = {k: v for k, v in self.variables.items() if k not in secret}
        self.result.finish()
        self._emit("run_finished")
        return self.result

    def _emit(self, kind: str, step: Optional[StepResult] = None) -> None:
        if self.on_progress is not None:
            self.on_progress(ProgressEvent(kind, self.result, step))

    def _start_variables(self) -> None:
        if self.env is not None:
            for name, value in self.env.initial_variables.items():
                self.variables[name] = render(value, self.variables, field=f"{self.env_path}.initialVariables.{name}")
            # Secret values are taken as they are: a secret is data, not a template.
            self.variables.update({v.name: v.value or "" for v in self.env.secret_variables})
        self.variables.update({k: str(v) for k, v in self.params.items()})

    @property
    def env_path(self) -> str:
        """Where the environment is in the spec, for messages: `spec.environments[1]`."""
        index = next((i for i, e in enumerate(self.monitor.spec.environments) if e is self.env), 0)
        return f"spec.environments[{index}]"

    async def _environment_script(self, env: Environment) -> None:
        outcome = await self._run_script(env.script, request=None, response=None)
        self.result.environment_script = outcome
        if not outcome.passed:
            self.result.error = f"environment script failed: {outcome.error}"
            if env.stop_on_failure:
                self.stop_reason = "stop on failure: the environment script failed"

    # --- steps ----------------------------------------------------------------------------------

    async def _step(self, step: Any, path: str, parent: Optional[StepResult]) -> StepResult:
        result = StepResult(
            uuid=step.id or str(uuid.uuid4()),
            step_type=step.step_type,
            name=_label(step),
            path=path,
            parent_uuid=parent.uuid if parent else None,
        )
        if self.stop_reason is not None or step.skipped:
            return self._skip(step, result, self.stop_reason or "skipped in the test definition")
        self._emit("step_started", result)
        began = time.perf_counter()
        where = f"spec.{path}"
        problem = None
        try:
            if isinstance(step, RequestStep):
                await self._request(step, result, where)
            elif isinstance(step, PauseStep):
                await asyncio.sleep(step.duration)
            elif isinstance(step, ConditionStep):
                problem = self._evaluate_condition(step, result, where)
            elif isinstance(step, SubtestStep):
                await self._subtest(step, result, where)
            elif isinstance(step, GhostInspectorStep):
                await self._ghost_inspector(step, result, where)
        except TemplateError as exc:
            result.error = str(exc)
            result.count()
        except Exception as exc:  # a bug must cost one step, not the whole run's result
            result.error = f"internal error: {type(exc).__name__}: {exc}"
            result.count()
        self.result.requests.append(result)
        result.duration_ms = (time.perf_counter() - began) * 1000.0
        # A condition is finished once evaluated; its nested steps follow it as steps of their own.
        self._emit("step_finished", result)
        if result.failed and self.env is not None and self.env.stop_on_failure and self.stop_reason is None:
            self.stop_reason = f"stop on failure: {path} failed"
        if isinstance(step, ConditionStep):
            for index, inner in enumerate(step.steps):
                if result.condition_met:
                    await self._step(inner, f"{path}.steps[{index}]", parent=result)
                else:
                    self._skip(inner, _nested(inner, result, index), problem or "condition not evaluated")
        return result

    def _skip(self, step: Any, result: StepResult, reason: str) -> StepResult:
        result.skipped, result.skip_reason = True, reason
        self.result.requests.append(result)
        self._emit("step_finished", result)
        if isinstance(step, ConditionStep):
            for index, inner in enumerate(step.steps):
                self._skip(inner, _nested(inner, result, index), reason)
        return result

    # request ------------------------------------------------------------------------------------

    def _render_request(self, step: RequestStep, where: str) -> _Rendered:
        v = self.variables
        headers: list[tuple[str, str]] = []

        def add(name: str, values: list[str], prefix: str) -> None:
            rendered_name = render(name, v, field=f"{prefix}.{name}")
            headers.extend(
                (rendered_name, render(value, v, field=f"{prefix}.{name}[{i}]")) for i, value in enumerate(values)
            )

        if self.env is not None and self.env.headers:
            replaced = {name.lower() for name in step.headers}
            for name, values in self.env.headers.items():
                if name.lower() not in replaced:
                    add(name, values, f"{self.env_path}.headers")
        for name, values in step.headers.items():
            add(name, values, f"{where}.headers")
        body = render(step.body, v, field=f"{where}.body") if step.body else None
        form = None
        if step.form and body is None:
            form = {
                render(name, v, field=f"{where}.form.{name}"): [
                    render(value, v, field=f"{where}.form.{name}[{i}]") for i, value in enumerate(values)
                ]
                for name, values in step.form.items()
            }
        return _Rendered(step.method, render(step.url, v, field=f"{where}.url").strip(), headers, body, form)

    async def _request(self, step: RequestStep, result: StepResult, where: str) -> None:
        result.method = step.method
        result.url = step.url
        changed: dict[str, Any] = {}
        if step.before_scripts:
            original = self._render_request(step, where).script_view()
            view = original
            for source in step.before_scripts:
                outcome, view = await self._run_script_with_request(source, request=view, response=None)
                result.scripts.append(outcome)
            changed = {k: v for k, v in view.items() if original.get(k) != v}
        # Rendered after the pre-request scripts, so the variables they set apply; what they
        # changed in the request itself wins over the definition.
        rendered = self._render_request(step, where).with_changes(changed)
        result.method, result.url = rendered.method, rendered.url
        if not step.note:
            result.name = f"{rendered.method} {rendered.url}"
        exchange = await self._send(step, rendered, result, where)
        if exchange is None:
            exchange = Exchange(rendered.method, rendered.url, error=result.error)
        else:
            result.detail = StepDetail.from_exchange(result.uuid, exchange, self.result.bucket_key)
            result.timings = Timings(**exchange.timings)
            result.status_code, result.response_time_ms = exchange.status, exchange.response_time_ms
            if exchange.error is not None:
                result.error = exchange.error
        self._apply_checks(step.variables, step.assertions, exchange, result, where)
        if step.scripts:
            if exchange.status is None:
                result.scripts.extend(ScriptResult(result="fail", error="not run: no response") for _ in step.scripts)
            else:
                request_view = rendered.script_view()
                for source in step.scripts:
                    result.scripts.append(
                        await self._run_script(source, request=request_view, response=_response_view(exchange))
                    )
        result.count()

    async def _send(self, step: RequestStep, rendered: _Rendered, result: StepResult, where: str) -> Optional[Exchange]:
        client = self.client
        if not (self.env is not None and self.env.preserve_cookies):
            client.cookies.clear()
        try:
            request = client.build_request(
                rendered.method, rendered.url, headers=rendered.headers, content=rendered.body, data=rendered.form
            )
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError) as exc:
            result.error = f"{where}.url: invalid URL {rendered.url!r}: {exc}"
            return None
        auth = step.auth or (self.env.auth if self.env is not None else None)
        if auth is not None:
            auth_where = f"{where}.auth" if step.auth is not None else f"{self.env_path}.auth"
            auth = _render_auth(auth, self.variables, auth_where)
            try:
                request = await self.session.apply(request, auth, client)
            except Exception as exc:  # the auth session reports token endpoints, bad keys, ...
                result.error = f"authentication ({auth.auth_type}) failed: {exc}"
                return None
        return await send(client, request=request)

    def _apply_checks(
        self, variables: list[Variable], assertions: list[Assertion], exchange: Exchange, result: StepResult, where: str
    ) -> None:
        for variable in variables:
            result.variables.append(self._extract_variable(variable, exchange))
        for index, assertion in enumerate(assertions):
            result.assertions.append(
                evaluate(assertion, exchange, self.variables, field=f"{where}.assertions[{index}]")
            )

    def _extract_variable(self, variable: Variable, exchange: Exchange) -> VariableResult:
        source = RESULT_SOURCES.get(variable.source, variable.source)
        try:
            value = extract(variable.source, variable.property, exchange)
        except ExtractionError as exc:
            return VariableResult(
                result="fail", source=source, property=variable.property, name=variable.name, error=str(exc)
            )
        if value is None and variable.source == "response_headers":
            return VariableResult(
                result="fail",
                source=source,
                property=variable.property,
                name=variable.name,
                error=f"response has no header {variable.property!r}",
            )
        text = as_text(value)
        self.variables[variable.name] = "" if text is None else text
        return VariableResult(result="pass", source=source, property=variable.property, name=variable.name, value=text)

    # scripts ------------------------------------------------------------------------------------

    def _scripts(self) -> Any:
        if self.script_runner is None:
            # Imported on first use: a run without scripts never loads the JavaScript engine.
            from .scripts import ScriptRunner

            ids = list(self.env.script_library) if self.env is not None else []
            missing = [i for i in ids if i not in self.script_libraries]
            if missing:
                raise LookupError(f"script library {', '.join(map(repr, missing))} is not available to this run")
            self.script_runner = ScriptRunner(libraries=[self.script_libraries[i] for i in ids])
        return self.script_runner

    async def _run_script(self, source: str, *, request: Optional[dict], response: Optional[dict]) -> ScriptResult:
        result, _ = await self._run_script_with_request(source, request=request, response=response)
        return result

    async def _run_script_with_request(
        self, source: str, *, request: Optional[dict], response: Optional[dict]
    ) -> tuple[ScriptResult, Optional[dict]]:
        """The script's result and the request as it left it (pre-request scripts may change it).
        The script runs on a thread: the other runs of the event loop (a tick pod's Monitors)
        go on while it runs, up to its time limit."""
        try:
            outcome = await asyncio.to_thread(
                self._scripts().run, source, variables=dict(self.variables), request=request, response=response
            )
        except Exception as exc:  # a missing library or a broken runner fails the script, not the run
            return ScriptResult(result="fail", error=f"script not run: {exc}"), request
        self.variables = {str(k): "" if v is None else str(v) for k, v in outcome.variables.items()}
        result = ScriptResult(
            result="pass" if outcome.passed else "fail",
            output="\n".join(outcome.logs),
            error=None if outcome.passed else (outcome.error or "script failed"),
        )
        return result, getattr(outcome, "request", None) or request

    # condition ----------------------------------------------------------------------------------

    def _evaluate_condition(self, step: ConditionStep, result: StepResult, where: str) -> Optional[str]:
        """Decide whether the nested steps run; returns why not when they do not."""
        try:
            left = render(step.left_value, self.variables, field=f"{where}.leftValue")
            right = render(step.right_value or "", self.variables, field=f"{where}.rightValue")
        except TemplateError as exc:
            result.error, result.result, result.condition_met = str(exc), "fail", False
            return "condition not evaluated"
        problem = condition_holds(left, step.comparison, right)
        result.condition_met = problem is None
        if not step.note:
            result.name = f"condition {left!r} {step.comparison} {right!r}"
        return None if problem is None else f"condition not met: {problem}"

    # subtest ------------------------------------------------------------------------------------

    async def _subtest(self, step: SubtestStep, result: StepResult, where: str) -> None:
        target = step.monitor or step.test_uuid or ""
        params = {
            p.name: render(p.value, self.variables, field=f"{where}.params[{i}].value")
            for i, p in enumerate(step.params)
        }
        started_at = time.time()
        sub_result = await self._run_subtest(step, target, params, result, where)
        if sub_result is None:
            result.count()
            return
        result.subtest = sub_result
        document = {**sub_result.to_runscope(), "variables": dict(sub_result.variables)}
        exchange = Exchange.from_json(
            document,
            status=200 if sub_result.passed else 500,
            url=f"subtest:{target}",
            response_time_ms=sub_result.duration_s * 1000.0,
            started_at=started_at,
        )
        result.status_code, result.response_time_ms = exchange.status, exchange.response_time_ms
        self._apply_checks(step.variables, step.assertions, exchange, result, where)
        if not step.assertions and not sub_result.passed:
            result.error = f"subtest {target!r} failed"
        result.count()

    async def _run_subtest(
        self, step: SubtestStep, target: str, params: dict[str, str], result: StepResult, where: str
    ) -> Optional[RunResult]:
        if self.resolve_monitor is None:
            result.error = f"{where}: cannot run subtest {target!r}: no way to look Monitors up here"
            return None
        try:
            found = self.resolve_monitor(target)
            sub = await found if inspect.isawaitable(found) else found
        except Exception as exc:  # the resolver's own lookup error, reported on the step
            result.error = f"{where}: subtest {target!r} not found: {exc}"
            return None
        if sub is None:
            result.error = f"{where}: subtest {target!r} not found"
            return None
        chain = self.call_stack + (_monitor_key(self.monitor),)
        if _monitor_key(sub) in chain or len(chain) >= MAX_SUBTEST_DEPTH:
            cycle = " -> ".join(chain + (_monitor_key(sub),))
            result.error = f"{where}: subtest {target!r} would recurse ({cycle})"
            return None
        env_name = None
        wanted = step.environment_uuid
        if wanted:
            env = next((e for e in sub.spec.environments if wanted in (e.id, e.name)), None)
            if env is None:
                result.error = f"{where}.environmentUuid: subtest {target!r} has no environment {wanted!r}"
                return None
            env_name = env.name
        child = _Run(
            sub,
            environment_for(sub, env_name),
            params=params,
            resolve_monitor=self.resolve_monitor,
            integrations=self.integrations,
            on_progress=None,
            auth_provider=self.auth_provider,
            script_runner=None,
            script_libraries=self.script_libraries,
            run_id=None,
            request_timeout=self.request_timeout,
            call_stack=chain,
        )
        sub_result = await child.execute()
        sub_result.parent_test_uuid = self.result.test_id
        sub_result.source = "subtest"
        sub_result.subtest_detail = SubtestDetail(
            name=sub_result.test_name,
            note=step.note or None,
            result=sub_result.result,
            test_uuid=sub_result.test_id,
            test_run_uuid=sub_result.test_run_id,
            test_run_url=sub_result.test_run_url,
            started_at=sub_result.started_at,
            finished_at=sub_result.finished_at,
        )
        return sub_result

    # ghost inspector ----------------------------------------------------------------------------

    async def _ghost_inspector(self, step: GhostInspectorStep, result: StepResult, where: str) -> None:
        integration = self.integrations.get(step.integration_id)
        if integration is None:
            result.error = (
                f"{where}.integrationId: no Ghost Inspector integration {step.integration_id!r} is configured"
            )
            result.count()
            return
        query = {"apiKey": integration.api_key}
        if step.is_custom_start_url and step.start_url:
            query["startUrl"] = render(step.start_url, self.variables, field=f"{where}.startUrl")
        base = f"{integration.base_url.rstrip('/')}/tests/{step.test_id}/execute/"
        result.method, result.url = "GET", base
        exchange = await send(self.client, "GET", f"{base}?{urlencode(query)}", timeout=GHOST_INSPECTOR_TIMEOUT_S)
        exchange.url = _redact_api_key(exchange.url, integration.api_key)
        result.url = exchange.url
        result.detail = StepDetail.from_exchange(result.uuid, exchange, self.result.bucket_key)
        result.timings = Timings(**exchange.timings)
        result.status_code, result.response_time_ms = exchange.status, exchange.response_time_ms
        if exchange.error is not None:
            result.error = f"Ghost Inspector: {exchange.error}"
        self._apply_checks(step.variables, step.assertions, exchange, result, where)
        if not step.assertions and exchange.error is None:
            result.error = _ghost_inspector_verdict(exchange)
        result.count()


def _ghost_inspector_verdict(exchange: Exchange) -> Optional[str]:
    if not 200 <= (exchange.status or 0) < 300:
        return f"Ghost Inspector answered {exchange.status} {exchange.reason}".strip()
    try:
        passing = extract("response_json", "data.passing", exchange)
    except ExtractionError:
        return None
    return "Ghost Inspector test did not pass (data.passing is false)" if passing is False else None


def _redact_api_key(url: str, api_key: str) -> str:
    return url.replace(f"apiKey={api_key}", "apiKey=REDACTED").replace(
        f"apiKey={urlencode({'': api_key})[1:]}", "apiKey=REDACTED"
    )


def _response_view(exchange: Exchange) -> dict[str, Any]:
    grouped: dict[str, list[str]] = {}
    for name, value in exchange.response_headers:
        grouped.setdefault(name, []).append(value)
    return {
        "method": exchange.method,
        "url": exchange.url,
        "status": exchange.status,
        "reason": exchange.reason,
        "headers": grouped,
        "body": exchange.text,
        "response_time_ms": exchange.response_time_ms,
        "size_bytes": exchange.size,
    }


def _render_auth(auth: Any, variables: Mapping[str, str], where: str) -> Any:
    updates = {}
    for name, value in auth:
        if isinstance(value, str) and "{{" in value:
            updates[name] = render(value, variables, field=f"{where}.{name}")
    return auth.model_copy(update=updates) if updates else auth


def _nested(inner: Any, parent: StepResult, index: int) -> StepResult:
    return StepResult(
        uuid=inner.id or str(uuid.uuid4()),
        step_type=inner.step_type,
        name=_label(inner),
        path=f"{parent.path}.steps[{index}]",
        parent_uuid=parent.uuid,
    )


def _label(step: Any) -> str:
    if step.note:
        return step.note
    if isinstance(step, RequestStep):
        return f"{step.method} {step.url}"
    if isinstance(step, PauseStep):
        return f"pause {step.duration} s"
    if isinstance(step, ConditionStep):
        return f"condition {step.left_value} {step.comparison} {step.right_value or ''}".rstrip()
    if isinstance(step, SubtestStep):
        return f"subtest {step.monitor or step.test_uuid}"
    if isinstance(step, GhostInspectorStep):
        return f"Ghost Inspector test {step.test_id}"
    return step.step_type
