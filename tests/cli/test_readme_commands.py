"""The README's shell lines for `lambdakit local` work as written, on a machine with no AWS setup.

The block is run as a user would: the server line in the background, every other line in a
shell with a fresh HOME and no AWS variables, the venv's `lambdakit` and `aws` on PATH. The
only change is the port (9001 may be taken), rewritten to a free one everywhere.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _block_after(heading: str) -> list[str]:
    """The first ```bash block after `heading`, as commands (continuations joined)."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(heading) :]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    commands, current = [], ""
    for line in block.splitlines():
        current += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            if current.strip() and not current.lstrip().startswith("#"):
                commands.append(current.strip())
            current = ""
    return commands


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_local_service_block_runs_as_written(tmp_path):
    commands = _block_after("## `lambdakit local`")
    serve, rest = commands[0], commands[1:]
    assert serve.startswith("lambdakit local --port 9001")
    assert any(c.startswith("aws --endpoint-url") for c in rest)
    assert any(c.startswith("export AWS_") for c in rest)  # the region and keys are shown
    port = str(_free_port())
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "work" / "notebooks").parent.mkdir()
    (tmp_path / "work" / "notebooks").symlink_to(REPO / "notebooks")  # the README's paths
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "XDG_", "LAMBDAKIT_", "BOTO"))
    }
    env.update(HOME=str(home), PATH=f"{Path(sys.executable).parent}:{env['PATH']}")
    server = subprocess.Popen(
        ["bash", "-c", f"exec {serve.split('#')[0].replace('9001', port)}"],
        cwd=tmp_path / "work", env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert server.stdout.readline().startswith("lambdakit local listening on ")
        assert (home / ".lambdakit-local").is_dir()
        script = "set -euo pipefail\n" + "\n".join(
            f"echo '>>> {i}'\n{command.replace('9001', port)}" for i, command in enumerate(rest)
        )
        done = subprocess.run(
            ["bash", "-c", script], cwd=tmp_path / "work", env=env, capture_output=True,
            text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
        assert f">>> {len(rest) - 1}" in done.stdout  # every line ran
        at = next(i for i, c in enumerate(rest) if c.endswith("lambda list-functions"))
        listed = json.loads(done.stdout.split(f">>> {at}\n", 1)[1].split(f">>> {at + 1}", 1)[0])
        assert [f["FunctionName"] for f in listed["Functions"]] == ["my-function"]
        reply = json.loads((tmp_path / "work" / "out.json").read_text())
        assert reply == [{"id": "a", "value": 2, "score": 2.0, "tags": []}]
        assert "REPORT RequestId:" in done.stdout  # `local logs`, found without --state-dir
        assert '"throttle_rate": 0.2' in done.stdout  # `local faults`, found without --port
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
