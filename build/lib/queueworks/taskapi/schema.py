"""What the OpenAPI schema cannot learn from the serializers' fields.

``describe_cross_field_rules`` (a drf-spectacular postprocessing hook)
adds, for a start (``TaskStartRequest``) and a bulk start
(``BulkStartRequest``), one variant per allowlisted task: the task's own
queues, its parameters by position (``args``) and by name (``kwargs``) with
their types and ranges, which are required (in one or the other, never both),
and that ``countdown`` and ``eta`` exclude each other.  The API refuses what
the schema forbids, and accepts what it allows, except an ``eta`` in the past
or beyond ``TASKAPI_MAX_DELAY_SECONDS`` (a rule of the clock, said in words).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from queueworks.taskapi.allowlist import ALLOWLIST, AllowedTask, Param
from queueworks.conf import settings as queueworks_settings

_TYPES = {"int": "integer", "float": "number", "str": "string", "bool": "boolean"}


def param_schema(param: Param) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": _TYPES[param.type]}
    if param.minimum is not None:
        schema["minimum"] = param.minimum
    if param.maximum is not None:
        schema["maximum"] = param.maximum
    if param.max_length is not None:
        schema["maxLength"] = param.max_length
    if param.help:
        schema["description"] = param.help
    return schema


def _kwargs_schema(spec: AllowedTask, *, all_required: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {param.name: param_schema(param) for param in spec.params},
        "additionalProperties": False,
    }
    required = [param.name for param in spec.params if param.required or False]
    if all_required and required:
        schema["required"] = required
    return schema


def _has_positional(index: int) -> dict[str, Any]:
    return {"required": ["args"], "properties": {"args": {"minItems": index + 1}}}


def _has_keyword(name: str) -> dict[str, Any]:
    return {"required": ["kwargs"], "properties": {"kwargs": {"required": [name]}}}


def start_variant(spec: AllowedTask) -> dict[str, Any]:
    rules: list[dict[str, Any]] = [{
        "properties": {
            "task": {"const": spec.name},
            "queue": {"enum": list(spec.queues)},
            "args": {"type": "array", "prefixItems": [param_schema(p) for p in spec.params],
                     "items": False, "maxItems": len(spec.params)},
            "kwargs": _kwargs_schema(spec),
        },
    }]
    for index, param in enumerate(spec.params):
        # Given positionally or by name, not both; a required one in one of them.
        rules.append({"not": {"allOf": [_has_positional(index), _has_keyword(param.name)]}})
        if param.required:
            rules.append({"anyOf": [_has_positional(index), _has_keyword(param.name)]})
    return {"title": spec.name, "allOf": rules}


def bulk_variant(spec: AllowedTask) -> dict[str, Any]:
    return {"title": spec.name, "properties": {
        "task": {"const": spec.name},
        "kwargs_list": {"items": _kwargs_schema(spec, all_required=True)},
    }}


_ANY_OR_NULL = [{}, {"type": "null"}]


def _any_value_once(node: Any) -> None:
    """A nullable JSONField is rendered ``oneOf: [{}, {type: null}]``, which null
    matches twice (so no value is valid); "any value" is what it means."""
    if isinstance(node, dict):
        if node.get("oneOf") == _ANY_OR_NULL:
            del node["oneOf"]
        for value in node.values():
            _any_value_once(value)
    elif isinstance(node, list):
        for value in node:
            _any_value_once(value)


def describe_cross_field_rules(result, generator, request, public):
    _any_value_once(result)
    components = result.get("components", {}).get("schemas", {})
    start = components.get("TaskStartRequest")
    if start is not None:
        start["oneOf"] = [start_variant(spec) for spec in ALLOWLIST.values()]
        start["not"] = {"required": ["countdown", "eta"]}
        start.setdefault("properties", {}).get("countdown", {})["maximum"] = \
            queueworks_settings.TASKAPI_MAX_DELAY_SECONDS
        start["description"] = (
            "One variant per allowlisted task: its queues and parameters. Give `countdown` "
            "or `eta`, not both; `eta` must lie in the future, at most "
            f"{queueworks_settings.TASKAPI_MAX_DELAY_SECONDS} s ahead.")
    bulk = components.get("BulkStartRequest")
    if bulk is not None:
        bulk["oneOf"] = [bulk_variant(spec) for spec in ALLOWLIST.values()]
    return result
