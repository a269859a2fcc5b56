"""Checks of a Monitor definition before it runs, with the field each problem is in.

The crds models already reject unknown step types, missing URLs, comparisons that need
another source and missing properties; `format_validation_error` turns their errors into
`spec.steps[2].url: Field required`. `validate_monitor` adds what the models cannot see:
template syntax in every templated field, JSON paths and XPaths that cannot parse, request
URLs that are not http(s).
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

from lxml import etree
from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_camel

from assay.crds import Monitor
from assay.crds.monitor import ConditionStep, Environment, GhostInspectorStep, RequestStep, SubtestStep

from .extract import ExtractionError, parse_json_path
from ..templating import TemplateError, check_template

# Discriminator values pydantic puts into error locations after a tagged union's position.
_UNION_TAGS = frozenset(
    {"request", "pause", "condition", "subtest", "ghost-inspector", "basic", "oauth_1", "oauth_2", "client_certificate"}
)


def format_location(loc: Iterable[Any], prefix: str = "spec") -> str:
    """('steps', 2, 'request', 'url') -> 'spec.steps[2].url'."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _UNION_TAGS:
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def format_validation_error(exc: ValidationError, prefix: str = "spec") -> list[str]:
    """One `field: message` line per pydantic error. Rule messages that name a field
    (`property: property is required ...`) are attached to that field."""
    lines = []
    for error in exc.errors():
        where = format_location(error["loc"], prefix)
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            ctx = error.get("ctx", {})
            tag_field = "stepType" if "step" in str(ctx.get("discriminator", "")) else "authType"
            if error["type"] == "union_tag_invalid":
                lines.append(
                    f"{where}.{tag_field}: unknown {tag_field} {ctx.get('tag')!r} "
                    f"(expected one of {ctx.get('expected_tags')})"
                )
            else:
                lines.append(f"{where}.{tag_field}: required")
            continue
        message = error["msg"].removeprefix("Value error, ")
        field, sep, rest = message.partition(": ")
        if sep and field.replace("_", "").isalnum() and " " not in field:
            where, message = f"{where}.{to_camel(field)}", rest
        lines.append(f"{where}: {message}")
    return lines


def parse_monitor(document: dict, source: str = "manifest") -> Monitor:
    """A Monitor from a manifest document; ValueError with one line per problem otherwise."""
    try:
        return Monitor.model_validate(document)
    except ValidationError as exc:
        raise ValueError("\n".join(format_validation_error(exc, prefix=""))) from None


def validate_monitor(monitor: Monitor) -> list[str]:
    """Problems in the definition, each `spec.<field path>: <what is wrong>`; [] when fine."""
    problems: list[str] = []

    def template(text: Optional[str], where: str) -> None:
        if text:
            try:
                check_template(text, where)
            except TemplateError as exc:
                problems.append(str(exc))

    for index, env in enumerate(monitor.spec.environments):
        _environment(env, f"spec.environments[{index}]", template)
    for index, step in enumerate(monitor.spec.steps):
        _step(step, f"spec.steps[{index}]", template, problems)
    return problems


def _environment(env: Environment, where: str, template) -> None:
    for name, value in env.initial_variables.items():
        template(value, f"{where}.initialVariables.{name}")
    _headers(env.headers, f"{where}.headers", template)
    if env.auth is not None:
        _auth(env.auth, f"{where}.auth", template)


def _headers(headers: dict[str, list[str]], where: str, template) -> None:
    for name, values in headers.items():
        template(name, f"{where}.{name}")
        for i, value in enumerate(values):
            template(value, f"{where}.{name}[{i}]")


def _auth(auth: BaseModel, where: str, template) -> None:
    for name, value in auth:
        if isinstance(value, str):
            template(value, f"{where}.{to_camel(name)}")


def _checks(step: Any, where: str, template, problems: list[str]) -> None:
    for index, assertion in enumerate(step.assertions):
        if isinstance(assertion.value, str):
            template(assertion.value, f"{where}.assertions[{index}].value")
        _property(assertion.source, assertion.property, f"{where}.assertions[{index}].property", problems)
    for index, variable in enumerate(step.variables):
        _property(variable.source, variable.property, f"{where}.variables[{index}].property", problems)


def _property(source: str, prop: Optional[str], where: str, problems: list[str]) -> None:
    if not prop:
        if source == "response_xml":
            problems.append(f"{where}: response_xml needs an XPath")
        return
    if source == "response_json":
        try:
            parse_json_path(prop)
        except ExtractionError as exc:
            problems.append(f"{where}: {exc}")
    elif source == "response_xml":
        try:
            etree.XPath(prop)
        except etree.XPathSyntaxError as exc:
            problems.append(f"{where}: invalid XPath {prop!r}: {exc}")


def _step(step: Any, where: str, template, problems: list[str]) -> None:
    if isinstance(step, RequestStep):
        template(step.url, f"{where}.url")
        url = step.url.strip()
        if "{{" not in url and not url.lower().startswith(("http://", "https://")):
            problems.append(f"{where}.url: {url!r} is not an absolute http:// or https:// URL")
        _headers(step.headers, f"{where}.headers", template)
        template(step.body, f"{where}.body")
        _headers(step.form, f"{where}.form", template)
        if step.auth is not None:
            _auth(step.auth, f"{where}.auth", template)
        _checks(step, where, template, problems)
    elif isinstance(step, ConditionStep):
        template(step.left_value, f"{where}.leftValue")
        template(step.right_value, f"{where}.rightValue")
        for index, inner in enumerate(step.steps):
            _step(inner, f"{where}.steps[{index}]", template, problems)
    elif isinstance(step, SubtestStep):
        for index, param in enumerate(step.params):
            template(param.value, f"{where}.params[{index}].value")
        _checks(step, where, template, problems)
    elif isinstance(step, GhostInspectorStep):
        template(step.start_url, f"{where}.startUrl")
        _checks(step, where, template, problems)
