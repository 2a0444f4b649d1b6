"""A throwaway JupyterLab server for the browser test: loopback, token, temporary state.

    with LabServer(root_dir, state_dir) as lab:
        page.goto(lab.url("lab/tree/01_quickstart.ipynb"))

Everything JupyterLab reads or writes besides the notebooks (config, settings, workspaces,
runtime files, IPython profile) lives under `state_dir`, so the user's own setup can neither
change what the test sees nor be changed by it. Kernels come from the running interpreter's
prefix: `make install` registers the venv's `python3` there (`ipykernel install --sys-prefix`).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["LAB_SETTINGS", "LabServer", "free_port"]

# Settings overrides (plugin id -> settings) written to JUPYTERLAB_SETTINGS_DIR.
LAB_SETTINGS: dict[str, dict[str, Any]] = {
    # Every cell stays in the DOM: windowed notebooks drop off-screen cells, and the test
    # must see every output.
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    # No "receive Jupyter news?" toast over the notebook, and no fetch from the internet.
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}
_STARTUP_S = 120.0
_STOP_S = 30.0


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LabServer:
    """`jupyter lab` in a subprocess of its own; stop() ends it and its kernels."""

    def __init__(self, root_dir: Path, state_dir: Path, *, env: dict[str, str] | None = None):
        self.root_dir = Path(root_dir)
        self.state_dir = Path(state_dir)
        self.token = secrets.token_hex(16)
        self.port = 0
        self.log_path = self.state_dir / "jupyterlab.log"
        self._extra_env = dict(env or {})
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:<port>/"""
        return f"http://127.0.0.1:{self.port}/"

    def url(self, path: str) -> str:
        """A URL of the server with the token, e.g. url("lab/tree/x.ipynb")."""
        separator = "&" if "?" in path else "?"
        return f"{self.base_url}{path}{separator}token={self.token}"

    def environment(self) -> dict[str, str]:
        """The server's environment: temporary Jupyter dirs, nothing from the user's."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "LAMBDAKIT"))}
        dirs = {
            "JUPYTER_CONFIG_DIR": "config",
            "JUPYTER_DATA_DIR": "data",
            "JUPYTER_RUNTIME_DIR": "runtime",
            "JUPYTERLAB_SETTINGS_DIR": "settings",
            "JUPYTERLAB_WORKSPACES_DIR": "workspaces",
            "IPYTHONDIR": "ipython",
        }
        for name, sub in dirs.items():
            path = self.state_dir / sub
            path.mkdir(parents=True, exist_ok=True)
            env[name] = str(path)
        env.pop("JUPYTER_PATH", None)
        env["JUPYTER_PLATFORM_DIRS"] = "1"
        # The kernel must find the lambdakit of this checkout and draw no pyplot windows.
        env["MPLBACKEND"] = "Agg"
        env.update(self._extra_env)
        return env

    def write_settings(self) -> None:
        """Write LAB_SETTINGS as user settings under JUPYTERLAB_SETTINGS_DIR."""
        for plugin, values in LAB_SETTINGS.items():
            package, name = plugin.rsplit("/", 1)
            path = self.state_dir / "settings" / package / f"{name}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))

    def start(self, timeout_s: float = _STARTUP_S) -> LabServer:
        """Start the server and wait until /api/status answers (a new port if one was taken)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = self.environment()
        self.write_settings()
        for _ in range(3):
            self.port = free_port()
            if self._launch(env, timeout_s):
                return self
        raise RuntimeError(f"JupyterLab did not start; see {self.log_path}:\n{self.log_tail()}")

    def _launch(self, env: dict[str, str], timeout_s: float) -> bool:
        command = [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--allow-root",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root_dir}",
            "--LabApp.expose_app_in_browser=True",
            # Nothing from PyPI: the extension manager would list packages from the internet.
            "--LabApp.extension_manager=readonly",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
        self._log = self.log_path.open("ab")
        # A session of its own: stop() can end the server's whole process group.
        self._process = subprocess.Popen(
            command,
            cwd=self.root_dir,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._close_log()
                # Most likely the port was taken between free_port() and the bind.
                return False
            if self.ready():
                return True
            time.sleep(0.25)  # polling interval while the server boots, not a synchronisation
        self.stop()
        raise TimeoutError(
            f"JupyterLab did not answer within {timeout_s:.0f} s; log:\n{self.log_tail()}"
        )

    def ready(self) -> bool:
        """True once GET /api/status answers 200."""
        try:
            with urllib.request.urlopen(self.url("api/status"), timeout=5) as reply:
                return reply.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def api(self, method: str, path: str) -> Any:
        """Call the REST API (token auth); the decoded JSON reply, or None when empty."""
        request = urllib.request.Request(self.url(path), method=method)
        with urllib.request.urlopen(request, timeout=30) as reply:
            body = reply.read()
        return json.loads(body) if body else None

    def stop(self) -> None:
        """Shut the kernels and the server down; kill whatever is left after a grace period."""
        process, self._process = self._process, None
        if process is None:
            return
        try:
            if process.poll() is None:
                # Each kernel runs in a process group of its own, which its shutdown ends.
                self._shutdown_kernels()
                process.send_signal(signal.SIGTERM)  # a clean stop of the server
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=_STOP_S)
        finally:
            # Whatever is left of the server's own group (it was started as a new session).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=_STOP_S)
            self._close_log()

    def _shutdown_kernels(self) -> None:
        try:
            for kernel in self.api("GET", "api/kernels") or []:
                self.api("DELETE", f"api/kernels/{kernel['id']}")
        except (urllib.error.URLError, OSError, ValueError):
            pass  # the server is going down anyway; the process group is killed next

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> LabServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
