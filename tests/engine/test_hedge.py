"""Speculative backups (hedge=) against `lambdakit local`: a straggling attempt is sent again,
the first good reply wins, the other is `superseded`, and backups stay within max_share."""

from __future__ import annotations

import logging
import time

import pytest

import lambdakit
from lambdakit.engine.hedge import Hedge
from lambdakit.errors import InvalidInput

# A record marked slow takes SLOW_S the first time it is seen (a marker file says so), and
# is fast afterwards: the backup of its straggling attempt answers at once. TAG=uuid makes
# every reply differ (a function that is not deterministic).
SLOW_ONCE = """
import os, time, uuid

def handler(event, context):
    out = []
    for item in event["Items"]:
        marker = os.path.join(os.environ["SEEN_DIR"], str(item["i"]))
        if item.get("slow") and not os.path.exists(marker):
            open(marker, "w").close()
            time.sleep(float(os.environ["SLOW_S"]))
        else:
            time.sleep(0.02)
        tag = uuid.uuid4().hex if os.environ.get("TAG") else None
        out.append({"i": item["i"], "tag": tag})
    return out
"""


def test_hedge_settings_are_checked():
    assert Hedge() == Hedge(after="p95", factor=2.0, max_share=0.05)
    assert Hedge.coerce(True) == Hedge() and Hedge.coerce(None) is None
    assert Hedge(after="p50").threshold([1.0, 2.0, 3.0] * 10) == 4.0
    assert Hedge(after=0.5, factor=3).threshold([9.0] * 30) == 1.5
    assert Hedge().threshold([1.0] * 5) is None  # fewer than min_samples
    for bad in ({"after": "p100"}, {"after": "fast"}, {"after": 0}, {"factor": 0.5},
                {"max_share": 0}, {"max_share": 2}, {"min_samples": 0}):  # fmt: skip
        with pytest.raises(InvalidInput, match="Hedge"):
            Hedge(**bad)
    with pytest.raises(InvalidInput, match="hedge"):
        Hedge.coerce("p95")


@pytest.fixture
def slow_once(make_function, tmp_path):
    def make(**env):
        seen = tmp_path / f"seen-{len(list(tmp_path.iterdir()))}"
        seen.mkdir()
        variables = {"SEEN_DIR": str(seen), **{k: str(v) for k, v in env.items()}}
        return make_function(SLOW_ONCE, Environment={"Variables": variables}, Timeout=60)

    return make


def _run(local_lambda, name, records, **kwargs):
    kwargs.setdefault("cache", False)
    return lambdakit.run(name, records, endpoint_url=local_lambda.endpoint_url, progress=False,
                         batch_size=1, concurrency=8, **kwargs)  # fmt: skip


def test_a_straggler_is_sent_again_and_the_first_reply_wins(local_lambda, slow_once):
    name = slow_once(SLOW_S=6)
    records = [{"i": i, "slow": i in (50, 80)} for i in range(100)]
    result = _run(local_lambda, name, records, hedge=Hedge())
    s = result.summary()
    assert s["failed_records"] == 0
    assert [o["i"] for o in result.outputs()] == list(range(100))
    attempts = result.attempts
    superseded = attempts[attempts["outcome"] == "superseded"]
    assert sorted(superseded["batch"]) == [50, 80]
    assert not superseded["backup"].any()  # the slow originals lost to their backups
    backups = attempts[attempts["backup"]]
    assert sorted(backups["batch"]) == [50, 80] and (backups["outcome"] == "ok").all()
    assert result.meta["hedge"] == {"backups": 2, "won": 2, "disagreed": 0}
    assert len(backups) <= 0.05 * s["invocations"]
    assert (result.batches["status"] == "ok").all()
    # A lost race is no failed attempt, and a backup uses no attempt of max_attempts.
    assert s["failed_attempt_rate"] == 0.0
    assert result.meta["params"]["hedge"]["after"] == "p95"


def test_backups_stay_within_max_share(local_lambda, slow_once):
    name = slow_once(SLOW_S=3)
    records = [{"i": i, "slow": i >= 30 and i % 4 == 0} for i in range(80)]  # 13 stragglers
    result = _run(local_lambda, name, records, hedge=Hedge(max_share=0.05, min_samples=10))
    s = result.summary()
    assert s["failed_records"] == 0
    backups = int(result.attempts["backup"].sum())
    assert 1 <= backups <= 0.05 * s["invocations"]
    assert result.meta["hedge"]["backups"] == backups


def test_a_late_reply_that_differs_is_a_warning(local_lambda, slow_once, caplog):
    name = slow_once(SLOW_S=2, TAG=1)
    records = [{"i": i, "slow": i == 40} for i in range(60)]
    with caplog.at_level(logging.WARNING, logger="lambdakit.engine.hedge"):
        result = _run(local_lambda, name, records, hedge=Hedge(min_samples=10))
        assert result.summary()["failed_records"] == 0
        assert result.meta["hedge"]["backups"] == 1
        # The superseded attempt is still running when the run returns; its reply comes later.
        deadline = time.monotonic() + 60
        while "not deterministic" not in caplog.text:
            assert time.monotonic() < deadline, "no warning about differing outputs"
            time.sleep(0.05)
