"""Cost estimates: billed GB-seconds × price plus the per-request fee, by region and arch."""

from __future__ import annotations

import math

import pytest
from factories import mixed_run

from lambdakit.errors import InvalidInput
from lambdakit.results.cost import PriceTable, attempt_costs, run_cost


def test_attempt_costs_follow_billed_duration_memory_and_request_fee():
    run = mixed_run()
    prices = PriceTable(gb_second_usd=0.00002, request_usd_per_million=0.5)
    costs = attempt_costs(run.attempts, prices)
    for row, cost in zip(run.attempts.itertuples(), costs.itertuples(), strict=True):
        ran = not math.isnan(row.billed_duration_ms)
        gb_s = row.billed_duration_ms / 1000 * row.memory_size_mb / 1024 if ran else 0.0
        assert cost.gb_seconds == pytest.approx(gb_s)
        # Throttles and API errors never reached the function: AWS charges nothing.
        assert cost.requests == int(ran or row.http_status == 200)
        assert cost.usd == pytest.approx(gb_s * 0.00002 + cost.requests * 0.5 / 1e6)


def test_run_cost_totals_and_memory_fallback():
    run = mixed_run()
    prices = PriceTable.for_region("eu-west-1")
    total = run_cost(run.attempts, prices)
    assert total["usd"] == pytest.approx(total["duration_usd"] + total["request_usd"])
    assert total["requests"] == (run.attempts["billed_duration_ms"].notna()).sum()
    # Rows without a memory size take the function's configured memory.
    attempts = run.attempts.assign(memory_size_mb=math.nan)
    assert run_cost(attempts, prices)["gb_seconds"] == 0.0
    assert run_cost(attempts, prices, memory_mb=512)["gb_seconds"] == pytest.approx(
        total["gb_seconds"]
    )
    assert run.cost() == pytest.approx(run_cost(run.attempts, PriceTable.for_region("us-east-1")))


def test_arm64_is_cheaper_per_gb_second_and_the_request_fee_is_20_cents_per_million():
    x86, arm = PriceTable.for_region("us-east-1"), PriceTable.for_region("us-east-1", "arm64")
    assert arm.gb_second_usd < x86.gb_second_usd
    assert x86.request_usd_per_million == arm.request_usd_per_million == 0.20
    assert PriceTable.coerce("arm64", region="us-west-2") == PriceTable.for_region(
        "us-west-2", "arm64"
    )


def test_bad_prices_are_named():
    with pytest.raises(InvalidInput, match="no built-in Lambda prices for region 'xx-moon-1'"):
        PriceTable.for_region("xx-moon-1")
    with pytest.raises(InvalidInput, match="architecture must be one of"):
        PriceTable.for_region("us-east-1", "mips")
    with pytest.raises(InvalidInput, match="gb_second_usd must be a non-negative number"):
        PriceTable(gb_second_usd=-1)
    with pytest.raises(InvalidInput, match="prices must be a PriceTable"):
        PriceTable.coerce(3)
