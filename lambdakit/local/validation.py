"""Input validation as Lambda's front end does it: botocore's service model constraints.

Each request is matched to its operation in botocore's Lambda model (method + requestUri),
and its members (URI labels, query string, headers, JSON body) are checked against the
constraints the model gives their shapes: required, enum, pattern, length and range. A
violation is a 400 ValidationException worded as AWS words it:

    1 validation error detected: Value 'python2.0' at 'runtime' failed to satisfy
    constraint: Member must satisfy enum value set: [nodejs, ...]

A value of the wrong JSON type is left to the handlers (InvalidRequestContentException),
and so is every semantic check (InvalidParameterValueException): a runtime the model knows
but lambdakit local cannot run, a reserved environment variable, and so on.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from lambdakit.local.checks import ApiError

__all__ = [
    "OPERATION",
    "ModelValidator",
    "validation_error",
    "validation_middleware",
    "validator",
]

log = logging.getLogger("lambdakit.local.validation")

# Maxima the model states for Lambda Managed Instances (capacity providers), which lambdakit
# local refuses; for every other function AWS's limits are these (AWS docs; cfn-lint E3717
# verified 900 s against the live CreateFunction API), reported in the model's wording.
_TIGHTER_MAX = {"Timeout": 900, "MemorySize": 10240, "EphemeralStorageSize": 10240}
# Java's Unicode classes, which Python's re lacks (TagKey, TagValue), read as near kin.
_JAVA_CLASSES = {r"\p{L}": r"\w", r"\p{N}": r"\d", r"\p{Z}": r"\s"}
_LABEL = re.compile(r"\{([^}]+)\}")


def validation_error(problems: list[str]) -> ApiError:
    """400 ValidationException listing every problem, as AWS words it."""
    count = len(problems)
    noun = "error" if count == 1 else "errors"
    message = f"{count} validation {noun} detected: " + "; ".join(problems)
    # Lambda's front end spells the key lower-case, as for its other User errors.
    return ApiError(400, "ValidationException", message, message_key="message")


def _render(value: Any) -> str:
    """A value as AWS's (Java) message shows it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_render(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_render(v)}" for k, v in value.items()) + "}"
    return str(value)


def _value_at(shape: Any, value: Any, path: str) -> str:
    """`Value 'x' at 'path'`, or `Value at 'path'` for a secret (AWS leaves those out)."""
    if _sensitive(shape):
        return f"Value at '{path}'"
    return f"Value '{_render(value)}' at '{path}'"


def _sensitive(shape: Any, seen: frozenset[str] = frozenset()) -> bool:
    """Whether a shape is, or holds, a member the model marks sensitive (environment values)."""
    if shape.metadata.get("sensitive"):
        return True
    if shape.name in seen:
        return False
    seen = seen | {shape.name}
    kind = shape.type_name
    if kind == "structure":
        return any(_sensitive(member, seen) for member in shape.members.values())
    if kind == "list":
        return _sensitive(shape.member, seen)
    if kind == "map":
        return _sensitive(shape.key, seen) or _sensitive(shape.value, seen)
    return False


def _null(path: str) -> str:
    return f"Value null at '{path}' failed to satisfy constraint: Member must not be null"


def _member_path(parent: str, name: str) -> str:
    short = name[:1].lower() + name[1:]
    return f"{parent}.{short}" if parent else short


@dataclass(frozen=True)
class _Location:
    """Where a top-level member travels: its member name, the wire name, the location."""

    member: str
    wire: str
    where: str  # "uri", "querystring", "header" or "body"
    path: str  # as the message names it: "functionName"


class ModelValidator:
    """Checks requests against botocore's Lambda model (see the module docstring)."""

    def __init__(self, service_model: Any = None) -> None:
        if service_model is None:
            import botocore.session

            service_model = botocore.session.get_session().get_service_model("lambda")
        self.model = service_model
        self._routes: dict[tuple[str, str], Any] = {}
        for name in service_model.operation_names:
            operation = service_model.operation_model(name)
            uri = operation.http["requestUri"].split("?", 1)[0]
            self._routes[(operation.http["method"], _route_key(uri))] = operation
        self._patterns: dict[str, re.Pattern[str] | None] = {}
        self._by_route: dict[tuple[str, str], Any] = {}
        self._labels: dict[str, list[str]] = {}

    def operation(self, method: str, route: str) -> Any:
        """The botocore OperationModel served at `method route` (aiohttp's canonical path)."""
        key = (method, route)
        if key not in self._by_route:  # a few dozen routes: cached, Invoke is the hot path
            self._by_route[key] = self._routes.get((method, _route_key(route)))
        return self._by_route[key]

    # -- requests ---------------------------------------------------------------------------

    def check_request(
        self,
        operation: Any,
        labels: list[str],
        query: Mapping[str, Any],
        headers: Mapping[str, str],
        body: Mapping[str, Any] | None,
    ) -> None:
        """Raise ValidationException for what the URI, query, headers and `body` break.

        `labels`: the URI label values in the order of the path; `body` None: not checked
        (a payload, or a body its handler reads and checks through `check_body`).
        """
        problems = list(self._wire_problems(operation, labels, query, headers))
        if body is not None:
            problems += self._body_problems(operation, body)
        if problems:
            raise validation_error(problems)

    def check_body(self, operation: Any, body: Mapping[str, Any]) -> None:
        """Raise ValidationException for what a JSON body's members break."""
        problems = self._body_problems(operation, body)
        if problems:
            raise validation_error(problems)

    def _wire_problems(
        self, operation: Any, labels: list[str], query: Mapping[str, Any], headers: Any
    ) -> Iterator[str]:
        shape = operation.input_shape
        if shape is None:
            return
        label_names = self._labels.get(operation.name)
        if label_names is None:
            uri = operation.http["requestUri"].split("?", 1)[0]
            label_names = [name.rstrip("+") for name in _LABEL.findall(uri)]
            self._labels[operation.name] = label_names
        values = dict(zip(label_names, labels, strict=False))
        for location in _locations(shape):
            member = shape.members[location.member]
            if location.where == "uri":
                value = values.get(location.wire)
            elif location.where == "querystring":
                value = _query_value(member, query, location.wire)
            elif location.where == "header":
                value = headers.get(location.wire)
            else:
                continue
            if value is None:
                if location.member in shape.required_members:
                    yield _null(location.path)
                continue
            yield from self._problems(member, value, location.path)

    def _body_problems(self, operation: Any, body: Mapping[str, Any]) -> list[str]:
        shape = operation.input_shape
        if shape is None:
            return []
        problems: list[str] = []
        for location in _locations(shape):
            if location.where != "body":
                continue
            member = shape.members[location.member]
            if member.type_name == "blob" and member.serialization.get("payload"):
                continue  # Invoke's payload: bytes, not members
            value = body.get(location.member)
            if value is None:
                if location.member in shape.required_members:
                    problems.append(_null(location.path))
                continue
            problems += self._problems(member, value, location.path)
        return problems

    # -- shapes -----------------------------------------------------------------------------

    def _problems(self, shape: Any, value: Any, path: str) -> list[str]:
        """Every constraint `value` breaks; nested members name their own path."""
        own = self._constraints(shape, value)
        problems = [
            f"{_value_at(shape, value, path)} failed to satisfy constraint: {text}" for text in own
        ]
        kind = shape.type_name
        if kind == "structure" and isinstance(value, dict):
            for name, member in shape.members.items():
                if member.serialization.get("location"):
                    continue
                inner = value.get(name)
                inner_path = _member_path(path, name)
                if inner is None:
                    if name in shape.required_members:
                        problems.append(_null(inner_path))
                    continue
                problems += self._problems(member, inner, inner_path)
        elif kind == "list" and isinstance(value, list):
            inner = sorted({text for item in value for text in self._element(shape.member, item)})
            if inner:
                problems.append(
                    f"{_value_at(shape, value, path)} failed to satisfy constraint: "
                    f"Member must satisfy constraint: [{', '.join(inner)}]"
                )
            if shape.member.type_name == "structure":
                for index, item in enumerate(value, 1):
                    if isinstance(item, dict):
                        problems += self._problems(shape.member, item, f"{path}.{index}.member")
        elif kind == "map" and isinstance(value, dict):
            keys = sorted({t for k in value for t in self._constraints(shape.key, k)})
            if keys:
                problems.append(
                    f"{_value_at(shape, value, path)} failed to satisfy constraint: "
                    f"Map keys must satisfy constraint: [{', '.join(keys)}]"
                )
            values = sorted({t for v in value.values() for t in self._element(shape.value, v)})
            if values:
                problems.append(
                    f"{_value_at(shape, value, path)} failed to satisfy constraint: "
                    f"Map value must satisfy constraint: [{', '.join(values)}]"
                )
        return problems

    def _element(self, shape: Any, value: Any) -> list[str]:
        """Constraints a list element or map value breaks (null counts)."""
        if value is None:
            return ["Member must not be null"]
        return self._constraints(shape, value)

    def _constraints(self, shape: Any, value: Any) -> list[str]:
        """The texts of the constraints of `shape` itself that `value` breaks."""
        meta = shape.metadata
        kind = shape.type_name
        out: list[str] = []
        if kind == "string" and isinstance(value, str):
            enum = meta.get("enum")
            if enum and value not in enum:
                out.append(f"Member must satisfy enum value set: [{', '.join(enum)}]")
            out += _sized(len(value), meta, "length")
            pattern = self._pattern(meta.get("pattern"))
            if pattern is not None and not pattern.fullmatch(value):
                out.append(f"Member must satisfy regular expression pattern: {meta['pattern']}")
        elif kind in ("integer", "long") and isinstance(value, int) and not isinstance(value, bool):
            limits = dict(meta)
            if shape.name in _TIGHTER_MAX:
                limits["max"] = min(limits.get("max", _TIGHTER_MAX[shape.name]),
                                    _TIGHTER_MAX[shape.name])  # fmt: skip
            out += _sized(value, limits, "value")
        elif kind in ("float", "double") and isinstance(value, (int, float)):
            out += _sized(value, meta, "value")
        elif kind in ("list", "map") and isinstance(value, (list, dict)):
            out += _sized(len(value), meta, "length")
        return out

    def _pattern(self, pattern: str | None) -> re.Pattern[str] | None:
        if pattern is None:
            return None
        if pattern not in self._patterns:
            text = pattern
            for java, python in _JAVA_CLASSES.items():
                text = text.replace(java, python)
            try:
                self._patterns[pattern] = re.compile(text)
            except re.error as exc:  # never refuse a request over a pattern we cannot read
                log.warning("model pattern %r not checked: %s", pattern, exc)
                self._patterns[pattern] = None
        return self._patterns[pattern]


def _sized(measure: float, limits: Mapping[str, Any], what: str) -> list[str]:
    out = []
    if "min" in limits and measure < limits["min"]:
        out.append(f"Member must have {what} greater than or equal to {limits['min']}")
    if "max" in limits and measure > limits["max"]:
        out.append(f"Member must have {what} less than or equal to {limits['max']}")
    return out


def _route_key(path: str) -> str:
    return _LABEL.sub("{}", path).rstrip("/") or "/"


_LOCATIONS: dict[str, tuple[_Location, ...]] = {}


def _locations(shape: Any) -> tuple[_Location, ...]:
    """Where each top-level member of an input shape travels (cached by shape name)."""
    found = _LOCATIONS.get(shape.name)
    if found is None:
        found = _LOCATIONS[shape.name] = tuple(
            _Location(
                member=name,
                wire=m.serialization.get("name", name),
                where=m.serialization.get("location", "body"),
                path=_member_path("", name),
            )
            for name, m in shape.members.items()
        )
    return found


def _query_value(member: Any, query: Any, wire: str) -> Any:
    if member.type_name == "list":
        values = query.getall(wire, []) if hasattr(query, "getall") else query.get(wire)
        return list(values) or None
    raw = query.get(wire)
    if raw is None:
        return None
    if member.type_name in ("integer", "long"):
        # Not a number: the handler answers as it always has (InvalidParameterValue).
        return int(raw) if raw.lstrip("-").isdigit() else None
    if member.type_name == "boolean":
        return None
    return raw


@functools.lru_cache(maxsize=1)
def validator() -> ModelValidator:
    """The process's one ModelValidator (botocore's model is read once)."""
    return ModelValidator()


# The request key holding the botocore OperationModel a request was matched to (read_json
# checks the body against it).
OPERATION = "lambdakit_operation"


@web.middleware
async def validation_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Check a Lambda API request's URI labels, query and headers against the model."""
    resource = request.match_info.route.resource
    if resource is not None:
        checker = validator()
        canonical = resource.canonical
        operation = checker.operation(request.method, canonical)
        if operation is not None:
            request[OPERATION] = operation
            labels = [request.match_info.get(name, "") for name in _LABEL.findall(canonical)]
            checker.check_request(operation, labels, request.query, request.headers, None)
    return await handler(request)
