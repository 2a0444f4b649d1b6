"""The reply contract and item retries end to end: real boto3 against `lambdakit local`.

A wrong reply never passes as success and is never cached; `outputs=` says how a reply that
is not one output per record may be read; item failures are verdicts unless marked transient.
Handlers count what they process in a folder of the test's, independently of lambdakit.
"""

from collections import Counter

import pytest

import lambdakit
from lambdakit.engine.retry import Retry
from lambdakit.errors import InvalidInput
from lambdakit.invocation import FUNCTION_ERROR, OK, REPORTED_FAILURE

FAST = {"base_delay": 0.01, "max_delay": 0.02}

SHORT_LIST = """
def handler(event, context):
    return [item["i"] for item in event["Items"]][:-1]
"""

# A provided.al2-style runtime whose replies are text, not JSON.
NOT_JSON_BOOTSTRAP = r"""#!/bin/bash
set -euo pipefail
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  HEADERS="$(mktemp)"
  curl -sS -D "$HEADERS" -o /dev/null "$API/invocation/next"
  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  rm -f "$HEADERS"
  curl -sS -o /dev/null -X POST "$API/invocation/$REQUEST_ID/response" -d 'this is <not> json'
done
"""

TOTAL = """
def handler(event, context):
    return {"total": sum(item["i"] for item in event["Items"])}
"""

# Records whose i is a multiple of 3 are reported failed, every time; those with
# "transient" are marked retryable. Every item processed leaves a file named after its i.
REPORTING = """
import os, uuid

def handler(event, context):
    seen = os.environ["SEEN_DIR"]
    failures, outputs = [], []
    for position, item in enumerate(event["Items"]):
        open(os.path.join(seen, f"{item['i']}-{uuid.uuid4().hex}"), "w").close()
        if item["i"] % 3 == 0:
            failure = {"itemIdentifier": str(position), "errorMessage": "i is a multiple of 3"}
            if item.get("transient"):
                failure["retryable"] = True
            failures.append(failure)
            outputs.append(None)
        else:
            outputs.append(item["i"] * 10)
    return {"batchItemFailures": failures, "outputs": outputs}
"""


def cached_entries(tmp_path, name):
    return lambdakit.Cache(tmp_path / "cache").entries(name)


def seen_counts(folder):
    """How many times the handler processed each item, by its i."""
    return Counter(int(p.name.split("-")[0]) for p in folder.iterdir())


def test_a_list_shorter_than_items_fails_every_attempt_and_caches_nothing(
    make_function, go, tmp_path
):
    name = make_function(SHORT_LIST)
    records = [{"i": i} for i in range(8)]
    result = go(name, records, batch_size=4, retry=Retry(max_attempts=3, **FAST))
    attempts = result.attempts
    assert len(attempts) == 6  # two batches, three attempts each
    assert set(attempts["outcome"]) == {FUNCTION_ERROR}
    assert set(attempts["error_type"]) == {"Lambdakit.OutputCountMismatch"}
    assert attempts["error_message"].str.contains("3 outputs for 4 items").all()
    s = result.summary()
    assert (s["failed_records"], s["ok_batches"]) == (8, 0)
    assert list(result.outputs()) == [None] * 8
    assert cached_entries(tmp_path, name).empty
    # Nothing cached: a rerun invokes the function again.
    again = go(name, records, batch_size=4, retry=False)
    assert again.summary()["invocations"] == 2 and again.summary()["cached_batches"] == 0


def test_a_custom_runtime_reply_that_is_not_json_fails_and_caches_nothing(
    make_function, go, tmp_path
):
    name = make_function(NOT_JSON_BOOTSTRAP, handler="function.handler", runtime="provided.al2")
    records = [{"i": i} for i in range(3)]
    result = go(name, records, batch_size=3, retry=Retry(max_attempts=2, **FAST))
    attempts = result.attempts
    assert len(attempts) == 2
    assert set(attempts["outcome"]) == {FUNCTION_ERROR}
    assert set(attempts["error_type"]) == {"Lambdakit.ResponseNotJSON"}
    assert attempts["error_message"].str.contains("this is <not> json", regex=False).all()
    assert result.summary()["failed_records"] == 3
    assert set(result.errors()["error_type"]) == {"Lambdakit.ResponseNotJSON"}
    assert cached_entries(tmp_path, name).empty


def test_outputs_raw_takes_a_custom_runtime_text_and_keeps_its_own_cache_entries(
    make_function, go, tmp_path
):
    name = make_function(NOT_JSON_BOOTSTRAP, handler="function.handler", runtime="provided.al2")
    records = [{"i": i} for i in range(4)]
    raw = go(name, records, batch_size=2, outputs="raw")
    assert list(raw.outputs()) == ["this is <not> json"] * 4
    assert set(raw.attempts["outcome"]) == {OK}
    assert raw.meta["params"]["outputs"] == "raw"
    assert len(cached_entries(tmp_path, name)) == 2
    assert go(name, records, batch_size=2, outputs="raw").summary()["cached_batches"] == 2
    # The raw run's entries are text read without the contract: a strict run never takes
    # them for its own; it invokes, and fails as it should.
    strict = go(name, records, batch_size=2, retry=False)
    s = strict.summary()
    assert (s["cached_batches"], s["invocations"], s["failed_records"]) == (0, 2, 4)


def test_one_output_for_the_batch_only_when_the_run_says_so(make_function, go, tmp_path):
    name = make_function(TOTAL)
    records = [{"i": i} for i in range(4)]
    strict = go(name, records, batch_size=4, retry=False)
    assert set(strict.attempts["error_type"]) == {"Lambdakit.OutputNotPerRecord"}
    assert strict.attempts["error_message"].str.contains('outputs="per_batch"').all()
    assert strict.summary()["failed_records"] == 4
    assert cached_entries(tmp_path, name).empty
    per_batch = go(name, records, batch_size=4, outputs="per_batch")
    assert list(per_batch.outputs()) == [{"total": 6}] * 4
    assert per_batch.summary()["failed_records"] == 0


def test_outputs_must_be_one_of_the_allowed_values(go):
    with pytest.raises(InvalidInput, match=r"per_record.*per_batch.*raw"):
        go("any-function", [1, 2], outputs="batch")


@pytest.fixture
def reporting(make_function, tmp_path):
    """make(**env) -> (function name, folder of processed items)."""

    def make():
        seen = tmp_path / f"seen-{len(list(tmp_path.glob('seen-*')))}"
        seen.mkdir()
        variables = {"SEEN_DIR": str(seen)}
        return make_function(REPORTING, Environment={"Variables": variables}), seen

    return make


RECORDS = [{"i": i} for i in range(1, 9)]  # 3 and 6 are reported failed


def test_item_failures_are_not_retried_by_default(reporting, go):
    name, seen = reporting()
    result = go(name, RECORDS, batch_size=4, retry=Retry(max_attempts=3, **FAST))
    assert seen_counts(seen) == Counter({i: 1 for i in range(1, 9)})
    assert result.summary()["failed_records"] == 2 and result.summary()["invocations"] == 2
    assert set(result.attempts["outcome"]) == {REPORTED_FAILURE}
    assert set(result.errors()["error_message"]) == {"i is a multiple of 3"}
    assert [o for o in result.outputs()] == [10, 20, None, 40, 50, None, 70, 80]


def test_item_attempts_gives_reported_items_more_attempts(reporting, go):
    name, seen = reporting()
    policy = Retry(max_attempts=3, item_attempts=2, **FAST)
    result = go(name, RECORDS, batch_size=4, retry=policy)
    assert seen_counts(seen) == Counter({i: 2 if i in (3, 6) else 1 for i in range(1, 9)})
    retries = result.attempts[result.attempts["attempt"] == 2]
    assert list(retries["records"]) == [1, 1]  # only the failed item of each batch
    assert result.summary()["failed_records"] == 2


def test_items_marked_retryable_are_retried_up_to_max_attempts(reporting, go):
    name, seen = reporting()
    records = [{**record, "transient": record["i"] == 6} for record in RECORDS]
    result = go(name, records, batch_size=4, retry=Retry(max_attempts=3, **FAST))
    # 6's failure is marked transient: retried; 3's is a verdict on the data: not retried.
    assert seen_counts(seen) == Counter({i: 3 if i == 6 else 1 for i in range(1, 9)})
    assert result.summary()["failed_records"] == 2 and result.summary()["invocations"] == 4
    assert set(result.errors()["error_message"]) == {"i is a multiple of 3"}
