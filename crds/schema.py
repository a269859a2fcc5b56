"""From pydantic models to Kubernetes CustomResourceDefinitions.

The API server only accepts *structural* OpenAPI v3 schemas: every node has a type, there are
no references, and unions may not change the shape of the data. pydantic emits JSON Schema
2020-12 with `$ref`s, `anyOf` for Optional and `oneOf` for tagged unions, so
`structural_schema()` rewrites that output:

- `$ref` is inlined; `title` and the model's `additionalProperties: false` are dropped (the API
  server prunes or, with strict field validation, rejects unknown fields by itself).
- `Optional[X]` becomes `X`: a null sent for a non-nullable field is pruned, which is what
  an unset optional means in Python too.
- `int | str` becomes `x-kubernetes-int-or-string`.
- A discriminated union becomes one object with every variant's properties and the
  discriminator as an enum; what made the variants different (required fields, fields that
  belong to other variants, variant rules) becomes CEL rules guarded by the discriminator.
- Defaults are kept only where they carry meaning (no null, "", [] or {}), so stored objects
  are not padded with empty fields; pydantic supplies those when the object is read.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import Any, Optional

from pydantic import BaseModel

from .common import GROUP, VERSION

# Keys in the order they are written, so that the YAML reads top-down (what, then constraints,
# then children, then extensions) and stays byte-identical between runs.
_KEY_ORDER = (
    "description",
    "type",
    "format",
    "x-kubernetes-int-or-string",
    "enum",
    "default",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-validations",
)

_DROPPED = {"title", "examples", "discriminator", "$defs"}


class SchemaError(TypeError):
    """The model uses a construct that has no structural OpenAPI equivalent."""


def structural_schema(model: type[BaseModel], *, defaults: bool = True) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of `model`, as a CRD's openAPIV3Schema accepts it.

    With `defaults=False` no `default` is emitted at all (used for status, which only the
    operator writes and which must say exactly what it wrote).
    """
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return _Converter(defs, defaults).convert(raw, path=model.__name__)


class _Converter:
    def __init__(self, defs: dict[str, Any], defaults: bool):
        self.defs = defs
        self.defaults = defaults

    def convert(self, node: dict[str, Any], path: str) -> dict[str, Any]:
        node = dict(node)
        if "$ref" in node:
            target = self.defs[node.pop("$ref").rsplit("/", 1)[-1]]
            # Sibling keywords (the field's own description or default) win over the target's.
            return self.convert({**target, **node}, path)
        if "allOf" in node:
            parts = node.pop("allOf")
            if len(parts) != 1:
                raise SchemaError(f"{path}: allOf with {len(parts)} parts cannot be made structural")
            return self.convert({**parts[0], **node}, path)
        for key in ("oneOf", "anyOf"):
            if key in node:
                return self._union(node, key, path)

        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _DROPPED:
                continue
            if key == "const":
                out["enum"] = [value]
            elif key == "description":
                out["description"] = unwrap(value)
            elif key == "default":
                pruned = _prune_empty(value)
                if self.defaults and pruned is not None:
                    out["default"] = pruned
            elif key == "properties":
                out["properties"] = {name: self.convert(prop, f"{path}.{name}") for name, prop in value.items()}
            elif key == "x-kubernetes-validations":
                out[key] = [_ordered_rule(rule) for rule in value]
            elif key == "items":
                out["items"] = self.convert(value, f"{path}[]")
            elif key == "additionalProperties":
                if isinstance(value, dict):
                    out["additionalProperties"] = self.convert(value, f"{path}{{}}")
                # `false` (extra="forbid") is implied by a structural schema and not allowed
                # beside `properties`.
            elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
                # JSON Schema 2020-12 says `exclusiveMinimum: 0`; OpenAPI v3.0 says
                # `minimum: 0, exclusiveMinimum: true`.
                out[key.replace("exclusive", "").lower()] = value
                out[key] = True
            else:
                out[key] = value

        if "enum" in out:
            out.setdefault("type", _enum_type(out["enum"], path))
            if out["type"] == "string":
                # Bounds the length CEL assumes for the value; the enum bounds it anyway.
                out.setdefault("maxLength", max(len(v) for v in out["enum"]))
        if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
            out["x-kubernetes-preserve-unknown-fields"] = True
        if "type" not in out and not out.get("x-kubernetes-int-or-string"):
            raise SchemaError(f"{path}: no type (free-form values are not structural): {node}")
        return _ordered(out)

    def _union(self, node: dict[str, Any], key: str, path: str) -> dict[str, Any]:
        branches = [b for b in node.pop(key) if b != {"type": "null"}]
        discriminator = node.pop("discriminator", None)
        if node.get("default", "absent") is None:
            node.pop("default")
        if discriminator is not None:
            merged = self._flatten(branches, discriminator, path)
            return self.convert({**merged, **node}, path)
        if len(branches) == 1:
            return self.convert({**branches[0], **node}, path)
        types = sorted(b.get("type", "") for b in branches)
        if types == ["integer", "string"] and all(set(b) == {"type"} for b in branches):
            node.pop("type", None)
            node["x-kubernetes-int-or-string"] = True
            return self.convert(node, path)
        raise SchemaError(f"{path}: a union of {branches} cannot be made structural")

    def _flatten(self, branches: list[dict], discriminator: dict, path: str) -> dict[str, Any]:
        """One object for a tagged union; variant differences become guarded CEL rules."""
        tag = discriminator["propertyName"]
        variants: list[tuple[str, dict[str, Any]]] = []
        for branch in branches:
            schema = self.convert(branch, path)
            tags = schema["properties"][tag]["enum"]
            variants.append((tags[0], schema))

        properties: dict[str, dict[str, Any]] = {}
        owners: dict[str, list[str]] = {}
        for name, schema in variants:
            for prop, prop_schema in schema["properties"].items():
                owners.setdefault(prop, []).append(name)
                if prop == tag:
                    continue
                if prop in properties:
                    if _shape(properties[prop]) != _shape(prop_schema):
                        raise SchemaError(f"{path}.{prop}: variants declare it with different shapes")
                else:
                    properties[prop] = copy.deepcopy(prop_schema)

        # A default is applied whatever the variant, so it survives only when every variant
        # has the property with that very default.
        for prop, prop_schema in properties.items():
            defaults = [s["properties"].get(prop, {}).get("default", _MISSING) for _, s in variants]
            if any(d is _MISSING or d != defaults[0] for d in defaults):
                prop_schema.pop("default", None)

        tags = [name for name, _ in variants]
        tag_schema = dict(variants[0][1]["properties"][tag])
        tag_schema.pop("description", None)
        tag_schema["enum"] = tags
        tag_schema["maxLength"] = max(len(t) for t in tags)
        required_everywhere = set.intersection(*(set(s.get("required", [])) for _, s in variants))

        rules: list[dict[str, str]] = []
        for name, schema in variants:
            guard = f"self.{tag} != '{name}'"
            for prop in schema.get("required", []):
                if prop not in required_everywhere:
                    rules.append(
                        {
                            "rule": f"{guard} || has(self.{prop})",
                            "message": f"{prop} is required when {tag} is {name}",
                            "fieldPath": f".{prop}",
                            "reason": "FieldValueRequired",
                        }
                    )
            foreign = [p for p in properties if name not in owners[p]]
            if foreign:
                rules.append(
                    {
                        "rule": f"{guard} || !({' || '.join(f'has(self.{p})' for p in foreign)})",
                        "message": f"{tag} {name} does not take {', '.join(foreign)}",
                        "reason": "FieldValueForbidden",
                    }
                )
            for rule in schema.get("x-kubernetes-validations", []):
                rules.append({**rule, "rule": f"{guard} || ({rule['rule']})"})
        rules = [_ordered_rule(rule) for rule in rules]

        merged: dict[str, Any] = {
            "type": "object",
            "properties": {tag: tag_schema, **properties},
            "required": [p for p in variants[0][1].get("required", []) if p in required_everywhere],
        }
        if rules:
            merged["x-kubernetes-validations"] = rules
        return merged


_MISSING = object()


def _shape(schema: dict[str, Any]) -> dict[str, Any]:
    """A schema without its documentation, for comparing what two variants declare."""
    if not isinstance(schema, dict):
        return schema
    return {k: _shape(v) if isinstance(v, dict) else v for k, v in schema.items() if k != "description"}


def _enum_type(values: list[Any], path: str) -> str:
    kinds = {type(v) for v in values}
    if kinds == {str}:
        return "string"
    if kinds == {int}:
        return "integer"
    raise SchemaError(f"{path}: enum {values} mixes types")


def _prune_empty(value: Any) -> Any:
    """The value without nulls and empty strings, lists and maps; None if nothing remains."""
    if isinstance(value, dict):
        pruned = {k: p for k, v in value.items() if (p := _prune_empty(v)) is not None}
        return pruned or None
    if isinstance(value, list):
        return value or None
    if value is None or value == "":
        return None
    return value


def _ordered_rule(rule: dict[str, str]) -> dict[str, str]:
    order = ("rule", "message", "fieldPath", "reason")
    return {k: rule[k] for k in sorted(rule, key=lambda k: order.index(k) if k in order else len(order))}


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    rank = {key: i for i, key in enumerate(_KEY_ORDER)}
    return {k: node[k] for k in sorted(node, key=lambda k: (rank.get(k, len(rank)), k))}


# --- CustomResourceDefinitions ----------------------------------------------------------------


@dataclass(frozen=True)
class PrinterColumn:
    """A column of `kubectl get`."""

    name: str
    type: str
    json_path: str
    description: str = ""
    priority: int = 0
    format: Optional[str] = None

    def to_crd(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.description:
            out["description"] = self.description
        if self.format:
            out["format"] = self.format
        if self.priority:
            out["priority"] = self.priority
        return out


AGE_COLUMN = PrinterColumn("Age", "date", ".metadata.creationTimestamp")


@dataclass(frozen=True)
class CrdKind:
    """One custom resource kind and how it is presented to kubectl."""

    resource: type[BaseModel]
    spec: type[BaseModel]
    status: type[BaseModel]
    plural: str
    singular: str
    short_names: tuple[str, ...] = ()
    printer_columns: tuple[PrinterColumn, ...] = ()
    categories: tuple[str, ...] = ("assay",)
    scope: str = "Namespaced"

    @property
    def kind(self) -> str:
        return self.resource.__name__

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"

    @property
    def file_name(self) -> str:
        return f"{self.plural}.yaml"


def build_crd(kind: CrdKind) -> dict[str, Any]:
    """The CustomResourceDefinition manifest for `kind`."""
    spec_schema = structural_schema(kind.spec)
    status_schema = structural_schema(kind.status, defaults=False)
    root: dict[str, Any] = {
        "description": _doc(kind.resource),
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion of this object: assay.dev/v1alpha1."},
            "kind": {"type": "string", "description": f"Kind of this object: {kind.kind}."},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
        "required": ["spec"],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": kind.crd_name},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": list(kind.short_names),
                "categories": list(kind.categories),
            },
            "scope": kind.scope,
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [c.to_crd() for c in (*kind.printer_columns, AGE_COLUMN)],
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


def _doc(model: type) -> str:
    return unwrap(model.__doc__ or "")


def unwrap(text: str) -> str:
    """Docstring text with each paragraph on one line: kubectl explain wraps it itself."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)
