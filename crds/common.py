"""Building blocks shared by every Assay custom resource.

Every model here and in the kind modules is the one place a field is declared: the CRD YAML
(`crds/schema.py`), the REST mappings and the runner all derive from these classes. Python
names are snake_case, the Kubernetes wire names camelCase.

Validation that JSON Schema cannot say (one field required when another has some value,
exactly one of two fields) is declared once per model as a `Rule`: the CEL expression that the
API server runs and the Python predicate that pydantic runs sit side by side, with one message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Callable, ClassVar, Final, Iterator, Literal, Optional, Union

from annotated_types import GroupedMetadata
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator
from pydantic.alias_generators import to_camel

# Final, so that the type checker takes it as the Literal that Resource.api_version is.
API_VERSION: Final = "assay.dev/v1alpha1"
GROUP, VERSION = API_VERSION.split("/")

RuleReason = Literal["FieldValueInvalid", "FieldValueRequired", "FieldValueForbidden", "FieldValueDuplicate"]


@dataclass(frozen=True)
class Rule:
    """One validation rule, enforced by the API server (CEL) and by pydantic (Python).

    `check` receives the model instance and returns True when the rule holds. It is None only
    for rules that need the previous object (`oldSelf`), which only the API server has.
    """

    cel: str
    message: str
    check: Optional[Callable[[Any], bool]] = None
    field_path: Optional[str] = None
    reason: Optional[RuleReason] = None

    def to_openapi(self) -> dict[str, str]:
        out = {"rule": self.cel, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        if self.reason:
            out["reason"] = self.reason
        return out

    def error_text(self) -> str:
        # pydantic reports a model validator's error at the model, so the offending field
        # goes into the text; the API server gets it from fieldPath instead.
        if self.field_path:
            return f"{self.field_path.lstrip('.')}: {self.message}"
        return self.message


def _attach_rules(schema: dict[str, Any], model: type) -> None:
    rules = getattr(model, "validation_rules", ())
    if rules:
        schema["x-kubernetes-validations"] = [rule.to_openapi() for rule in rules]


def error_summary(exc: ValidationError) -> str:
    """A validation error's fields and messages, without pydantic's echo of the input, which
    would copy secret values into conditions, events and logs."""
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())


class AssayModel(BaseModel):
    """Base of every spec-side model: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
        json_schema_extra=_attach_rules,
    )

    validation_rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_validation_rules(self):
        for rule in type(self).validation_rules:
            if rule.check is not None and not rule.check(self):
                raise ValueError(rule.error_text())
        return self

    def to_k8s(self) -> dict[str, Any]:
        """The object as Kubernetes stores it: camelCase keys, unset optionals left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class StatusModel(AssayModel):
    """Base of status models. The operator writes status; a reader tolerates fields it does
    not know yet, so that an older operator can read a newer one's status during an upgrade."""

    model_config = ConfigDict(extra="ignore")


def _no_duplicates(items: list) -> list:
    seen = set()
    for item in items:
        if item in seen:
            raise ValueError(f"duplicate value {item!r}")
        seen.add(item)
    return items


@dataclass(frozen=True)
class SetList(GroupedMetadata):
    """`Annotated[list[X], SetList(...)]`: a list whose items are distinct, a `set` list to the
    API server (and to server-side apply)."""

    max_length: int
    min_length: int = 0

    def __iter__(self) -> Iterator[Any]:
        yield Field(
            min_length=self.min_length or None,
            max_length=self.max_length,
            json_schema_extra={"x-kubernetes-list-type": "set"},
        )
        yield AfterValidator(_no_duplicates)


# Names and short identifiers. The bounds keep the API server's CEL cost estimate finite for
# rules that compare or iterate over them, and reject absurd input early.
Name = Annotated[str, StringConstraints(min_length=1, max_length=253)]
Url = Annotated[str, StringConstraints(min_length=1, max_length=4096)]


# --- durations --------------------------------------------------------------------------------

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

Duration = Annotated[str, StringConstraints(pattern=DURATION_PATTERN, max_length=64)]
"""A Go-style duration such as `300ms`, `30s`, `1h30m`."""


def parse_duration(text: str) -> float:
    """Seconds in a Duration string: `parse_duration("1m30s") == 90.0`."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"invalid duration {text!r}: expected e.g. 300ms, 30s, 5m, 1h30m")
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(text))


# --- conditions and references ----------------------------------------------------------------


class Condition(StatusModel):
    """The state of one aspect of the resource, as in metav1.Condition."""

    type: Annotated[str, StringConstraints(min_length=1, max_length=316)]
    """Condition type in CamelCase, e.g. `Ready`, `Complete`."""
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    """Machine-readable CamelCase reason for the last transition."""
    message: str = ""
    """Human-readable detail about the last transition."""
    observed_generation: Optional[int] = Field(default=None, ge=0)
    """The .metadata.generation the condition was set for."""
    last_transition_time: Optional[datetime] = None
    """When the status last changed."""


Conditions = Annotated[
    list[Condition],
    Field(json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}),
]


class SecretRef(AssayModel):
    """A Secret in the resource's namespace."""

    name: Name


SecretKey = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")]
"""A Secret's data key, as Kubernetes allows it."""


class SecretKeySelector(AssayModel):
    """One key of a Secret in the resource's namespace."""

    name: Name
    key: SecretKey


class SecretSource(AssayModel):
    """Where a secret value comes from instead of the spec, as a Kubernetes env var's
    `valueFrom`. Every secret field `x` has a sibling `xFrom` of this type."""

    secret_key_ref: SecretKeySelector


def secret_rule(field: str) -> Rule:
    """A secret field is given inline or from a Secret, not both. `field` is the Python name."""
    wire = to_camel(field)
    return Rule(
        cel=f"!(has(self.{wire}) && has(self.{wire}From))",
        check=lambda m: getattr(m, field) is None or getattr(m, f"{field}_from") is None,
        message=f"set {wire} or {wire}From, not both",
        field_path=f".{wire}From",
    )


def has_secret(model: Any, field: str) -> bool:
    """Whether the secret field `field` is given, inline or from a Secret."""
    return getattr(model, field) is not None or getattr(model, f"{field}_from") is not None


class SecretVariable(AssayModel):
    """A variable whose value is a secret: inline (`value`) or from a Secret (`valueFrom`).
    The operator hands it to the run in a Secret, never in a ConfigMap."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    value: Optional[str] = None
    value_from: Optional[SecretSource] = None

    validation_rules = (
        Rule(
            cel="has(self.value) != has(self.valueFrom)",
            check=lambda v: (v.value is None) != (v.value_from is None),
            message="exactly one of value or valueFrom must be set",
        ),
    )


MAX_SECRET_VARIABLES = 50
SecretVariables = Annotated[list[SecretVariable], Field(max_length=MAX_SECRET_VARIABLES)]


class ConfigMapKeyRef(AssayModel):
    """One key of a ConfigMap in the resource's namespace."""

    name: Name
    key: Annotated[str, StringConstraints(min_length=1, max_length=253)]


class ObjectMeta(BaseModel):
    """The part of metadata Assay reads; the API server owns the rest, so it passes through."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    name: Optional[str] = None
    namespace: Optional[str] = None
    uid: Optional[str] = None
    generation: Optional[int] = None
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}


class Resource(BaseModel):
    """Common envelope of every Assay custom resource (apiVersion, kind, metadata)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    api_version: Literal["assay.dev/v1alpha1"] = API_VERSION
    metadata: ObjectMeta = ObjectMeta()

    def to_k8s(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# --- HTTP assertions and extractions ----------------------------------------------------------

Source = Literal[
    "response_status",
    "response_headers",
    "response_json",
    "response_xml",
    "response_text",
    "response_time",
    "response_size",
]

Comparison = Literal[
    "equal",
    "empty",
    "not_empty",
    "not_equal",
    "contains",
    "does_not_contain",
    "is_a_number",
    "equal_number",
    "is_less_than",
    "is_less_than_or_equal",
    "is_greater_than",
    "is_greater_than_or_equal",
    "has_key",
    "has_value",
    "is_null",
]

SOURCES_WITH_PROPERTY = ("response_headers", "response_json", "response_xml")
JSON_ONLY_COMPARISONS = ("has_key", "has_value", "is_null")
COMPARISONS_WITHOUT_VALUE = ("empty", "not_empty", "is_a_number", "is_null")

HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def _cel_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


class Assertion(AssayModel):
    """A success criterion on a response: take `property` of `source`, compare it with `value`."""

    source: Source
    """Where the checked value comes from. response_time is in milliseconds, response_size in bytes."""
    property: Optional[Annotated[str, StringConstraints(max_length=1024)]] = None
    """Header name, JSON path or XPath; required for response_headers, response_json and
    response_xml. An empty string selects the whole document."""
    comparison: Comparison
    value: Optional[Union[int, str]] = None
    """What the property is compared with; not used by empty, not_empty, is_a_number and is_null."""

    validation_rules = (
        Rule(
            cel=f"!(self.source in {_cel_list(SOURCES_WITH_PROPERTY)}) || has(self.property)",
            check=lambda a: a.source not in SOURCES_WITH_PROPERTY or a.property is not None,
            message="property is required for response_headers, response_json and response_xml",
            field_path=".property",
            reason="FieldValueRequired",
        ),
        Rule(
            cel=f"!(self.comparison in {_cel_list(JSON_ONLY_COMPARISONS)}) || self.source == 'response_json'",
            check=lambda a: a.comparison not in JSON_ONLY_COMPARISONS or a.source == "response_json",
            message="has_key, has_value and is_null need source response_json",
            field_path=".comparison",
        ),
        Rule(
            cel=f"self.comparison in {_cel_list(COMPARISONS_WITHOUT_VALUE)} || has(self.value)",
            check=lambda a: a.comparison in COMPARISONS_WITHOUT_VALUE or a.value is not None,
            message="value is required for this comparison",
            field_path=".value",
            reason="FieldValueRequired",
        ),
    )


class Variable(AssayModel):
    """A value extracted from a response into `{{name}}` for the requests that follow."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    source: Source
    property: Optional[Annotated[str, StringConstraints(max_length=1024)]] = None
    """Header name, JSON path or XPath; required for response_headers, response_json and response_xml."""

    validation_rules = (
        Rule(
            cel=f"!(self.source in {_cel_list(SOURCES_WITH_PROPERTY)}) || has(self.property)",
            check=lambda v: v.source not in SOURCES_WITH_PROPERTY or v.property is not None,
            message="property is required for response_headers, response_json and response_xml",
            field_path=".property",
            reason="FieldValueRequired",
        ),
    )


# List bounds: the API server multiplies a CEL rule's cost by how many times it can run, which
# is the product of maxItems of the lists around it; unbounded lists make that estimate explode.
MAX_ASSERTIONS = 50
MAX_VARIABLES = 50
MAX_REQUESTS = 100

Assertions = Annotated[list[Assertion], Field(max_length=MAX_ASSERTIONS)]
Variables = Annotated[list[Variable], Field(max_length=MAX_VARIABLES)]


class HttpRequest(AssayModel):
    """One HTTP request of a flow, with what to extract from and assert on its response."""

    name: Optional[Annotated[str, StringConstraints(max_length=256)]] = None
    """Label for reports; defaults to the method and URL."""
    method: HttpMethod = "GET"
    url: Url
    """Absolute, or relative to the resource's base URL. May contain `{{variables}}`."""
    headers: dict[str, str] = {}
    body: Optional[str] = None
    timeout: Optional[Duration] = None
    """Overrides the resource-wide request timeout."""
    extract: Variables = []
    assertions: Assertions = []


class ParameterPool(AssayModel):
    """Rows of parameters (CSV with a header line); each flow iteration takes the next row."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=253)]
    csv: Optional[str] = None
    """Inline CSV, header line first."""
    config_map_ref: Optional[ConfigMapKeyRef] = None
    """A ConfigMap key holding the CSV, for pools too large to inline."""

    validation_rules = (
        Rule(
            cel="has(self.csv) != has(self.configMapRef)",
            check=lambda p: (p.csv is None) != (p.config_map_ref is None),
            message="exactly one of csv or configMapRef must be set",
        ),
    )
