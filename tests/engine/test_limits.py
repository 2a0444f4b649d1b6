"""lambdakit.limits(): caps shared by every run of a function, in this kernel or machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

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


# Each invocation is a holder: it leaves a marker in HOLDERS while it runs, writes down the
# markers it saw on entry, and ends only when the test releases it, so the test decides
# when slots free up and counts the holders itself: no timing is assumed anywhere. The
# marker goes before the reply, so a holder whose slot was freed is never counted.
HOLDING = """
import os, time, uuid

def handler(event, context):
    for item in event["Items"]:
        me = f"{item['run']}-{item['n']}-{uuid.uuid4().hex[:8]}"
        open(os.path.join(item["holders"], me), "w").close()
        seen = os.path.join(item["seen"], me)
        with open(seen + ".part", "w") as out:
            out.write("\\n".join(sorted(os.listdir(item["holders"]))))
        os.replace(seen + ".part", seen)
        release = [os.path.join(item["release"], name) for name in (me, "all")]
        while not any(os.path.exists(path) for path in release):
            time.sleep(0.01)
        os.remove(os.path.join(item["holders"], me))
    return [item["n"] for item in event["Items"]]
"""

# One run of its own process: the machine-scope cap, then lambdakit.run; prints its result.
# Its gate is watched, not changed: a worker that finds every slot taken leaves a file named
# by its run (in blocked/), and the slots the process holds are written down (held-<run>),
# so the test knows when each run is held back by the cap and when every slot holder has
# reached the function, without waiting to see that nothing more happens.
RUNNER = """
import json, os, sys, threading
import lambdakit
from lambdakit.engine.limits import Gate

spec = json.loads(sys.argv[1])
take_slot, leave = Gate._take_slot, Gate._leave
lock, held = threading.Lock(), [0]

def note_held(change):
    with lock:
        held[0] += change
        path = os.path.join(spec["state"], "held-" + spec["run"])
        aside = os.path.join(spec["state"], ".held-" + spec["run"])  # not matched by held-*
        with open(aside, "w") as out:
            out.write(str(held[0]))
        os.replace(aside, path)  # the test reads a whole number, never half a write

def observed_take(self, cap):
    slot = take_slot(self, cap)
    if slot is None:
        open(os.path.join(spec["state"], "blocked", spec["run"]), "w").close()
    else:
        note_held(+1)
    return slot

def observed_leave(self, slot):
    leave(self, slot)
    note_held(-1)

Gate._take_slot, Gate._leave = observed_take, observed_leave
lambdakit.limits(spec["function"], max_concurrency=spec["cap"], scope="machine",
                 lock_dir=spec["locks"])
result = lambdakit.run(spec["function"], spec["records"], endpoint_url=spec["endpoint"],
                       batch_size=1, concurrency=4, cache=False, progress=False)
print(json.dumps({"outputs": list(result.outputs()),
                  "failed": result.summary()["failed_records"]}))
"""


def test_machine_scope_caps_two_processes_together(local_lambda, make_function, tmp_path):
    cap, deadline_s = 3, 120.0
    folders = {name: tmp_path / name
               for name in ("holders", "seen", "release", "locks", "state")}  # fmt: skip
    for folder in (*folders.values(), folders["state"] / "blocked"):
        folder.mkdir()
    name = make_function(HOLDING, Timeout=300)
    # Run "a" has 2 records, "b" 6, each process 4 workers, so b alone can fill the cap and
    # a never can. A holder is released only once the cap is full (or all that are left
    # run), so both must hold slots at once at some point: a's two beside one of b's, or b's
    # last ones beside a. Without a shared cap each process would take 3 slots, and the
    # holders would pass 3 (checked: with scope="kernel" this test fails every time).
    sizes = {"a": 2, "b": 6}
    total = sum(sizes.values())
    env = dict(os.environ, AWS_ACCESS_KEY_ID="lambdakit", AWS_SECRET_ACCESS_KEY="lambdakit",
               AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=str(tmp_path / "no-config"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"))  # fmt: skip
    env.pop("AWS_PROFILE", None)
    runs = {}
    for run, size in sizes.items():
        records = [{"run": run, "n": n, **{k: str(folders[k]) for k in ("holders", "seen",
                    "release")}} for n in range(size)]  # fmt: skip
        spec = {"function": name, "cap": cap, "locks": str(folders["locks"]),
                "records": records, "endpoint": local_lambda.endpoint_url, "run": run,
                "state": str(folders["state"])}  # fmt: skip
        # Output to files: a pipe nobody reads until the end could fill and stall the run.
        with (tmp_path / f"{run}.out").open("w") as out, (tmp_path / f"{run}.err").open("w") as err:
            runs[run] = subprocess.Popen([sys.executable, "-c", RUNNER, json.dumps(spec)],
                                         env=env, stdout=out, stderr=err, text=True)  # fmt: skip
    released: set[str] = set()
    together: list[set[str]] = []  # the runs holding slots, each time the cap was full

    def holding() -> set[str]:
        return {p.name for p in folders["holders"].iterdir()} - released

    def settled(now: set[str]) -> bool:
        """As many holders as could run (the cap, or all that are left), each slot's holder
        in the function, and every run with records still to send held back by the cap
        since the last release."""
        if len(now) != min(cap, total - len(released)):
            return False
        slots = sum(int(path.read_text()) for path in folders["state"].glob("held-*"))
        entered = [holder.split("-")[0] for holder in released | now]
        waiting = {run for run, size in sizes.items() if entered.count(run) < size}
        blocked = {path.name for path in (folders["state"] / "blocked").iterdir()}
        return slots == len(now) and waiting <= blocked

    try:
        while len(released) < total:
            deadline = time.monotonic() + deadline_s
            while not settled(now := holding()):
                assert len(now) <= cap, f"{len(now)} holders at once: {sorted(now)}"
                crashed = [r for r, p in runs.items() if p.poll() is not None]
                assert not crashed, (tmp_path / f"{crashed[0]}.err").read_text()[-2000:]
                assert time.monotonic() < deadline, f"{sorted(now)} held, {len(released)} done"
                time.sleep(0.01)
            if len(now) == cap:
                together.append({holder.split("-")[0] for holder in now})
            for path in (folders["state"] / "blocked").iterdir():
                path.unlink()
            first = sorted(now)[0]
            (folders["release"] / first).touch()
            released.add(first)
        for process in runs.values():
            process.wait(timeout=deadline_s)
    finally:
        (folders["release"] / "all").touch()  # never leave a function waiting (a failure)
        for process in runs.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    for run, process in runs.items():
        assert process.returncode == 0, (tmp_path / f"{run}.err").read_text()[-2000:]
        reported = json.loads((tmp_path / f"{run}.out").read_text().strip().splitlines()[-1])
        assert reported == {"outputs": list(range(sizes[run])), "failed": 0}
    # What every invocation saw on entry (its marker, and every other holder's): never more
    # than the cap, both processes together.
    entries = [p.read_text().split("\n") for p in folders["seen"].iterdir() if p.suffix != ".part"]
    assert len(entries) == total
    assert max(len(seen) for seen in entries) <= cap
    assert {"a", "b"} in together  # the two processes did share the slots at once
