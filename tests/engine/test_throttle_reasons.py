"""Throttles told apart by their Reason: concurrency ones shrink the in-flight limit, rate ones
slow the requests per second (an adaptive token bucket), against `lambdakit local`."""

from __future__ import annotations

import random

import pytest

import lambdakit
from lambdakit.engine.retry import AdaptiveLimit, AdaptiveRate
from lambdakit.errors import InvalidInput

FAST = "def handler(event, context):\n    return [i * 2 for i in event['Items']]\n"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_is_unlimited_until_a_rate_throttle_then_starts_below_what_was_sent():
    clock = FakeClock()
    rate = AdaptiveRate(clock=clock)
    assert rate.rate is None and rate.delay() == 0.0
    for _ in range(100):  # 100 requests over half a second: 200/s
        rate.sent()
        clock.now += 0.005
    assert rate.on_throttle(rate.epoch) == pytest.approx(150, rel=0.05)  # 0.75 x 200/s
    epoch = rate.epoch
    assert rate.delay() > 0  # the bucket starts empty: the throttle is heeded at once
    assert rate.on_throttle(epoch - 1) == rate.rate  # sent before the decrease: once only
    assert rate.on_throttle(epoch) == pytest.approx(112.5, rel=0.05)


def test_rate_bucket_spaces_requests_and_grows_back_additively():
    clock = FakeClock()
    rate = AdaptiveRate(clock=clock)
    rate.sent()
    clock.now += 1.0
    rate.on_throttle()  # one request in the last second: the floor of 1/s
    assert rate.rate == AdaptiveRate.MIN_RATE
    assert rate.delay() == pytest.approx(1.0)
    clock.now += 1.0
    assert rate.delay() == 0.0
    rate.sent()
    assert rate.delay() == pytest.approx(1.0)
    before = rate.rate
    for _ in range(10):
        rate.on_success()
    assert before < rate.rate <= before + 10  # additive: +1/s per second's worth of successes


def test_rate_cap_is_never_exceeded_and_bad_caps_are_refused():
    clock = FakeClock()
    capped = AdaptiveRate(maximum=20, clock=clock)
    assert capped.rate == 20
    for _ in range(1000):
        capped.on_success()
    assert capped.rate == 20
    sent = 0
    for _ in range(1000):  # ten seconds, asked every 10 ms
        clock.now += 0.01
        if capped.delay() == 0.0:
            capped.sent()
            sent += 1
    assert 190 <= sent <= 211
    for bad in (0, -1, "fast", True):
        with pytest.raises(InvalidInput, match="max_rps"):
            AdaptiveRate(maximum=bad)


def _random_throttles(limit, p, rounds, rng):
    levels = []
    for _ in range(rounds):
        n, epoch = limit.limit, limit.epoch
        for throttled in [rng.random() < p for _ in range(n)]:
            limit.on_throttle(epoch) if throttled else limit.on_success()
        levels.append(limit.limit)
    return levels


def test_limit_recovers_between_random_throttles_instead_of_sitting_at_one():
    # Throttles at random (30% of requests, whatever is in flight) are no wall the limit
    # could find: it backs off and grows back, as plain AIMD does, instead of pinning at 1.
    levels = _random_throttles(AdaptiveLimit(maximum=10), 0.3, 400, random.Random(1))[50:]
    assert sum(levels) / len(levels) > 2.5
    assert max(levels) >= 5
    assert levels.count(1) < len(levels) / 4


@pytest.fixture
def go(local_lambda, tmp_path):
    def call(function, records, **kwargs):
        kwargs.setdefault("cache", False)
        kwargs.setdefault("progress", False)
        return lambdakit.run(function, records, endpoint_url=local_lambda.endpoint_url, **kwargs)

    return call


def test_rate_throttles_slow_the_rate_and_leave_the_in_flight_limit_alone(
    local_lambda, make_function, go
):
    name = make_function(FAST)
    local_lambda.set_faults(name, max_rps=40)
    result = go(name, list(range(160)), batch_size=1, concurrency=8)
    s = result.summary()
    assert s["failed_records"] == 0
    assert list(result.outputs()) == [i * 2 for i in range(160)]
    attempts = result.attempts
    throttled = attempts[attempts["throttled"]]
    assert len(throttled) > 0  # it did run into the rule, unlimited as it started
    assert set(throttled["throttle_reason"]) == {"FunctionInvocationRateLimitExceeded"}
    assert s["throttles"] < 0.25 * s["invocations"]  # few 429s, once the rate is found
    assert (attempts["in_flight_limit"] == 8).all()  # the in-flight limit is not collapsed
    assert attempts["rate_limit"].notna().any()
    # Settled: the requests of the last half of the run go at about the allowed rate.
    late = attempts.sort_values("start_s").iloc[len(attempts) // 2 :]
    span = late["start_s"].max() - late["start_s"].min()
    assert len(late) / span < 40 * 1.5
    assert late["rate_limit"].dropna().max() < 40 * 2
    local_lambda.clear_faults(name)


def test_concurrency_throttles_at_random_leave_the_limit_above_one(local_lambda, make_function, go):
    name = make_function(FAST)
    local_lambda.set_faults(name, throttle_rate=0.3, seed=7)
    result = go(name, list(range(120)), batch_size=1, concurrency=8)
    assert result.summary()["failed_records"] == 0
    attempts = result.attempts.sort_values("start_s")
    assert set(attempts.loc[attempts["throttled"], "throttle_reason"]) == {
        "ConcurrentInvocationLimitExceeded"
    }
    assert attempts["rate_limit"].isna().all()  # concurrency throttles leave the rate alone
    late = attempts.iloc[len(attempts) // 2 :]["in_flight_limit"]
    assert (late == 1).mean() < 0.5
    assert late.max() >= 3
    local_lambda.clear_faults(name)
