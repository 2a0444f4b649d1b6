"""`lambdakit run FUNCTION INPUT`: a headless batch against lambdakit local, with its report."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
from function_sources import MEMORY_HOG

import lambdakit
from lambdakit.cli.commands import format_summary
from lambdakit.cli.main import main

FUNCTIONS = Path(__file__).resolve().parents[2] / "notebooks" / "functions"


@pytest.fixture
def processor(lambda_client) -> str:
    """batch_processor deployed under a fresh name."""
    name = f"cli-run-{uuid.uuid4().hex[:8]}"
    lambdakit.deploy(lambda_client, name, FUNCTIONS / "batch_processor")
    yield name
    lambda_client.delete_function(FunctionName=name)


def _jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _records(n: int, bad: tuple[int, ...] = ()) -> list[dict]:
    return [{"id": f"r{i}", "value": "oops" if i in bad else i * 2} for i in range(n)]


def _run(local_lambda, *args: str) -> int:
    return main(["run", *args, "--endpoint-url", local_lambda.endpoint_url, "--no-progress"])


def test_run_prints_a_summary_and_writes_the_report(local_lambda, processor, tmp_path, capsys):
    data = _jsonl(tmp_path / "in.jsonl", _records(45))
    report = tmp_path / "report"
    code = _run(
        local_lambda, processor, str(data), "--batch-size", "10", "--concurrency", "3",
        "--cache-dir", str(tmp_path / "cache"), "--report", str(report),
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert f"RunResult {processor}" in out
    assert "records: 45 (ok 45, failed 0, rejected 0)" in out
    table = dict(line.split(None, 1) for line in out.splitlines() if line.startswith("batches "))
    assert table["batches"].strip() == "5"
    assert f"report: {report}" in out
    # Private: the report folder 0700, the outputs and tables in it 0600, the cache 0700.
    assert stat.S_IMODE(report.stat().st_mode) == 0o700
    for name in ("outputs.jsonl", "manifest.json", "batches.csv"):
        assert stat.S_IMODE((report / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE((tmp_path / "cache").stat().st_mode) == 0o700

    manifest = json.loads((report / "manifest.json").read_text())
    assert manifest["function"] == processor
    assert manifest["params"]["batch_size"] == 10
    assert manifest["params"]["concurrency"] == 3
    assert manifest["summary"]["records"] == 45
    assert len(list(report.glob("*.png"))) >= 3
    assert len(pd.read_csv(report / "batches.csv")) == 5
    outputs = [json.loads(line) for line in (report / "outputs.jsonl").read_text().splitlines()]
    assert [o["record"] for o in outputs] == list(range(45))
    assert [o["output"]["score"] for o in outputs] == [i * 2 for i in range(45)]


def test_failed_records_exit_1_and_stay_in_the_report(local_lambda, processor, tmp_path, capsys):
    data = _jsonl(tmp_path / "in.jsonl", _records(30, bad=(3, 17)))
    report = tmp_path / "report"
    code = _run(
        local_lambda, processor, str(data), "--batch-size", "8", "--max-attempts", "1",
        "--no-cache", "--report", str(report),
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 1
    assert "records: 30 (ok 28, failed 2, rejected 0)" in captured.out
    assert "2 records failed" in captured.err and "errors.csv" in captured.err
    errors = pd.read_csv(report / "errors.csv")
    assert sorted(errors["record"]) == [3, 17]
    outputs = [json.loads(line)["output"] for line in (report / "outputs.jsonl").open()]
    assert outputs[3] is None and outputs[17] is None
    assert sum(o is not None for o in outputs) == 28


def test_cache_dir_serves_a_rerun_and_no_cache_does_not(local_lambda, processor, tmp_path, capsys):
    data = _jsonl(tmp_path / "in.jsonl", _records(20))
    cache = ["--cache-dir", str(tmp_path / "cache")]
    for folder in ("first", "second"):
        args = [processor, str(data), "--batch-size", "5", *cache, "--report"]
        assert _run(local_lambda, *args, str(tmp_path / folder)) == 0
    assert _run(local_lambda, processor, str(data), "--batch-size", "5", "--no-cache",
                "--report", str(tmp_path / "uncached")) == 0  # fmt: skip
    capsys.readouterr()

    def summary(folder: str) -> dict:
        return json.loads((tmp_path / folder / "manifest.json").read_text())["summary"]

    assert summary("first")["cached_batches"] == 0
    assert summary("second")["cached_batches"] == 4 and summary("second")["invocations"] == 0
    assert summary("uncached")["cached_batches"] == 0 and summary("uncached")["invocations"] == 4


def test_missing_input_is_a_clear_error(local_lambda, tmp_path, capsys):
    code = _run(local_lambda, "anything", str(tmp_path / "nope.jsonl"))
    assert code == 2
    assert "nope.jsonl" in capsys.readouterr().err


def test_unknown_function_is_a_clear_error(local_lambda, tmp_path, capsys):
    data = _jsonl(tmp_path / "in.jsonl", _records(3))
    code = _run(local_lambda, "no-such-function-here", str(data), "--report", str(tmp_path / "r"))
    assert code == 2
    err = capsys.readouterr().err
    assert "no-such-function-here" in err and "not found" in err.lower()
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("option", "value"), [("--batch-size", "0"), ("--concurrency", "x"), ("--timeout", "-1")]
)
def test_bad_numbers_are_refused_by_the_parser(option, value, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "fn", str(tmp_path / "in.jsonl"), option, value])
    assert exit_info.value.code == 2
    assert option in capsys.readouterr().err


def test_format_summary_aligns_and_spells_out_nan():
    summary = {"records": 1200, "latency_p50_s": float("nan"), "failed_record_rate": 0.125}
    text = format_summary({**summary, "failed_attempt_rate": 0.0004})
    lines = text.splitlines()
    assert lines[0].split() == ["records", "1,200"]
    assert lines[1].split() == ["latency_p50_s", "n/a"]
    assert lines[2].split() == ["failed_record_rate", "12.5%"]
    assert lines[3].split() == ["failed_attempt_rate", "<0.1%"]  # a failure never reads as 0
    assert len({len(line) for line in lines}) == 1


def test_an_interrupt_writes_the_partial_report_and_exits_130(local_lambda, tmp_path):
    name = f"cli-run-slow-{uuid.uuid4().hex[:8]}"
    client = local_lambda.client()
    lambdakit.deploy(client, name, FUNCTIONS / "slow_flaky", environment={"SLEEP_MS": 300})
    data = _jsonl(tmp_path / "in.jsonl", _records(40))
    report = tmp_path / "report"
    command = [
        sys.executable, "-m", "lambdakit", "run", name, str(data), "--batch-size", "1",
        "--concurrency", "2", "--no-cache", "--no-progress", "--report", str(report),
        "--endpoint-url", local_lambda.endpoint_url,
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        # Interrupt once a few invocations have ended (their REPORT lines are logged).
        while sum(line.startswith("REPORT") for line in local_lambda.logs(name)) < 3:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
        client.delete_function(FunctionName=name)
    assert process.returncode == 130, err
    assert "interrupted" in err
    manifest = json.loads((report / "manifest.json").read_text())
    assert manifest["cancelled"] is True
    done = manifest["summary"]["invocations"]
    assert 3 <= done < 40
    assert "stopped (cancelled) before every batch ran" in out
    outputs = [json.loads(line)["output"] for line in (report / "outputs.jsonl").open()]
    assert sum(o is not None for o in outputs) >= 3


SLOW_MARKED = """
import os, time, uuid

def handler(event, context):
    open(os.path.join(os.environ["STARTED_DIR"], uuid.uuid4().hex), "w").close()
    time.sleep(float(os.environ["SLEEP_S"]))
    return [{"echo": item} for item in event["Items"]]
"""


def _start_slow_run(make_function, local_lambda, tmp_path, sleep_s, *options):
    """Start `lambdakit run` on a slow function; return once two invocations are running."""
    started = tmp_path / "started"
    started.mkdir()
    variables = {"STARTED_DIR": str(started), "SLEEP_S": str(sleep_s)}
    name = make_function(SLOW_MARKED, Environment={"Variables": variables}, Timeout=120)
    data = _jsonl(tmp_path / "in.jsonl", _records(20))
    report = tmp_path / "report"
    command = [
        sys.executable, "-m", "lambdakit", "run", name, str(data), "--batch-size", "1",
        "--concurrency", "2", "--no-cache", "--no-progress", "--report", str(report),
        "--endpoint-url", local_lambda.endpoint_url, *options,
    ]  # fmt: skip
    stderr = tmp_path / "stderr.txt"
    with stderr.open("w") as err:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True)
    deadline = time.monotonic() + 60
    while len(list(started.iterdir())) < 2:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run never started"
        time.sleep(0.05)
    return process, report, stderr


def _wait_for_text(path, text, process, timeout=60.0):
    deadline = time.monotonic() + timeout
    while text not in path.read_text():
        assert process.poll() is None, path.read_text()
        assert time.monotonic() < deadline, f"never printed {text!r}: {path.read_text()}"
        time.sleep(0.05)


def test_a_second_interrupt_stops_waiting_for_in_flight_work_and_still_writes_the_report(
    make_function, local_lambda, tmp_path
):
    # Invocations last a minute and the grace ten: only the second Ctrl-C can end it early.
    process, report, err = _start_slow_run(
        make_function, local_lambda, tmp_path, 60, "--grace", "600"
    )
    try:
        process.send_signal(signal.SIGINT)
        _wait_for_text(err, "finishing in-flight batches", process)
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err.read_text()
    assert "no longer waiting for in-flight batches" in err.read_text()
    manifest = json.loads((report / "manifest.json").read_text())
    assert manifest["cancelled"] is True
    attempts = pd.read_csv(report / "attempts.csv")
    # The two invocations still running got rows saying so, and nothing else was sent.
    assert list(attempts["outcome"]) == ["cancelled", "cancelled"]
    assert attempts["error_message"].str.contains("interrupted again").all()
    outputs = [json.loads(line)["output"] for line in (report / "outputs.jsonl").open()]
    assert outputs == [None] * len(outputs) and len(outputs) == manifest["summary"]["records"]


def test_sigterm_drains_like_a_first_interrupt_and_exits_143(make_function, local_lambda, tmp_path):
    process, report, err = _start_slow_run(make_function, local_lambda, tmp_path, 1.5)
    try:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, err.read_text()
    assert "SIGTERM, finishing in-flight batches" in err.read_text()
    manifest = json.loads((report / "manifest.json").read_text())
    assert manifest["cancelled"] is True
    attempts = pd.read_csv(report / "attempts.csv")
    # The invocations in flight at the signal finished within the grace period.
    assert len(attempts) >= 2 and set(attempts["outcome"]) == {"ok"}
    assert manifest["summary"]["invocations"] < 20
    outputs = [json.loads(line)["output"] for line in (report / "outputs.jsonl").open()]
    assert sum(o is not None for o in outputs) == len(attempts)


def test_outputs_says_how_replies_are_read(local_lambda, make_function, tmp_path, capsys):
    total = "def handler(event, context):\n    return {'n': len(event['Items'])}\n"
    name = make_function(total)
    data = _jsonl(tmp_path / "in.jsonl", _records(6))
    common = ("--batch-size", "3", "--max-attempts", "1", "--no-cache")
    # Strict by default: a dict is not one output per record, so every record fails.
    strict = _run(local_lambda, name, str(data), *common, "--report", str(tmp_path / "strict"))
    assert strict == 1
    manifest = json.loads((tmp_path / "strict" / "manifest.json").read_text())
    assert manifest["params"]["outputs"] == "per_record"
    assert manifest["summary"]["failed_records"] == 6
    report = tmp_path / "per-batch"
    code = _run(local_lambda, name, str(data), *common, "--outputs", "per_batch",
                "--report", str(report))  # fmt: skip
    assert code == 0
    assert json.loads((report / "manifest.json").read_text())["params"]["outputs"] == "per_batch"
    outputs = [json.loads(line) for line in (report / "outputs.jsonl").read_text().splitlines()]
    assert [o["output"] for o in outputs] == [{"n": 3}] * 6
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        _run(local_lambda, name, str(data), "--outputs", "batch")
    assert exit_info.value.code == 2
    assert "choose from 'per_record', 'per_batch', 'raw'" in capsys.readouterr().err


def test_invoke_path_and_processes_reach_the_run(local_lambda, processor, tmp_path, capsys):
    data = _jsonl(tmp_path / "in.jsonl", _records(8))
    common = ("--batch-size", "2", "--no-cache")
    for extra, expected in [
        ((), ("lean", 1)),
        (("--invoke-path", "boto3"), ("boto3", 1)),
        (("--processes", "2"), ("lean", 2)),
    ]:
        report = tmp_path / f"r{len(extra)}{'-'.join(extra)}"
        assert _run(local_lambda, processor, str(data), *common, *extra,
                    "--report", str(report)) == 0  # fmt: skip
        params = json.loads((report / "manifest.json").read_text())["params"]
        assert (params["invoke_path"], params["processes"]) == expected
    capsys.readouterr()
    code = _run(local_lambda, processor, str(data), "--invoke-path", "boto3", "--processes", "2")
    assert code == 2
    assert "processes= needs the lean path" in capsys.readouterr().err


def _params(report: Path) -> dict:
    return json.loads((report / "manifest.json").read_text())["params"]


def test_hedge_and_memory_ladder_shorthands_reach_the_run(local_lambda, processor, tmp_path):
    data = _jsonl(tmp_path / "in.jsonl", _records(4))
    common = ("--batch-size", "2", "--no-cache")
    defaults = {"after": "p95", "factor": 2.0, "max_share": 0.05, "min_samples": 20}
    for extra, expected in [
        ((), {"hedge": None, "on_oom": None, "on_timeout": None}),
        # Alone, each flag is run()'s True: Hedge(), MemoryLadder(), on_oom's ladder.
        (("--hedge", "--on-oom", "--on-timeout"),
         {"hedge": defaults, "on_oom": [1024, 2048, 4096], "on_timeout": [1024, 2048, 4096]}),
        (("--hedge", "p99,factor=3,min_samples=5", "--on-oom", "256,512", "--on-timeout"),
         {"hedge": {**defaults, "after": "p99", "factor": 3.0, "min_samples": 5},
          "on_oom": [256, 512], "on_timeout": [256, 512]}),
        (("--hedge", "2.5,max_share=0.1", "--on-timeout", "512"),
         {"hedge": {**defaults, "after": 2.5, "max_share": 0.1}, "on_oom": None,
          "on_timeout": [512]}),
    ]:  # fmt: skip
        report = tmp_path / f"r{len(list(tmp_path.iterdir()))}"
        assert _run(local_lambda, processor, str(data), *common, *extra,
                    "--report", str(report)) == 0  # fmt: skip
        params = _params(report)
        assert {key: params[key] for key in expected} == expected, extra


def test_on_oom_climbs_the_ladder_from_the_shell(local_lambda, lambda_client, make_function,
                                                 tmp_path):  # fmt: skip
    name = make_function(MEMORY_HOG, MemorySize=128, Timeout=30)
    data = _jsonl(tmp_path / "in.jsonl", [{"i": i, "mb": 200 if i == 1 else 0} for i in range(3)])
    report = tmp_path / "report"
    code = _run(local_lambda, name, str(data), "--batch-size", "1", "--no-cache",
                "--on-oom", "256", "--report", str(report))  # fmt: skip
    assert code == 0
    outputs = [json.loads(line)["output"] for line in (report / "outputs.jsonl").open()]
    assert outputs == [0, 10, 20]
    batches = pd.read_csv(report / "batches.csv").set_index("batch")
    assert batches.loc[1, "memory_mb"] == 256 and batches.drop(index=1)["memory_mb"].isna().all()
    assert lambda_client.get_function_configuration(FunctionName=name)["MemorySize"] == 128


def test_limits_reach_lambdakit_limits_and_are_cleared(local_lambda, processor, tmp_path):
    from lambdakit.engine.limits import gate_for

    data = _jsonl(tmp_path / "in.jsonl", _records(6))
    locks = tmp_path / "locks"
    report = tmp_path / "report"
    spec = f"max_concurrency=1,max_rps=100,scope=machine,lock_dir={locks}"
    code = _run(local_lambda, processor, str(data), "--batch-size", "1", "--concurrency", "4",
                "--no-cache", "--report", str(report), "--limits", spec)  # fmt: skip
    assert code == 0
    # The machine-scope gate's files: one slot (the cap, whatever the concurrency), the bucket.
    names = sorted(path.name.split(".", 1)[1] for path in locks.iterdir())
    assert names == ["0.lock", "rate"]
    assert gate_for(processor) is None  # this process's registry holds no caps afterwards


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hedge", "p999"], "argument --hedge: Hedge.after must be a latency quantile"),
        (["--hedge", "factor=0.5"], "argument --hedge: Hedge.factor must be a number >= 1"),
        (["--hedge", "factor=x"], "argument --hedge: factor must be a number, got 'x'"),
        (["--hedge", "colour=red"], "KEY one of after, factor, max_share, min_samples"),
        (["--hedge", "min_samples=2.5"], "min_samples must be a whole number"),
        (["--on-oom", "1GB"], "argument --on-oom: expected memory sizes in MB such as"),
        (["--on-oom", "1024,512"], "MemoryLadder sizes must go up, each once"),
        (["--on-timeout", "64"], "argument --on-timeout: MemoryLadder sizes are MB from 128"),
        (["--limits", "scope=machine"], "argument --limits: give max_concurrency=N or max_rps="),
        (["--limits", "max_concurrency=0"], "max_concurrency must be an int >= 1, got 0"),
        (["--limits", "max_rps=fast"], "max_rps must be a number, got 'fast'"),
        (["--limits", "max_rps=2,scope=planet"], "limits() scope must be one of"),
        (["--limits", "max_rps=2,max_rps=3"], "max_rps is given twice"),
    ],
)
def test_bad_hedge_ladder_and_limits_values_are_one_line_errors(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "fn", str(tmp_path / "in.jsonl"), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err, err


def test_limits_do_not_go_with_a_url(tmp_path, capsys):
    data = _jsonl(tmp_path / "in.jsonl", _records(1))
    code = main(["run", "--url", "http://127.0.0.1:9/u", str(data), "--limits", "max_rps=1"])
    assert code == 2
    assert "--limits caps the runs of FUNCTION" in capsys.readouterr().err


def test_a_source_that_breaks_mid_run_still_writes_the_partial_report_and_exits_2(
    local_lambda, processor, tmp_path, capsys
):
    # 30,000 good rows, then bytes that are not UTF-8: the CSV reader reads a row at a time
    # (decoding 8 KB of text at once), so nearly all are invoked before the bad bytes.
    rows = "".join(f"r{i},{i}\n" for i in range(30_000)).encode()
    data = tmp_path / "in.csv"
    data.write_bytes(b"id,value\n" + rows + b"bad\xff\xfe,1\n")
    report = tmp_path / "report"
    code = _run(
        local_lambda, processor, str(data), "--batch-size", "1000", "--no-cache",
        "--report", str(report),
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 2
    error = captured.err.strip().splitlines()[-1]
    assert "not readable CSV" in error and f"partial report: {report}" in error
    manifest = json.loads((report / "manifest.json").read_text())
    summary = manifest["summary"]
    assert summary["ok_records"] >= 10_000 and summary["failed_records"] == 0
    outputs = (report / "outputs.jsonl").read_text().splitlines()
    assert len(outputs) == summary["records"]


def test_item_attempts_reach_the_run_and_are_checked_against_max_attempts(
    local_lambda, processor, tmp_path, capsys
):
    data = _jsonl(tmp_path / "in.jsonl", _records(5, bad=(2,)))
    report = tmp_path / "report"
    code = _run(
        local_lambda, processor, str(data), "--no-cache", "--report", str(report),
        "--item-attempts", "2",
    )  # fmt: skip
    assert code == 1  # record 2 is reported failed by the function, twice
    retry = json.loads((report / "manifest.json").read_text())["params"]["retry"]
    assert retry["item_attempts"] == 2 and retry["max_attempts"] == 3
    attempts = pd.read_csv(report / "attempts.csv")
    assert len(attempts) == 2  # the batch, then its failed record once more
    capsys.readouterr()
    code = _run(
        local_lambda, processor, str(data), "--no-cache", "--report", str(tmp_path / "r2"),
        "--item-attempts", "4",
    )  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "item_attempts (4) cannot exceed max_attempts" in err


def test_the_outputs_file_keeps_every_digit(tmp_path):
    # json.dumps(default=str) wrote a JsonNumber as a string: "0.1234567890123456789".
    from decimal import Decimal

    from lambdakit.cli.commands import write_outputs
    from lambdakit.records.encoding import JsonNumber

    class Outputs:
        def outputs(self):
            return iter([{"id": 10**30, "amount": JsonNumber("0.1234567890123456789")}, None])

    path = write_outputs(Outputs(), tmp_path / "outputs.jsonl")
    lines = [json.loads(line, parse_float=Decimal) for line in path.read_text().splitlines()]
    assert lines == [
        {"record": 0, "output": {"id": 10**30, "amount": Decimal("0.1234567890123456789")}},
        {"record": 1, "output": None},
    ]


CELL_TYPES = (
    "def handler(event, context):\n"
    "    return [{k: type(v).__name__ + ':' + str(v) for k, v in i.items()}\n"
    "            for i in event['Items']]\n"
)


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ((), {"id": "int:1", "zip": "str:007", "gap": "NoneType:None"}),
        (("--csv-types", "text"), {"id": "str:1", "zip": "str:007", "gap": "str:"}),
        (("--csv-types", "pandas"), {"id": "int:1", "zip": "int:7", "gap": "NoneType:None"}),
    ],
)
def test_csv_types_reach_the_function_from_the_shell(
    make_function, local_lambda, tmp_path, capsys, option, expected
):
    data = tmp_path / "zips.csv"
    data.write_text("id,zip,gap\n1,007,\n")
    report = tmp_path / "report"
    name = make_function(CELL_TYPES)
    code = _run(local_lambda, name, str(data), "--no-cache", "--report", str(report), *option)
    assert code == 0, capsys.readouterr().err
    (line,) = (report / "outputs.jsonl").read_text().splitlines()
    assert json.loads(line)["output"] == expected
    manifest = json.loads((report / "manifest.json").read_text())
    assert manifest["params"]["csv_types"] == (option[1] if option else "exact")


def test_a_csv_types_the_cli_does_not_know_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["run", "fn", str(tmp_path / "x.csv"), "--csv-types", "strings"])
    assert stopped.value.code == 2
    assert "--csv-types: invalid choice: 'strings'" in capsys.readouterr().err
