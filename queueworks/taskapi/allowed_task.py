"""What one allowlisted task is: its parameters, their checks, and the queues
it may be sent to (queueworks/taskapi/allowlist.py lists the tasks)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from queueworks.conf import TOPOLOGY

TYPES = ("int", "float", "str", "bool")


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # one of TYPES
    required: bool = True
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    default: Any = None
    help: str = ""

    def coerce(self, value: Any) -> Any:
        """JSON has one number type: 3.0 is the integer 3 (as JSON Schema says)."""
        if self.type == "int" and isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    def check(self, value: Any) -> str | None:
        """The problem with ``value``, or None when it is acceptable."""
        if self.type == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                return "must be an integer"
        elif self.type == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return "must be a number"
            if not math.isfinite(value):
                return "must be a finite number"
        elif self.type == "str":
            if not isinstance(value, str):
                return "must be a string"
            if self.max_length is not None and len(value) > self.max_length:
                return f"must be at most {self.max_length} characters"
        elif self.type == "bool":
            if not isinstance(value, bool):
                return "must be true or false"
        if self.minimum is not None and value < self.minimum:
            return f"must be >= {_number(self.minimum)}"
        if self.maximum is not None and value > self.maximum:
            return f"must be <= {_number(self.maximum)}"
        return None

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "required": self.required}
        for key in ("minimum", "maximum", "max_length", "default"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.help:
            out["help"] = self.help
        return out


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass(frozen=True)
class AllowedTask:
    name: str
    description: str
    params: tuple[Param, ...] = ()
    # Extra queues an operator may send it to, besides its topology route.
    extra_queues: tuple[str, ...] = ()

    @property
    def default_queue(self) -> str:
        return TOPOLOGY.queue_for(self.name)

    @property
    def queues(self) -> tuple[str, ...]:
        return (self.default_queue, *[q for q in self.extra_queues if q != self.default_queue])

    def bind(self, args: list, kwargs: dict) -> tuple[dict[str, Any], dict[str, list[str]]]:
        """Match ``args``/``kwargs`` against the declared parameters.

        Returns (values by parameter name, errors by request field).  Errors
        are keyed ``args`` or ``kwargs`` and name the parameter and problem.
        """
        errors: dict[str, list[str]] = {}
        values: dict[str, Any] = {}
        if len(args) > len(self.params):
            errors.setdefault("args", []).append(
                f"{self.name} takes at most {len(self.params)} positional argument(s), "
                f"got {len(args)}"
            )
        for index, (param, value) in enumerate(zip(self.params, args)):
            value = param.coerce(value)
            problem = param.check(value)
            if problem:
                errors.setdefault("args", []).append(f"args[{index}] ({param.name}) {problem}")
            values[param.name] = value
        by_name = {param.name: param for param in self.params}
        for key, value in kwargs.items():
            param = by_name.get(key)
            if param is None:
                known = ", ".join(by_name) or "none"
                errors.setdefault("kwargs", []).append(
                    f"unknown argument '{key}' (accepted: {known})"
                )
                continue
            if key in values:
                errors.setdefault("kwargs", []).append(
                    f"'{key}' is also given positionally in args"
                )
                continue
            value = param.coerce(value)
            problem = param.check(value)
            if problem:
                errors.setdefault("kwargs", []).append(f"{key} {problem}")
            values[key] = value
        for param in self.params:
            if param.required and param.name not in values:
                errors.setdefault("kwargs", []).append(f"{param.name} is required")
        # The key of a rate or concurrency limit (queueworks/limits) is
        # required, whatever the schema says: an unkeyed call has no bucket.
        from queueworks.limits.rules import limit_key_arguments

        for name, kind in limit_key_arguments(self.name).items():
            if name not in values and not (name in by_name and by_name[name].required):
                errors.setdefault("kwargs", []).append(
                    f"{name} is required: the task's {kind} limit is keyed on it")
        return values, errors

    def normalized(self, args: list, kwargs: dict) -> tuple[list, dict]:
        """``args``/``kwargs`` with each value as ``bind`` checked it (3.0 -> 3)."""
        positional = [param.coerce(value) for param, value in zip(self.params, args)]
        by_name = {param.name: param for param in self.params}
        named = {key: by_name[key].coerce(value) if key in by_name else value
                 for key, value in kwargs.items()}
        return positional + list(args[len(positional):]), named

    def describe(self) -> dict[str, Any]:
        return {
            "task": self.name,
            "description": self.description,
            "queues": list(self.queues),
            "params": [param.describe() for param in self.params],
        }
