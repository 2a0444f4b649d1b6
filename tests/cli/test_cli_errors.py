"""Errors first, and one line each: `lambdakit` refuses what it cannot finish before invoking."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

import lambdakit
from lambdakit.cli.demo import ENDPOINT_ENV
from lambdakit.cli.main import main

FUNCTIONS = Path(__file__).resolve().parents[2] / "notebooks" / "functions"


@pytest.fixture
def processor(lambda_client) -> str:
    """batch_processor deployed under a fresh name (so its log holds only this test's calls)."""
    name = f"cli-err-{uuid.uuid4().hex[:8]}"
    lambdakit.deploy(lambda_client, name, FUNCTIONS / "batch_processor")
    yield name
    lambda_client.delete_function(FunctionName=name)


@pytest.fixture
def data(tmp_path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": f"r{i}", "value": i}) + "\n" for i in range(20)))
    return path


def invocations(local_lambda, name: str) -> int:
    """START lines in the function's log: one per invocation the service ran."""
    return sum(line.startswith("START RequestId:") for line in local_lambda.logs(name))


def assert_logs_count_invocations(local_lambda, lambda_client, name: str, before: int) -> None:
    """One direct invoke shows up as one more START line: the log is a working witness."""
    lambda_client.invoke(FunctionName=name, Payload=b'{"Items": []}')
    deadline = time.monotonic() + 30
    while invocations(local_lambda, name) < before + 1:
        assert time.monotonic() < deadline, local_lambda.logs(name)
        time.sleep(0.05)
    assert invocations(local_lambda, name) == before + 1


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    "where",
    ["report-is-a-file", "report-under-a-file", "report-not-writable", "cache-under-a-file"],
)
def test_an_unusable_folder_exits_2_before_any_invocation(
    where, local_lambda, lambda_client, processor, data, tmp_path, capsys
):
    blocker = tmp_path / "a-file"
    blocker.write_text("I am a file")
    report, cache = tmp_path / "report", tmp_path / "cache"
    if where == "report-is-a-file":
        report = blocker
    elif where == "report-under-a-file":
        report = blocker / "report"
    elif where == "report-not-writable":
        report = Path("/sys/lambdakit-report")  # read-only to everyone, root included
    else:
        cache = blocker / "cache"
    code = main([
        "run", processor, str(data), "--report", str(report), "--cache-dir", str(cache),
        "--endpoint-url", local_lambda.endpoint_url, "--no-progress",
    ])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 2
    message = one_line(captured.err)
    assert message.startswith("lambdakit run: ")
    assert ("cache folder" if where.startswith("cache") else "report folder") in message
    assert "Traceback" not in captured.err and captured.out == ""
    assert invocations(local_lambda, processor) == 0
    assert blocker.read_text() == "I am a file"
    assert_logs_count_invocations(local_lambda, lambda_client, processor, before=0)


def test_lambdakit_endpoint_url_is_honoured(local_lambda, processor, data, tmp_path, monkeypatch,
                                            capsys):  # fmt: skip
    monkeypatch.setenv(ENDPOINT_ENV, local_lambda.endpoint_url)
    code = main(["run", processor, str(data), "--report", str(tmp_path / "report"),
                 "--no-cache", "--no-progress"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"using {ENDPOINT_ENV}={local_lambda.endpoint_url}" in captured.err
    assert "records: 20 (ok 20" in captured.out
    assert invocations(local_lambda, processor) >= 1


def test_an_explicit_endpoint_url_wins_over_the_environment(
    local_lambda, processor, data, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv(ENDPOINT_ENV, "http://127.0.0.1:9")  # nothing listens there
    code = main(["run", processor, str(data), "--report", str(tmp_path / "report"), "--no-cache",
                 "--no-progress", "--endpoint-url", local_lambda.endpoint_url])  # fmt: skip
    assert code == 0, capsys.readouterr().err


def test_an_empty_input_exits_1_with_a_warning(local_lambda, processor, tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    code = main(["run", processor, str(empty), "--report", str(tmp_path / "report"), "--no-cache",
                 "--no-progress", "--endpoint-url", local_lambda.endpoint_url])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 1
    assert one_line(captured.err) == (
        f"lambdakit run: warning: {empty} holds no records; nothing was invoked"
    )
    assert invocations(local_lambda, processor) == 0


def test_errors_from_the_library_are_one_line_with_exit_2(local_lambda, data, tmp_path, capsys):
    code = main(["run", "no-such-function", str(data), "--report", str(tmp_path / "r"),
                 "--endpoint-url", local_lambda.endpoint_url, "--no-progress"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 2
    assert one_line(captured.err).startswith("lambdakit run: ")
    assert "no-such-function" in captured.err and "Traceback" not in captured.err
    assert not (tmp_path / "r").exists()  # checked, never created for a run that did not start


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "fn", "in.jsonl", "--batch-size", "0"],
        ["run", "fn", "in.jsonl", "--no-such-option"],
        ["deploy", "fn"],
        ["local", "faults", "fn", "--throttle-rate", "2"],
        ["no-such-command"],
    ],
)
def test_bad_arguments_are_one_line_with_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("lambdakit") and line.endswith("--help)")
