"""Enrich orders: line totals, discount, VAT by country, and the total converted to USD.

Request: {"Items": [order, ...]} with orders as dataset.py generates them:
  {"order_id": "O-000001", "customer_id": "C-00042", "created_at": "2024-01-01T00:07:12Z",
   "country": "DE", "currency": "EUR", "discount_pct": 10,
   "lines": [{"sku": "SKU-0012", "qty": 2, "unit_price": 19.99}, ...]}

Response: one enriched order per record; invalid orders are reported in batchItemFailures
(itemIdentifier = position in the batch, or the ID_FIELD value, e.g. ID_FIELD=order_id),
with the valid orders' outputs under "outputs".

Money is computed with Decimal and rounded half-up to the currency's minor unit. The rates
are a fixed snapshot (not live data), so that outputs are reproducible.
"""

from __future__ import annotations

import logging
import os
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)

USD_PER_UNIT = {
    "USD": Decimal("1"),
    "EUR": Decimal("1.08"),
    "GBP": Decimal("1.27"),
    "CHF": Decimal("1.13"),
    "SEK": Decimal("0.095"),
    "JPY": Decimal("0.0067"),
    "CAD": Decimal("0.74"),
    "AUD": Decimal("0.66"),
}
MINOR_UNITS = {"JPY": 0}  # every other currency here has cents
VAT_RATE = {
    "DE": Decimal("0.19"),
    "FR": Decimal("0.20"),
    "NL": Decimal("0.21"),
    "SE": Decimal("0.25"),
    "GB": Decimal("0.20"),
    "CH": Decimal("0.081"),
    "JP": Decimal("0.10"),
    "US": Decimal("0"),  # no federal VAT; state sales tax is out of scope here
    "CA": Decimal("0.05"),
    "AU": Decimal("0.10"),
}


class InvalidOrder(ValueError):
    """An order that cannot be enriched; the message says why."""


def _round(amount: Decimal, currency: str) -> Decimal:
    step = Decimal(1).scaleb(-MINOR_UNITS.get(currency, 2))
    return amount.quantize(step, rounding=ROUND_HALF_UP)


def _number(value: Any, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidOrder(f"{what} must be a number, got {value!r}")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise InvalidOrder(f"{what} must be a number, got {value!r}") from None
    if not number.is_finite():
        raise InvalidOrder(f"{what} must be finite, got {value!r}")
    return number


def enrich(order: Any) -> dict[str, Any]:
    """The enriched order; raises InvalidOrder naming the first problem found."""
    if not isinstance(order, dict) or not order.get("order_id"):
        raise InvalidOrder("order has no order_id")
    oid = order["order_id"]
    currency, country = order.get("currency"), order.get("country")
    if currency not in USD_PER_UNIT:
        raise InvalidOrder(f"{oid}: unknown currency {currency!r}")
    if country not in VAT_RATE:
        raise InvalidOrder(f"{oid}: unknown country {country!r}")
    lines = order.get("lines")
    if not isinstance(lines, list) or not lines:
        raise InvalidOrder(f"{oid}: an order needs at least one line")
    discount_pct = _number(order.get("discount_pct", 0), f"{oid}: discount_pct")
    if not 0 <= discount_pct < 100:
        raise InvalidOrder(f"{oid}: discount_pct must be in [0, 100), got {discount_pct}")

    subtotal = Decimal(0)
    units = 0
    for n, line in enumerate(lines):
        qty = line.get("qty") if isinstance(line, dict) else None
        if isinstance(qty, bool) or not isinstance(qty, int) or qty <= 0:
            raise InvalidOrder(f"{oid}: line {n} qty must be a positive integer, got {qty!r}")
        price = _number(line.get("unit_price"), f"{oid}: line {n} unit_price")
        if price < 0:
            raise InvalidOrder(f"{oid}: line {n} unit_price is negative ({price})")
        subtotal += _round(price * qty, currency)
        units += qty
    discount = _round(subtotal * discount_pct / 100, currency)
    tax = _round((subtotal - discount) * VAT_RATE[country], currency)
    total = subtotal - discount + tax
    return {
        "order_id": oid,
        "customer_id": order.get("customer_id"),
        "country": country,
        "currency": currency,
        "lines": len(lines),
        "units": units,
        "subtotal": float(subtotal),
        "discount": float(discount),
        "tax_rate": float(VAT_RATE[country]),
        "tax": float(tax),
        "total": float(total),
        "total_usd": float(_round(total * USD_PER_UNIT[currency], "USD")),
    }


def handler(event: dict[str, Any], context: Any) -> Any:
    """Lambda entry point."""
    items = event.get("Items") if isinstance(event, dict) else None
    if not isinstance(items, list):
        raise ValueError('expected a batch request {"Items": [...]}')
    id_field = os.environ.get("ID_FIELD") or None
    outputs: list[Any] = []
    failures: list[dict[str, str]] = []
    for position, order in enumerate(items):
        try:
            outputs.append(enrich(order))
        except InvalidOrder as exc:
            identifier = order.get(id_field) if id_field and isinstance(order, dict) else None
            identifier = position if identifier is None else identifier
            logger.warning("invalid order at position %d: %s", position, exc)
            failures.append({"itemIdentifier": str(identifier), "errorMessage": str(exc)})
            outputs.append(None)
    if failures:
        return {"batchItemFailures": failures, "outputs": outputs}
    return outputs
