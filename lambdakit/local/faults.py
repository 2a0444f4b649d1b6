"""Fault injection for testing clients: per function throttle rate, error rate, added latency.

Off by default. Set through `lambdakit local faults FUNCTION ...` or the management endpoint

    PUT    /_lambdakit/faults/{name}   {"throttle_rate": 0.3, "error_rate": 0.1, "latency_ms": 50}
                                       {"throttle_rate": 0.2,
                                        "throttle_reason": "CallerRateLimitExceeded"}
                                       {"max_rps": 40}  (429s beyond 40 requests/s)
    GET    /_lambdakit/faults/{name}   the current settings ({} when none)
    DELETE /_lambdakit/faults/{name}   back to no faults
    GET    /_lambdakit/faults          every function's settings
    DELETE /_lambdakit/faults          no faults anywhere

Settings are kept in `<state_dir>/faults.json`, so a restarted service injects the same
faults (each function's random sequence starts over). With a seed (per function, or the
server's `--fault-seed`), the sequence of decisions for a function is reproducible, so tests
built on it are deterministic.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from lambdakit.local.checks import bad_content, invalid

__all__ = [
    "MAX_LATENCY_MS",
    "THROTTLE_REASONS",
    "FaultDecision",
    "FaultInjector",
    "FaultSettings",
    "add_fault_routes",
]

log = logging.getLogger("lambdakit.local.faults")

# Lambda's longest timeout (15 minutes): more added latency than that is never a test.
MAX_LATENCY_MS = 900_000.0
# The Reasons a 429 of Lambda's Invoke carries (what an injected throttle may say).
THROTTLE_REASONS: tuple[str, ...] = (
    "ConcurrentInvocationLimitExceeded",
    "ReservedFunctionConcurrentInvocationLimitExceeded",
    "FunctionInvocationRateLimitExceeded",
    "ReservedFunctionInvocationRateLimitExceeded",
    "CallerRateLimitExceeded",
    "ConcurrentSnapshotCreateLimitExceeded",
)
_FIELDS = ("throttle_rate", "throttle_reason", "error_rate", "latency_ms", "max_rps", "seed")


@dataclass(frozen=True)
class FaultSettings:
    """What to inject into one function's invocations; rates are probabilities 0..1."""

    throttle_rate: float = 0.0
    throttle_reason: str = "ConcurrentInvocationLimitExceeded"  # the Reason of injected 429s
    error_rate: float = 0.0
    latency_ms: float = 0.0
    max_rps: float | None = None  # requests/s beyond which 429 FunctionInvocationRateLimitExceeded
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("throttle_rate", "error_rate"):
            value = getattr(self, name)
            if not _finite(value) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}")
        latency = self.latency_ms
        if not _finite(latency) or not 0 <= latency <= MAX_LATENCY_MS:
            raise ValueError(
                f"latency_ms must be a number between 0 and {MAX_LATENCY_MS:.0f} "
                f"(Lambda's longest timeout), got {latency!r}"
            )
        if self.throttle_reason not in THROTTLE_REASONS:
            raise ValueError(
                f"throttle_reason must be one of {', '.join(THROTTLE_REASONS)}, "
                f"got {self.throttle_reason!r}"
            )
        if self.max_rps is not None and (not _finite(self.max_rps) or not self.max_rps > 0):
            raise ValueError(f"max_rps must be a number > 0, got {self.max_rps!r}")
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> FaultSettings:
        """Settings from the endpoint's JSON body; unknown keys are refused by name."""
        unknown = sorted(set(body) - set(_FIELDS))
        if unknown:
            raise ValueError(f"unknown fault settings {unknown}: use {', '.join(_FIELDS)}")
        return cls(**body)


def _finite(value: Any) -> bool:
    """A JSON number that is not NaN or infinite (json.loads takes 'Infinity' and 'NaN')."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class FaultDecision:
    """What happens to one invocation: wait latency_s, then throttle or fail (or neither)."""

    throttle: bool
    error: bool
    latency_s: float
    throttle_reason: str = "ConcurrentInvocationLimitExceeded"
    max_rps: float | None = None


class FaultInjector:
    """Per-function fault settings and their (seedable) random decisions."""

    def __init__(self, seed: int | None = None, path: Path | None = None) -> None:
        self.seed = seed
        self.path = path  # where settings persist (None: in memory only)
        self._settings: dict[str, FaultSettings] = {}
        self._rngs: dict[str, random.Random] = {}
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            stored = json.loads(path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.error("ignoring unreadable fault settings %s: %s", path, exc)
            return
        for name, body in (stored if isinstance(stored, dict) else {}).items():
            try:
                self._apply(name, FaultSettings.from_json(body))
            except (TypeError, ValueError) as exc:
                log.error("ignoring stored faults of %s: %s", name, exc)

    def _save(self) -> None:
        if self.path is None:
            return
        text = json.dumps({k: asdict(v) for k, v in sorted(self._settings.items())}, indent=1)
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(text)
        os.replace(tmp, self.path)  # atomic: a crash never leaves half the settings

    def set(self, function_name: str, settings: FaultSettings) -> None:
        """Replace a function's settings; this restarts its random sequence."""
        self._apply(function_name, settings)
        self._save()

    def _apply(self, function_name: str, settings: FaultSettings) -> None:
        self._settings[function_name] = settings
        seed = settings.seed if settings.seed is not None else self.seed
        # A string seed mixes in the name, so functions draw independent, reproducible sequences.
        self._rngs[function_name] = (
            random.Random(f"{seed}:{function_name}") if seed is not None else random.Random()
        )

    def get(self, function_name: str) -> FaultSettings | None:
        """A function's settings, None when it has none."""
        return self._settings.get(function_name)

    def clear(self, function_name: str) -> None:
        """Remove a function's faults (also used when the function is deleted)."""
        if self._settings.pop(function_name, None) is not None:
            self._save()
        self._rngs.pop(function_name, None)

    def clear_all(self) -> None:
        """Remove every function's faults."""
        self._settings.clear()
        self._rngs.clear()
        self._save()

    def all(self) -> dict[str, FaultSettings]:
        """Every function's settings."""
        return dict(self._settings)

    def decide(self, function_name: str) -> FaultDecision | None:
        """Draw the faults of one invocation; None when the function has no faults set."""
        settings = self._settings.get(function_name)
        if settings is None:
            return None
        rng = self._rngs[function_name]
        # Always draw both numbers, so one rate never shifts the other's sequence.
        throttle_draw, error_draw = rng.random(), rng.random()
        throttle = throttle_draw < settings.throttle_rate
        return FaultDecision(
            throttle=throttle,
            error=not throttle and error_draw < settings.error_rate,
            latency_s=settings.latency_ms / 1000.0,
            throttle_reason=settings.throttle_reason,
            max_rps=settings.max_rps,
        )


def add_fault_routes(
    app: web.Application, injector: FaultInjector, require_function: Callable[[str], Any]
) -> None:
    """Mount the fault management endpoint; require_function raises 404 for unknown names."""

    async def list_all(request: web.Request) -> web.Response:
        return web.json_response({"Faults": {k: asdict(v) for k, v in injector.all().items()}})

    async def get_one(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        require_function(name)
        settings = injector.get(name)
        return web.json_response(asdict(settings) if settings else {})

    async def put_one(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        require_function(name)
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError as exc:
            raise bad_content(f"Could not parse request body into json: {exc}") from None
        except RecursionError:
            raise bad_content(
                "Could not parse request body into json: nested too deeply."
            ) from None
        if not isinstance(body, dict):
            raise bad_content("Fault settings must be a JSON object.")
        try:
            settings = FaultSettings.from_json(body)
        except (TypeError, ValueError) as exc:
            raise invalid(f"Invalid fault settings for {name}: {exc}") from None
        injector.set(name, settings)
        return web.json_response(asdict(settings))

    async def delete_one(request: web.Request) -> web.Response:
        injector.clear(request.match_info["name"])
        return web.Response(status=204)

    async def delete_all(request: web.Request) -> web.Response:
        injector.clear_all()
        return web.Response(status=204)

    app.router.add_get("/_lambdakit/faults", list_all)
    app.router.add_delete("/_lambdakit/faults", delete_all)
    app.router.add_get("/_lambdakit/faults/{name}", get_one)
    app.router.add_put("/_lambdakit/faults/{name}", put_one)
    app.router.add_delete("/_lambdakit/faults/{name}", delete_one)
