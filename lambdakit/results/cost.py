"""Estimated Lambda cost of a run: GB-seconds of billed duration plus the per-request fee."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lambdakit.errors import InvalidInput

__all__ = ["ARCHITECTURES", "PriceTable", "attempt_costs", "run_cost"]

ARCHITECTURES = ("x86_64", "arm64")

# On-demand prices of the first duration tier (USD), from AWS's Lambda pricing page. These
# regions share the standard price; others differ and must be given explicitly.
_STANDARD = {"x86_64": 0.0000166667, "arm64": 0.0000133334}
_STANDARD_REQUEST_PER_MILLION = 0.20
_STANDARD_REGIONS = (
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ca-central-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-central-1",
    "eu-north-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-south-1",
    "ap-southeast-1",
    "ap-southeast-2",
    "sa-east-1",
)


@dataclass(frozen=True)
class PriceTable:
    """Lambda prices used for estimates: USD per GB-second and per million requests.

    >>> PriceTable.for_region("us-east-1", "arm64").gb_second_usd
    1.33334e-05
    >>> PriceTable(gb_second_usd=2e-5).request_usd_per_million
    0.2
    """

    gb_second_usd: float = _STANDARD["x86_64"]
    request_usd_per_million: float = _STANDARD_REQUEST_PER_MILLION
    region: str = "us-east-1"
    architecture: str = "x86_64"

    def __post_init__(self) -> None:
        for name in ("gb_second_usd", "request_usd_per_million"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise InvalidInput(
                    f"PriceTable.{name} must be a non-negative number, got {value!r}"
                )
        if self.architecture not in ARCHITECTURES:
            raise InvalidInput(
                f"PriceTable.architecture must be one of {ARCHITECTURES}, got {self.architecture!r}"
            )

    @classmethod
    def for_region(cls, region: str = "us-east-1", architecture: str = "x86_64") -> PriceTable:
        """The built-in prices for a region and architecture (x86_64 or arm64)."""
        if architecture not in ARCHITECTURES:
            raise InvalidInput(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        if region not in _STANDARD_REGIONS:
            raise InvalidInput(
                f"no built-in Lambda prices for region {region!r} (known: "
                f"{', '.join(_STANDARD_REGIONS)}); pass PriceTable(gb_second_usd=..., "
                "request_usd_per_million=...) with the prices of that region"
            )
        return cls(_STANDARD[architecture], _STANDARD_REQUEST_PER_MILLION, region, architecture)

    @classmethod
    def coerce(
        cls, prices: PriceTable | str | None = None, *, region: str | None = None
    ) -> PriceTable:
        """Accept a PriceTable, an architecture name, or None (x86_64 in `region`)."""
        if isinstance(prices, PriceTable):
            return prices
        if prices is None or isinstance(prices, str):
            return cls.for_region(region or "us-east-1", prices or "x86_64")
        raise InvalidInput(f"prices must be a PriceTable or an architecture name, got {prices!r}")


def attempt_costs(
    attempts: pd.DataFrame, prices: PriceTable, *, memory_mb: float | None = None
) -> pd.DataFrame:
    """Per attempt: billed GB-seconds, whether a request fee applies, and the USD estimate.

    Billed duration × memory gives GB-seconds. The request fee applies to every attempt
    that reached the function: one with a REPORT line, or an HTTP 200 reply. Throttles and
    other API errors are not charged by AWS. `memory_mb` fills rows with no memory size.
    """
    billed_s = pd.to_numeric(attempts["billed_duration_ms"], errors="coerce").fillna(0.0) / 1000
    memory = pd.to_numeric(attempts["memory_size_mb"], errors="coerce")
    if memory_mb is not None:
        memory = memory.fillna(float(memory_mb))
    gb_seconds = billed_s * memory.fillna(0.0) / 1024
    reached = attempts["billed_duration_ms"].notna() | (
        pd.to_numeric(attempts["http_status"], errors="coerce") == 200
    )
    requests = reached.astype(np.int64)
    usd = gb_seconds * prices.gb_second_usd + requests * prices.request_usd_per_million / 1e6
    return pd.DataFrame(
        {"gb_seconds": gb_seconds.astype(float), "requests": requests, "usd": usd.astype(float)},
        index=attempts.index,
    )


def run_cost(
    attempts: pd.DataFrame, prices: PriceTable, *, memory_mb: float | None = None
) -> dict[str, float]:
    """Totals for a run: gb_seconds, requests, duration_usd, request_usd, usd."""
    costs = attempt_costs(attempts, prices, memory_mb=memory_mb)
    gb_seconds = float(costs["gb_seconds"].sum())
    requests = int(costs["requests"].sum())
    duration_usd = gb_seconds * prices.gb_second_usd
    request_usd = requests * prices.request_usd_per_million / 1e6
    return {
        "gb_seconds": gb_seconds,
        "requests": requests,
        "duration_usd": duration_usd,
        "request_usd": request_usd,
        "usd": duration_usd + request_usd,
    }
