"""lambdakit.limits(): caps shared by every run of a function, in this kernel or machine."""

from __future__ import annotations

import pytest

import lambdakit
from lambdakit.errors import InvalidInput

# Each item leaves a file named by when its invocation ran (start and end, wall clock), so
# how many ran at once is measured on the function's side, independently of lambdakit.
TIMED = """
import os, time, uuid

def handler(event, context):
    start = time.time()
    time.sleep(float(os.environ.get("SLEEP_S", "0.1")))
    end = time.time()
    open(os.path.join(os.environ["SEEN_DIR"], f"{start!r}_{end!r}_{uuid.uuid4().hex}"), "w").close()
    return [item for item in event["Items"]]
"""


def _spans(folder):
    return [tuple(float(x) for x in p.name.split("_")[:2]) for p in folder.iterdir()]


def _most_at_once(spans):
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


@pytest.fixture
def timed(make_function, tmp_path):
    def make(**env):
        seen = tmp_path / f"seen-{len(list(tmp_path.iterdir()))}"
        seen.mkdir()
        variables = {"SEEN_DIR": str(seen), **{k: str(v) for k, v in env.items()}}
        return make_function(TIMED, Environment={"Variables": variables}, Timeout=30), seen

    return make


def _two_runs(local_lambda, name):
    options = dict(endpoint_url=local_lambda.endpoint_url, progress=False, cache=False,
                   batch_size=1, concurrency=4)  # fmt: skip
    first = lambdakit.start(name, list(range(24)), **options)
    second = lambdakit.start(name, list(range(100, 124)), **options)
    return first.wait(), second.wait()


def test_limits_are_checked_and_cleared():
    for bad in ({"max_concurrency": 0}, {"max_concurrency": 1.5}, {"max_rps": 0},
                {"max_rps": "fast"}, {"max_concurrency": 2, "scope": "planet"}):  # fmt: skip
        with pytest.raises(InvalidInput):
            lambdakit.limits("fn", **bad)
    from lambdakit.engine.limits import gate_for

    chosen = lambdakit.limits("arn:aws:lambda:us-east-1:123456789012:function:fn", max_rps=5)
    assert chosen.max_rps == 5 and gate_for("fn:live") is not None
    lambdakit.limits("fn")
    assert gate_for("fn") is None


@pytest.mark.parametrize("scope", ["kernel", "machine"])
def test_two_concurrent_runs_never_exceed_the_cap_together(local_lambda, timed, tmp_path, scope):
    name, seen = timed(SLEEP_S=0.15)
    lambdakit.limits(name, max_concurrency=3, scope=scope, lock_dir=tmp_path / "locks")
    try:
        results = _two_runs(local_lambda, name)
    finally:
        lambdakit.limits(name)
    for result, first in zip(results, (0, 100), strict=True):
        assert result.summary()["failed_records"] == 0
        assert list(result.outputs()) == list(range(first, first + 24))
    spans = _spans(seen)
    assert len(spans) == 48
    assert 2 <= _most_at_once(spans) <= 3  # both ran, together never more than the cap


def test_two_concurrent_runs_share_a_rate(local_lambda, timed):
    name, seen = timed(SLEEP_S=0.0)
    lambdakit.limits(name, max_rps=20)
    try:
        results = _two_runs(local_lambda, name)
    finally:
        lambdakit.limits(name)
    assert all(r.summary()["failed_records"] == 0 for r in results)
    starts = sorted(s for s, _ in _spans(seen))
    # 48 invocations at 20/s together: no second holds more than the rate (and its burst).
    most = max(sum(1 for t in starts if s <= t < s + 1.0) for s in starts)
    assert most <= 20 + 3
