"""`lambdakit lab` (a local service and JupyterLab, stopped together) and the demo's headline.

(`lambdakit demo` runs in tests/test_notebooks_papermill.py; its headline is checked here.)
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import psutil
import pytest

from lambdakit.cli.demo import ENDPOINT_ENV, notebooks_dir
from lambdakit.cli.main import main

_DEADLINE_S = 120.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get_json(url: str) -> object | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def _poll(what: str, check, process: subprocess.Popen) -> object:
    deadline = time.monotonic() + _DEADLINE_S
    while True:
        value = check()
        if value:
            return value
        assert process.poll() is None, f"lambdakit lab exited ({process.returncode}) {what}"
        assert time.monotonic() < deadline, f"no {what} after {_DEADLINE_S} s"
        time.sleep(0.2)


def test_notebooks_dir_is_the_repository_folder():
    folder = notebooks_dir()
    assert folder == Path(__file__).resolve().parents[2] / "notebooks"
    assert (folder / "02_batch_run.ipynb").is_file()


@pytest.mark.slow
def test_lab_points_jupyterlab_at_a_local_service_and_stops_both(tmp_path):
    port, token = _free_port(), "lab-test-token"
    command = [
        sys.executable, "-m", "lambdakit", "lab", "--port", "0", "--state-dir",
        str(tmp_path / "state"), "--", "--no-browser", "--allow-root", f"--port={port}",
        "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
        f"--ServerApp.runtime_dir={tmp_path / 'runtime'}",
    ]  # fmt: skip
    lab = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        _poll("Jupyter server", lambda: _get_json(f"{base}/api/status?token={token}"), lab)
        listing = _get_json(f"{base}/api/contents?token={token}")
        assert isinstance(listing, dict)
        assert "01_quickstart.ipynb" in {item["name"] for item in listing["content"]}

        def jupyter() -> psutil.Process | None:
            # `python -m jupyter lab` execs the jupyter-lab script in the same process.
            for child in psutil.Process(lab.pid).children(recursive=True):
                try:
                    names = [Path(arg).name for arg in child.cmdline()[:2]]
                except psutil.Error:  # a short-lived helper that just exited (or a zombie)
                    continue
                if "jupyter-lab" in names:
                    return child
            return None

        server = _poll("jupyter child process", jupyter, lab)
        endpoint = server.environ()[ENDPOINT_ENV]
        functions = _get_json(f"{endpoint}/2015-03-31/functions")
        assert isinstance(functions, dict) and "Functions" in functions
        family = [psutil.Process(lab.pid), *psutil.Process(lab.pid).children(recursive=True)]
    finally:
        lab.send_signal(signal.SIGTERM)
        lab.wait(timeout=60)
    _gone, alive = psutil.wait_procs(family, timeout=30)
    assert not alive, [p.cmdline() for p in alive]
    assert _get_json(f"{endpoint}/2015-03-31/functions") is None


# "failed records <n> of <records> (<share>%)", however a view lays it out (text or HTML).
_HEADLINE = re.compile(r"failed records\W+([\d,]+) of ([\d,]+) \(([\d.]+)%\)")


def _headlines(text: str) -> list[tuple[int, int, float]]:
    plain = re.sub(r"<[^>]+>", " ", text)
    return [
        (int(failed.replace(",", "")), int(records.replace(",", "")), float(share))
        for failed, records, share in _HEADLINE.findall(plain)
    ]


@pytest.mark.slow
def test_the_demo_headline_is_failed_records_over_records(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(ENDPOINT_ENV, raising=False)
    # The defaults of `make demo`: 300 orders, 1% broken on purpose, batches of 25.
    assert main(["demo", "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    (folder,) = tmp_path.glob("demo-*")
    summary = json.loads((folder / "manifest.json").read_text())["summary"]
    failed, records = summary["failed_records"], summary["records"]
    assert 0 < failed < records
    assert summary["failed_record_rate"] == pytest.approx(failed / records)
    attempts = summary["invocations"]
    assert 0 <= summary["failed_attempt_rate"] <= 1 and attempts > 0
    assert "error_rate" not in summary
    share = round(100 * failed / records, 1)
    # The command's table and headline, then print(result) and the card in the notebook.
    assert "error_rate" not in out
    assert _headlines(out) == [(failed, records, share)]
    cells = nbformat.read(folder / "02_batch_run.ipynb", as_version=4).cells
    texts = [o.get("text", "") for c in cells if c.cell_type == "code" for o in c.outputs]
    cards = [
        o["data"]["text/html"]
        for c in cells
        if c.cell_type == "code"
        for o in c.outputs
        if "text/html" in o.get("data", {}) and "lambdakit-run" in o["data"]["text/html"]
    ]
    assert [h for t in texts for h in _headlines(t)] == [(failed, records, share)]
    assert len(cards) == 1 and _headlines(cards[0]) == [(failed, records, share)]


def test_lab_as_root_passes_allow_root_and_says_so(caplog):
    from lambdakit.cli.demo import lab_arguments

    with caplog.at_level("WARNING", logger="lambdakit.cli.demo"):
        assert lab_arguments(("--no-browser",), euid=0) == ["--no-browser", "--allow-root"]
    assert "running as root: starting JupyterLab with --allow-root" in caplog.text
    assert lab_arguments(("--allow-root",), euid=0) == ["--allow-root"]  # not twice
    assert lab_arguments(("--no-browser",), euid=1000) == ["--no-browser"]
