"""`lambdakit local faults/logs` find the running service by its state file, not by --port."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from lambdakit.cli.demo import ENDPOINT_ENV
from lambdakit.cli.main import main
from lambdakit.local import LocalLambda
from lambdakit.local.running import SERVICE_FILE, pointer_path
from tests.conftest import build_zip

ROLE = "arn:aws:iam::123456789012:role/lambdakit-test"  # AWS checks the pattern

ECHO = "def handler(event, context):\n    print('saw', event)\n    return event\n"


@pytest.fixture
def user_state(tmp_path, monkeypatch) -> Path:
    """A fresh per-user state folder (XDG_STATE_HOME), here and in the servers started."""
    home = tmp_path / "xdg-state"
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    monkeypatch.delenv(ENDPOINT_ENV, raising=False)
    return home


def start_server(state_dir: Path) -> tuple[subprocess.Popen, str]:
    """`lambdakit local` on a free port, as a user starts it; returns it and its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "lambdakit", "local", "--port", "0", "--state-dir",
         str(state_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
    )  # fmt: skip
    line = process.stdout.readline()
    assert line.startswith("lambdakit local listening on "), line
    return process, line.split()[4]


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    if process.poll() is None:
        os.killpg(process.pid, sig) if sig == signal.SIGKILL else process.send_signal(sig)
    return process.wait(timeout=30)


def client_for(url: str):
    return boto3.client(
        "lambda", endpoint_url=url, region_name="us-east-1",
        aws_access_key_id="x", aws_secret_access_key="x",
    )  # fmt: skip


def test_faults_and_logs_find_the_service_without_port_or_state_dir(user_state, tmp_path, capsys):
    state = tmp_path / "state"
    process, url = start_server(state)
    try:
        written = [state / SERVICE_FILE, pointer_path()]
        assert pointer_path().is_relative_to(user_state)
        for path in written:
            document = json.loads(path.read_text())
            assert (document["endpoint_url"], document["state_dir"]) == (url, str(state.resolve()))
            assert document["pid"] == process.pid
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        client = client_for(url)
        client.create_function(
            FunctionName="found", Runtime="python3.11", Role=ROLE, Handler="app.handler",
            Code={"ZipFile": build_zip(ECHO)},
        )  # fmt: skip
        client.get_waiter("function_active_v2").wait(FunctionName="found")

        assert main(["local", "faults", "found", "--error-rate", "1"]) == 0
        assert json.loads(capsys.readouterr().out)["error_rate"] == 1.0
        failed = client.invoke(FunctionName="found", Payload=b'{"n": 1}')
        assert failed.get("FunctionError") == "Unhandled"
        assert main(["local", "faults", "--state-dir", str(state), "found", "--clear"]) == 0
        assert "cleared" in capsys.readouterr().out
        assert "FunctionError" not in client.invoke(FunctionName="found", Payload=b'{"n": 2}')

        deadline = time.monotonic() + 30
        while True:  # logs land on disk just after the reply
            assert main(["local", "logs", "found"]) == 0
            out = capsys.readouterr().out
            if "saw {'n': 2}" in out:
                break
            assert time.monotonic() < deadline, out
            time.sleep(0.05)
    finally:
        assert stop(process) == 0
    # A clean exit takes both files away.
    assert not (state / SERVICE_FILE).exists() and not pointer_path().exists()


def test_a_file_left_by_a_killed_service_is_a_one_line_error(user_state, tmp_path, capsys):
    state = tmp_path / "state"
    process, url = start_server(state)
    stop(process, signal.SIGKILL)
    assert pointer_path().exists()  # nobody could remove it
    for argv in (
        ["local", "faults"],
        ["local", "faults", "--state-dir", str(state)],
        ["local", "logs", "anything"],
        ["local", "schedules"],
    ):
        assert main(argv) == 2, argv
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"lambdakit {' '.join(argv[:2])}: ")
        assert f"({url}, pid {process.pid}) is no longer running" in lines[0]
    # A service named explicitly is still used as asked.
    assert main(["local", "logs", "anything", "--state-dir", str(state)]) == 1
    assert "no function 'anything'" in capsys.readouterr().err


def test_a_state_dir_without_a_running_service_is_said(user_state, tmp_path, capsys):
    assert main(["local", "faults", "--state-dir", str(tmp_path)]) == 2
    assert f"no lambdakit local is running on state dir {tmp_path}" in capsys.readouterr().err


def test_local_lambda_announces_only_when_asked(user_state, tmp_path):
    with LocalLambda(state_dir=tmp_path / "quiet") as quiet:
        assert json.loads((quiet.state_dir / SERVICE_FILE).read_text())["endpoint_url"] == (
            quiet.endpoint_url
        )
        assert not pointer_path().exists()  # a notebook's service leaves the user's alone
    with LocalLambda(state_dir=tmp_path / "loud", announce=True) as loud:
        assert json.loads(pointer_path().read_text())["endpoint_url"] == loud.endpoint_url
    assert not pointer_path().exists()
    assert not (tmp_path / "loud" / SERVICE_FILE).exists()
