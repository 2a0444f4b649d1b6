"""Retry policy and AIMD limit: pure functions, driven without sleeping."""

import random
import threading

import pytest

from lambdakit.engine.retry import AdaptiveLimit, Retry, next_delay
from lambdakit.errors import InvalidInput
from lambdakit.invocation import CLIENT_ERROR, FUNCTION_ERROR, OK, THROTTLE, TIMEOUT


def test_defaults_match_step_functions_names():
    policy = Retry()
    assert (policy.max_attempts, policy.base_delay, policy.backoff, policy.max_delay) == (
        3,
        1.0,
        2.0,
        20.0,
    )
    assert policy.jitter == "full"
    assert CLIENT_ERROR not in policy.on and TIMEOUT in policy.on


def test_no_jitter_is_exponential_and_capped():
    policy = Retry(max_attempts=10, jitter="none", base_delay=1.0, backoff=2.0, max_delay=5.0)
    delays = [policy.next_delay(FUNCTION_ERROR, a) for a in range(1, 10)]
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0]
    assert policy.next_delay(FUNCTION_ERROR, 10) is None


def test_full_jitter_stays_within_cap_and_varies():
    policy = Retry(max_attempts=5)
    rng = random.Random(7)
    delays = [policy.next_delay(FUNCTION_ERROR, 3, rng=rng) for _ in range(200)]
    assert all(0.0 <= d <= 4.0 for d in delays)
    assert len(set(delays)) > 100


def test_gives_up_on_ok_unlisted_classes_and_budget():
    policy = Retry()
    assert policy.next_delay(OK, 1) is None
    assert policy.next_delay(CLIENT_ERROR, 1) is None
    assert policy.next_delay(FUNCTION_ERROR, 2) is not None
    assert policy.next_delay(FUNCTION_ERROR, 3) is None


def test_retry_after_is_a_floor():
    policy = Retry(jitter="none", base_delay=0.1)
    assert policy.next_delay(THROTTLE, 1, retry_after=3.0) == 3.0
    assert policy.next_delay(THROTTLE, 1, retry_after=0.01) == pytest.approx(0.1)


def test_throttles_have_their_own_budget():
    policy = Retry(max_attempts=1, max_throttle_retries=2, jitter="none")
    assert policy.next_delay(FUNCTION_ERROR, 1) is None
    assert policy.next_delay(THROTTLE, 1) is not None
    assert policy.next_delay(THROTTLE, 2) is not None
    assert policy.next_delay(THROTTLE, 3) is None


def test_timeout_retried_only_when_policy_says_so():
    assert Retry().next_delay(TIMEOUT, 1) is not None
    without = Retry(on=(THROTTLE, FUNCTION_ERROR))
    assert without.next_delay(TIMEOUT, 1) is None


def test_module_level_next_delay_uses_default_policy():
    assert next_delay(FUNCTION_ERROR, 3) is None
    assert next_delay(FUNCTION_ERROR, 1, rng=random.Random(1)) is not None
    assert next_delay(FUNCTION_ERROR, 3, policy=Retry(max_attempts=4)) is not None


def test_shorthands():
    assert Retry.coerce(None) == Retry()
    assert Retry.coerce(True) == Retry()
    assert Retry.coerce(5).max_attempts == 5
    for off in (False, 0):
        policy = Retry.coerce(off)
        assert policy.max_attempts == 1
        assert policy.next_delay(THROTTLE, 1) is None
    single = Retry.coerce(1)
    assert single.next_delay(FUNCTION_ERROR, 1) is None
    assert single.next_delay(THROTTLE, 1) is not None  # a 429 ran nothing: still retried
    assert Retry.coerce({"max_attempts": 4, "on": ["throttle"]}).on == ("throttle",)
    same = Retry(max_attempts=2)
    assert Retry.coerce(same) is same


@pytest.mark.parametrize(
    "bad",
    [
        {"max_attempts": 0},
        {"jitter": "half"},
        {"on": ("explode",)},
        {"backoff": 0.5},
        {"base_delay": -1},
        {"wait": 3},
    ],
)
def test_bad_settings_are_named(bad):
    with pytest.raises(InvalidInput):
        Retry.coerce(bad)


def test_item_failures_are_verdicts_unless_marked_retryable():
    policy = Retry()
    assert policy.item_attempts == 1
    assert not policy.retries_item(1, retryable=False)  # judged once: done
    assert policy.retries_item(5, retryable=True)  # transient: max_attempts decides
    twice = Retry(max_attempts=4, item_attempts=2)
    assert twice.retries_item(1, retryable=False) and not twice.retries_item(2, retryable=False)
    assert Retry.coerce({"item_attempts": 3}).item_attempts == 3


@pytest.mark.parametrize(
    "bad, named",
    [
        ({"item_attempts": 0}, "item_attempts must be an int >= 1"),
        ({"item_attempts": 1.5}, "item_attempts must be an int >= 1"),
        ({"item_attempts": True}, "item_attempts must be an int >= 1"),
        ({"item_attempts": 3, "max_attempts": 2}, r"cannot exceed max_attempts \(2\)"),
    ],
)
def test_bad_item_attempts_are_named(bad, named):
    with pytest.raises(InvalidInput, match=named):
        Retry.coerce(bad)


def test_bad_shorthand_type():
    with pytest.raises(InvalidInput, match="retry must be"):
        Retry.coerce("often")
    with pytest.raises(InvalidInput, match="negative"):
        Retry.coerce(-2)


def test_aimd_shrinks_on_throttle_and_grows_back_to_maximum():
    limit = AdaptiveLimit(maximum=16)
    assert limit.limit == 16
    assert limit.on_throttle() == 12
    assert limit.on_throttle() == 9
    halving = AdaptiveLimit(maximum=16, decrease=0.5)
    assert halving.on_throttle() == 8
    for _ in range(200):
        limit.on_success()
    assert limit.limit == 16


def test_aimd_never_below_one():
    limit = AdaptiveLimit(maximum=4)
    for _ in range(10):
        limit.on_throttle()
    assert limit.limit == 1


def test_aimd_counts_one_burst_of_throttles_once():
    limit = AdaptiveLimit(maximum=32)
    sent_epoch = limit.epoch
    assert limit.on_throttle(sent_epoch) == 24
    # Requests sent before that shrink come back throttled too: they must not shrink again.
    assert limit.on_throttle(sent_epoch) == 24
    assert limit.on_throttle(limit.epoch) == 18


def test_aimd_additive_increase_is_one_per_window():
    limit = AdaptiveLimit(maximum=32, initial=4)
    limit.on_success()
    assert limit.limit == 4  # growth is 1/limit per success
    for _ in range(3):
        limit.on_success()
    assert limit.limit == 5
    for _ in range(5):
        limit.on_success()
    assert limit.limit == 6


def test_aimd_rounds_so_a_throttle_at_the_wall_keeps_it_busy():
    limit = AdaptiveLimit(maximum=32, initial=5)
    assert limit.on_throttle() == 4  # 3.75 rounds to 4: a reserved concurrency of 4 stays full


def test_aimd_is_thread_safe():
    limit = AdaptiveLimit(maximum=10_000, initial=1)

    def grow():
        for _ in range(2000):
            limit.on_success()

    threads = [threading.Thread(target=grow) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Sequential growth by 1/limit for 8000 steps from 1 reaches about sqrt(2*8000).
    reference = AdaptiveLimit(maximum=10_000, initial=1)
    for _ in range(8000):
        reference.on_success()
    assert limit.limit == reference.limit


def test_aimd_rejects_bad_settings():
    with pytest.raises(InvalidInput):
        AdaptiveLimit(maximum=0)
    with pytest.raises(InvalidInput):
        AdaptiveLimit(maximum=4, decrease=1.5)


def _drive(limit, capacity, rounds):
    """Send `limit` requests a round to a function that runs `capacity` at once."""
    throttles, levels = 0, []
    for _ in range(rounds):
        n, epoch = limit.limit, limit.epoch
        for _ in range(max(n - capacity, 0)):
            throttles += 1
            limit.on_throttle(epoch)
        for _ in range(min(n, capacity)):
            limit.on_success()
        levels.append(limit.limit)
    return throttles, levels


def test_aimd_settles_at_a_reserved_concurrency_instead_of_bouncing_above_it():
    limit = AdaptiveLimit(maximum=32)
    _drive(limit, capacity=4, rounds=20)  # converging from 32
    throttles, levels = _drive(limit, capacity=4, rounds=280)
    # Plain AIMD probes 5 every few windows: ~220 throttles here, each a Retry-After wait.
    assert throttles <= 20
    assert levels.count(4) >= 260  # a rare probe of 5 aside
    # A probe that gets through (capacity grew) forgets the ceiling and grows on.
    _, levels = _drive(limit, capacity=8, rounds=300)
    assert levels[-1] >= 7
