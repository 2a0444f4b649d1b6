"""One execution environment's runtime process: start, output capture, memory, exit, kill.

The process gets the environment variables Lambda sets and writes stdout and stderr into one
pipe that the event loop reads without blocking; one invocation at a time makes the output
attributable. It stays in the server's process group, so that stopping the server's group
stops it too; a kill also takes the processes it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

from lambdakit.local.ephemeral import NOT_ENFORCED, private_tmp_command
from lambdakit.local.logs import InvocationOutput, LogStream, stream_name
from lambdakit.local.runtime import Outcome, RuntimeChannel

__all__ = [
    "OPT_DIR_VARIABLE",
    "FunctionSpec",
    "RuntimeProcess",
    "descendants_map",
    "raise_open_file_limit",
    "runtime_environment",
]

# Pipe reads (64 KB each) per readiness callback, and per explicit drain at an invocation's
# edges (which must take everything written before the runtime answered).
READS_PER_WAKEUP = 16
READS_PER_DRAIN = 64

# Where a function finds its layers (AWS's /opt): the merged folder's real path.
OPT_DIR_VARIABLE = "LAMBDAKIT_OPT_DIR"

# Test credentials, as Lambda injects its role's: handlers that call the local service sign
# with them (used where no per-server pair is given; see auth.session_credentials).
_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "ASIALAMBDAKITLOCAL00",
    "AWS_SECRET_ACCESS_KEY": "lambdakit-local-secret-access-key",
    "AWS_SESSION_TOKEN": "lambdakit-local-session-token",
}


@dataclass(frozen=True)
class FunctionSpec:
    """Everything an environment needs to run one version of one function."""

    function_name: str
    version: str  # "$LATEST" or "1", "2", ...
    function_arn: str  # unqualified ARN
    code_dir: Path  # the unpacked code of exactly this version
    handler: str  # "module.fn" (python) or anything (provided.*)
    runtime: str  # "python3.x" or "provided.al2023" / "provided.al2"
    timeout_s: float
    memory_mb: int
    environment: dict[str, str]  # the function's Environment.Variables
    revision: str  # changes whenever code or config changes
    reserved_concurrency: int | None  # None: share the account pool
    opt_dir: Path | None = None  # its layers merged in order (AWS's /opt); None: no layers
    tmp_mb: int | None = None  # EphemeralStorage given: a private /tmp of this size
    log_format: str = "Text"  # LoggingConfig.LogFormat: "Text" or "JSON"
    application_log_level: str | None = None  # JSON only: what awslambdaric logs
    system_log_level: str | None = None  # JSON only: which platform lines are written


def runtime_environment(
    spec: FunctionSpec,
    *,
    runtime_api: str,
    endpoint_url: str,
    region: str,
    stream: str,
    credentials: dict[str, str] | None = None,
) -> dict[str, str]:
    """The variables Lambda sets, over the function's own Environment (Lambda's win).

    `credentials` are the AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN handed to
    handlers (the server makes a pair per start; test credentials when None).
    """
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "en_US.UTF-8",
        **spec.environment,
        **(credentials or _CREDENTIALS),
        "AWS_LAMBDA_FUNCTION_NAME": spec.function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": spec.version,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.function_name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": stream,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "_HANDLER": spec.handler,
        "LAMBDA_TASK_ROOT": str(spec.code_dir),
        "TZ": ":UTC",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_RUNTIME_API": runtime_api,
        "AWS_ENDPOINT_URL_LAMBDA": endpoint_url,
    }
    # Never AWS_LAMBDA_MAX_CONCURRENCY: awslambdaric would switch to multi-concurrency mode.
    env.pop("AWS_LAMBDA_MAX_CONCURRENCY", None)
    if spec.log_format == "JSON":
        # What Lambda sets for LoggingConfig; awslambdaric then logs JSON at that level.
        env["AWS_LAMBDA_LOG_FORMAT"] = "JSON"
        if spec.application_log_level:
            env["AWS_LAMBDA_LOG_LEVEL"] = spec.application_log_level
    paths = [str(spec.code_dir)]
    if spec.opt_dir is not None:
        # /opt cannot be written here: the real folder, under the name docs/architecture.md
        # gives it. AWS's order: the function code first, then the layers', then the runtime's.
        opt = spec.opt_dir
        env[OPT_DIR_VARIABLE] = str(opt)
        env["PATH"] = f"{env['PATH']}:{opt / 'bin'}"
        libraries = [str(opt / "lib"), *filter(None, [os.environ.get("LD_LIBRARY_PATH")])]
        env["LD_LIBRARY_PATH"] = ":".join(libraries)
        if spec.runtime.startswith("python"):
            paths += [str(opt / "python" / "lib" / spec.runtime / "site-packages")]
            paths += [str(opt / "python")]
    if spec.runtime.startswith("python"):
        env["AWS_EXECUTION_ENV"] = f"AWS_Lambda_{spec.runtime}"
        # awslambdaric does not put the task root on sys.path itself.
        env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def raise_open_file_limit() -> None:
    """Each environment holds a few descriptors (pipe, pidfd, /proc, log): allow thousands."""
    try:
        import resource
    except ImportError:  # not POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _command(spec: FunctionSpec) -> list[str]:
    if spec.runtime.startswith("python"):
        # The host interpreter: its site-packages stand in for the managed runtime's boto3.
        return [sys.executable, "-m", "awslambdaric", spec.handler]
    bootstrap = Path(spec.code_dir) / "bootstrap"
    if spec.opt_dir is not None and not bootstrap.exists():
        bootstrap = spec.opt_dir / "bootstrap"  # a runtime shipped as a layer, as on AWS
    return [str(bootstrap)]


def descendants_map(pids: Iterable[int]) -> dict[int, list[int]]:
    """For each pid, every process below it (one scan of the process table)."""
    children: dict[int, list[int]] = {}
    for proc in psutil.process_iter(["ppid"]):
        children.setdefault(proc.info["ppid"], []).append(proc.pid)
    found: dict[int, list[int]] = {}
    for pid in pids:
        below: list[int] = []
        todo = list(children.get(pid, ()))
        while todo:
            child = todo.pop()
            below.append(child)
            todo.extend(children.get(child, ()))
        found[pid] = below
    return found


class _PeakReader:
    """The kernel's high-water mark of a process's RSS (Linux's VmHWM); 0 where unknown."""

    def __init__(self, pid: int) -> None:
        try:
            # Kept open: re-reading /proc/<pid>/status from offset 0 is cheaper than reopening.
            self._fd: int | None = os.open(f"/proc/{pid}/status", os.O_RDONLY)
        except OSError:
            self._fd = None

    def read(self) -> int:
        if self._fd is None:
            return 0
        try:
            data = os.pread(self._fd, 4096, 0)
            start = data.index(b"VmHWM:") + 6
            return int(data[start : data.index(b"kB", start)]) * 1024
        except (OSError, ValueError):
            return 0

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class RuntimeProcess:
    """One execution environment: a runtime process, its Runtime API channel and log stream."""

    def __init__(
        self,
        spec: FunctionSpec,
        env_id: str,
        *,
        state_dir: Path,
        runtime_api: str,
        endpoint_url: str,
        region: str,
        on_gone: Callable[[RuntimeProcess], None],
        secret: str = "",
        umask: int = -1,
        credentials: dict[str, str] | None = None,
    ) -> None:
        self.spec = spec
        self.env_id = env_id
        # The Runtime API token inside runtime_api: kept out of every log line written here.
        self.secret = secret
        self._umask = umask  # the runtime's umask (-1: this process's); the server's is 077
        self.key = (spec.function_name, spec.version)
        self.channel = RuntimeChannel()
        self.channel.on_first_poll = self._init_done
        self.stream = LogStream(state_dir, spec.function_name, stream_name(spec.version, env_id))
        self.started_at = time.monotonic()
        self.last_used = self.started_at
        self.busy = False
        self.retired = False  # its function changed or was deleted: never reuse it
        self.pid: int | None = None
        self._environ = runtime_environment(
            spec,
            runtime_api=runtime_api,
            endpoint_url=endpoint_url,
            region=region,
            stream=self.stream.name,
            credentials=credentials,
        )
        self._on_gone = on_gone
        self._popen: subprocess.Popen[bytes] | None = None
        self._ps: psutil.Process | None = None
        self._hwm: _PeakReader | None = None
        self._children: dict[int, psutil.Process] = {}
        self._peak = 0
        self._out_fd: int | None = None
        self._exit_fd: int | None = None
        self._exit_status: int | None = None
        self._killed = False
        self._init_output: InvocationOutput | None = InvocationOutput()
        self._sink: InvocationOutput | None = self._init_output
        self._pending: InvocationOutput | None = None

    @property
    def alive(self) -> bool:
        """Started, not killed, not exited."""
        return not self._killed and self._exit_status is None

    def idle_stale(self, spec: FunctionSpec) -> bool:
        """Idle, and of another revision than `spec`: never to be reused."""
        return not self.busy and self.spec.revision != spec.revision

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the runtime process; a failure to start becomes Runtime.InvalidEntrypoint."""
        loop = asyncio.get_running_loop()
        read_fd, write_fd = os.pipe()
        command = _command(self.spec)
        if self.spec.tmp_mb is not None:
            private = private_tmp_command(
                command, self.spec.tmp_mb, [self.spec.code_dir, self.spec.opt_dir]
            )
            if private is None:
                self.stream.write([NOT_ENFORCED])
            else:
                command = private
        try:
            self._popen = subprocess.Popen(
                command,
                cwd=self.spec.code_dir,
                env=self._environ,
                stdin=subprocess.DEVNULL,
                stdout=write_fd,
                stderr=write_fd,
                umask=self._umask,
            )
        except OSError as exc:
            os.close(read_fd)
            os.close(write_fd)
            reason = (exc.strerror or str(exc)).lower()
            message = f"fork/exec {command[0]}: {reason}"
            self._killed = True
            self.channel.fail_init(Outcome("entrypoint", message.encode()))
            self._on_gone(self)
            return
        os.close(write_fd)
        self.pid = self._popen.pid
        os.set_blocking(read_fd, False)
        self._out_fd = read_fd
        loop.add_reader(read_fd, self._drain, READS_PER_WAKEUP)
        with contextlib.suppress(psutil.Error):
            self._ps = psutil.Process(self.pid)
        self._hwm = _PeakReader(self.pid)
        try:
            self._exit_fd = os.pidfd_open(self.pid)
            loop.add_reader(self._exit_fd, self._reap)
        except (AttributeError, OSError):
            # No pidfd (old kernel or not Linux): a thread waits for the exit instead.
            popen = self._popen
            threading.Thread(
                target=lambda: (popen.wait(), loop.call_soon_threadsafe(self._reap)),
                daemon=True,
            ).start()

    def kill(self) -> None:
        """Kill the process and all it started; the environment is never used again."""
        if not self._killed:
            self._killed = True
            if self.pid is not None and self._exit_status is None:
                self._kill_tree()
            self.channel.close(Outcome("closed", exit_status=-signal.SIGKILL))
            self._on_gone(self)

    def _reap(self) -> None:
        popen = self._popen
        if popen is None or popen.poll() is None:
            return
        self._exit_status = popen.returncode
        if self._hwm is not None:
            self._hwm.close()
        loop = asyncio.get_running_loop()
        if self._exit_fd is not None:
            loop.remove_reader(self._exit_fd)
            os.close(self._exit_fd)
            self._exit_fd = None
        self._drain()
        self.channel.close(Outcome("exit", exit_status=popen.returncode))
        if not self._killed:
            self._killed = True
            self._on_gone(self)
        # Children it left behind (seen by the memory watch) must not outlive it.
        for proc in self._children.values():
            with contextlib.suppress(psutil.Error):
                proc.kill()

    def _kill_tree(self) -> None:
        processes = list(self._children.values())
        if self._ps is not None:
            with contextlib.suppress(psutil.Error):
                processes = [*self._ps.children(recursive=True), *processes, self._ps]
        for proc in processes:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        if self._ps is None and self.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, signal.SIGKILL)

    # -- output -----------------------------------------------------------------------------

    def _drain(self, max_reads: int = READS_PER_DRAIN) -> None:
        """Read what the pipe holds right now (never blocks; a bounded amount per call)."""
        fd = self._out_fd
        # Bounded: a process that writes without pause must not keep the event loop here.
        for _ in range(max_reads):
            if fd is None:
                return
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                asyncio.get_running_loop().remove_reader(fd)
                os.close(fd)
                self._out_fd = fd = None
                return
            if self._sink is not None:
                self._sink.append(data)
            else:
                # Between invocations (background threads): the stream gets it, no invocation.
                self.stream.write(self._redact(data.decode("utf-8", "replace").splitlines()))

    def _redact(self, lines: list[str]) -> list[str]:
        """The lines with the Runtime API token blanked (a runtime's error may quote it)."""
        secret = self.secret
        if not secret or not any(secret in line for line in lines):
            return lines
        return [line.replace(secret, "<token>") for line in lines]

    def _init_done(self) -> None:
        """The first GET /next: init output goes to the stream, before START."""
        self._drain()
        if self._init_output is not None:
            self.stream.write(self._redact(self._init_output.lines()))
        self._init_output = None
        self._sink = self._pending
        self._pending = None

    def begin(self) -> None:
        """An invocation starts: its output is captured from now on."""
        self.busy = True
        self._drain()
        if self._init_output is not None:
            self._pending = InvocationOutput()  # init is still running: switch on first poll
        else:
            self._sink = InvocationOutput()

    def end(self) -> list[str]:
        """The invocation ended: its captured output, as lines (init output when init failed)."""
        self._drain()
        if self._init_output is not None:
            # Init never finished, so its output belongs to this failed invocation.
            outputs = [self._init_output, self._pending]
        else:
            outputs = [self._sink]
        self._init_output = self._pending = self._sink = None
        self.busy = False
        lines = [line for output in outputs if output is not None for line in output.lines()]
        return self._redact(lines)

    # -- memory -----------------------------------------------------------------------------

    def track_children(self, pids: Iterable[int]) -> None:
        """Remember the processes below this one (from a scan), for the memory watch."""
        known = self._children
        for pid in pids:
            if pid not in known:
                with contextlib.suppress(psutil.Error):
                    known[pid] = psutil.Process(pid)

    def peak_rss(self) -> int:
        """The environment's peak RSS so far (its process's own peak exactly), in bytes."""
        own = self._hwm.read() if self._hwm is not None else 0
        if not own and self._ps is not None:
            # No VmHWM (not Linux): the current RSS, sampled, stands in for the peak.
            with contextlib.suppress(psutil.Error):
                own = self._ps.memory_info().rss
        children_rss = 0
        for pid, proc in list(self._children.items()):
            try:
                children_rss += proc.memory_info().rss
            except psutil.Error:
                del self._children[pid]
        self._peak = max(self._peak, own + children_rss)
        return self._peak
