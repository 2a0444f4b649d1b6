"""A deterministic generator of order records for the enrich_orders function.

The same (n, seed, invalid_fraction) always gives the same orders, and the first k orders
of a run of n are the orders of a run of k, so datasets of any size are reproducible
without shipping data files.

    from dataset import generate_orders, write_jsonl
    orders = generate_orders(1_000, seed=0, invalid_fraction=0.01)
    write_jsonl("orders.jsonl", 1_000_000)          # streamed, constant memory

    python dataset.py 100000 orders.jsonl --seed 0 --invalid-fraction 0.01
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

# Country -> the currency its customers pay in (a few pay in USD, to vary the mix).
COUNTRIES = {
    "DE": "EUR",
    "FR": "EUR",
    "NL": "EUR",
    "SE": "SEK",
    "GB": "GBP",
    "CH": "CHF",
    "JP": "JPY",
    "US": "USD",
    "CA": "CAD",
    "AU": "AUD",
}
DISCOUNTS = (0, 0, 0, 5, 10, 15)
_START = datetime(2024, 1, 1, tzinfo=timezone.utc)
# The ways an order can be broken, each rejected by enrich_orders with its own message.
_BREAKAGES = ("unknown_currency", "zero_qty", "no_lines", "negative_price", "no_order_id")


def iter_orders(
    n: int, *, seed: int = 0, invalid_fraction: float = 0.0
) -> Iterator[dict[str, Any]]:
    """Yield n orders; about `invalid_fraction` of them are broken in one of five ways."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0.0 <= invalid_fraction <= 1.0:
        raise ValueError(f"invalid_fraction must be in [0, 1], got {invalid_fraction}")
    rng = random.Random(seed)
    countries = sorted(COUNTRIES)
    created = _START
    for i in range(n):
        created += timedelta(seconds=rng.randint(1, 600))
        country = rng.choice(countries)
        currency = "USD" if rng.random() < 0.1 else COUNTRIES[country]
        scale = 150 if currency == "JPY" else (10 if currency == "SEK" else 1)
        lines = [
            {
                "sku": f"SKU-{rng.randint(1, 500):04d}",
                "qty": rng.randint(1, 5),
                "unit_price": round(rng.uniform(1.0, 200.0) * scale, 0 if currency == "JPY" else 2),
            }
            for _ in range(rng.randint(1, 4))
        ]
        order: dict[str, Any] = {
            "order_id": f"O-{i + 1:07d}",
            "customer_id": f"C-{rng.randint(1, 5000):05d}",
            "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "country": country,
            "currency": currency,
            "discount_pct": rng.choice(DISCOUNTS),
            "lines": lines,
        }
        # Always draw, so that the valid orders do not depend on invalid_fraction.
        breaks, breakage = rng.random() < invalid_fraction, rng.choice(_BREAKAGES)
        yield _break(order, breakage) if breaks else order


def _break(order: dict[str, Any], breakage: str) -> dict[str, Any]:
    if breakage == "unknown_currency":
        order["currency"] = "XXX"
    elif breakage == "zero_qty":
        order["lines"][0]["qty"] = 0
    elif breakage == "no_lines":
        order["lines"] = []
    elif breakage == "negative_price":
        order["lines"][0]["unit_price"] = -abs(order["lines"][0]["unit_price"]) - 1
    else:
        order["order_id"] = None
    return order


def generate_orders(
    n: int, *, seed: int = 0, invalid_fraction: float = 0.0
) -> list[dict[str, Any]]:
    """The first n orders as a list (see iter_orders)."""
    return list(iter_orders(n, seed=seed, invalid_fraction=invalid_fraction))


def write_jsonl(path: str | Path, n: int, *, seed: int = 0, invalid_fraction: float = 0.0) -> Path:
    """Write n orders to a JSON Lines file, one order per line; returns the path."""
    path = Path(path)
    with path.open("w", encoding="utf-8") as out:
        for order in iter_orders(n, seed=seed, invalid_fraction=invalid_fraction):
            out.write(json.dumps(order, separators=(",", ":")) + "\n")
    return path


def main(argv: list[str] | None = None) -> None:
    """Command line: python dataset.py N PATH [--seed S] [--invalid-fraction F]."""
    parser = argparse.ArgumentParser(description="Write N generated orders to a JSONL file.")
    parser.add_argument("n", type=int)
    parser.add_argument("path")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--invalid-fraction", type=float, default=0.0)
    args = parser.parse_args(argv)
    write_jsonl(args.path, args.n, seed=args.seed, invalid_fraction=args.invalid_fraction)


if __name__ == "__main__":
    main()
