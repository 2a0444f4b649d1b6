"""Lambda's START/END/REPORT lines, per-invocation output capture, and log groups on disk.

Each function gets a folder under ``<state_dir>/logs/<function>/`` (its log group); each
execution environment writes one file there (its log stream), one line per log line,
prefixed by the epoch milliseconds and a tab. Files and groups are bounded: a stream rotates
once past ``max_stream_bytes`` and a group keeps its newest ``max_streams`` streams.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from lambdakit.errors import InvalidInput

__all__ = [
    "InvocationOutput",
    "LogEvent",
    "LogStream",
    "format_end",
    "format_report",
    "format_start",
    "json_report",
    "json_runtime_done",
    "json_start",
    "log_group_dir",
    "read_logs",
    "stream_name",
]

# What one invocation keeps of its output: the head, plus the tail so that the last 4 KB
# (LogType=Tail) stay exact even when a handler prints megabytes.
HEAD_BYTES = 128 * 1024
TAIL_BYTES = 8 * 1024


def format_start(request_id: str, version: str) -> str:
    """The START line, as Lambda writes it."""
    return f"START RequestId: {request_id} Version: {version}"


def format_end(request_id: str) -> str:
    """The END line, as Lambda writes it."""
    return f"END RequestId: {request_id}"


def format_report(
    request_id: str,
    *,
    duration_ms: float,
    memory_size_mb: int,
    max_memory_used_mb: int,
    init_duration_ms: float | None = None,
    status: str | None = None,
    error_type: str | None = None,
) -> str:
    """The tab-separated REPORT line; Init Duration on cold starts, Status on failures."""
    fields = [
        f"REPORT RequestId: {request_id}",
        f"Duration: {duration_ms:.2f} ms",
        f"Billed Duration: {max(1, math.ceil(duration_ms))} ms",
        f"Memory Size: {memory_size_mb} MB",
        f"Max Memory Used: {max_memory_used_mb} MB",
    ]
    if init_duration_ms is not None:
        fields.append(f"Init Duration: {init_duration_ms:.2f} ms")
    if status is not None:
        fields.append(f"Status: {status}")
        if error_type:
            fields.append(f"Error Type: {error_type}")
    return "\t".join(fields) + "\t"


def _json_line(kind: str, record: dict[str, object], at: float) -> str:
    when = datetime.fromtimestamp(at, tz=timezone.utc).isoformat(timespec="milliseconds")
    body = {"time": when.replace("+00:00", "Z"), "type": kind, "record": record}
    return json.dumps(body, separators=(",", ":"))


def json_start(request_id: str, version: str, *, at: float) -> str:
    """The JSON form of START (LogFormat JSON): a `platform.start` event."""
    return _json_line("platform.start", {"requestId": request_id, "version": version}, at)


def _status(status: str | None) -> str:
    return status or "success"  # the text form writes Status only when it is not a success


def json_runtime_done(
    request_id: str, *, status: str | None = None, error_type: str | None = None, at: float
) -> str:
    """The JSON form of END: a `platform.runtimeDone` event."""
    record: dict[str, object] = {"requestId": request_id, "status": _status(status)}
    if error_type:
        record["errorType"] = error_type
    return _json_line("platform.runtimeDone", record, at)


def json_report(
    request_id: str,
    *,
    duration_ms: float,
    memory_size_mb: int,
    max_memory_used_mb: int,
    init_duration_ms: float | None = None,
    status: str | None = None,
    error_type: str | None = None,
    at: float,
) -> str:
    """The JSON form of REPORT: a `platform.report` event with the same figures."""
    metrics: dict[str, object] = {
        "durationMs": round(duration_ms, 2),
        "billedDurationMs": max(1, math.ceil(duration_ms)),
        "memorySizeMB": memory_size_mb,
        "maxMemoryUsedMB": max_memory_used_mb,
    }
    if init_duration_ms is not None:
        metrics["initDurationMs"] = round(init_duration_ms, 2)
    record: dict[str, object] = {"requestId": request_id, "metrics": metrics,
                                 "status": _status(status)}  # fmt: skip
    if error_type:
        record["errorType"] = error_type
    return _json_line("platform.report", record, at)


def stream_name(version: str, env_id: str, *, now: float | None = None) -> str:
    """An AWS-style log stream name: ``YYYY/MM/DD/[VERSION]<env id>``."""
    day = datetime.fromtimestamp(time.time() if now is None else now, tz=timezone.utc)
    return f"{day:%Y/%m/%d}/[{version}]{env_id}"


def log_group_dir(state_dir: Path, function_name: str) -> Path:
    """The folder holding one function's log streams."""
    if not function_name or "/" in function_name or function_name in (".", ".."):
        raise InvalidInput(f"not a usable function name for a log group: {function_name!r}")
    return Path(state_dir) / "logs" / function_name


def _file_name(stream: str) -> str:
    # The three slashes of the date prefix cannot appear in a file name.
    return stream.replace("/", "-", 3) + ".log"


def _stream_of(path: Path) -> str:
    name = path.name.removesuffix(".1").removesuffix(".log")
    return name.replace("-", "/", 3)


class InvocationOutput:
    """One invocation's stdout/stderr, bounded: the head, a marker, and the exact tail."""

    __slots__ = ("_dropped", "_head", "_head_size", "_tail", "_tail_size")

    def __init__(self) -> None:
        self._head: list[bytes] = []
        self._head_size = 0
        self._tail: deque[bytes] = deque()
        self._tail_size = 0
        self._dropped = 0

    def append(self, data: bytes) -> None:
        """Add output; past the head limit only the last TAIL_BYTES are kept."""
        room = HEAD_BYTES - self._head_size
        if room > 0:
            self._head.append(data[:room])
            self._head_size += min(room, len(data))
            data = data[room:]
            if not data:
                return
        self._tail.append(data)
        self._tail_size += len(data)
        while self._tail_size - len(self._tail[0]) >= TAIL_BYTES:
            self._dropped += len(self._tail[0])
            self._tail_size -= len(self._tail[0])
            self._tail.popleft()

    @property
    def size(self) -> int:
        """Bytes received so far, kept or not."""
        return self._head_size + self._tail_size + self._dropped

    def lines(self) -> list[str]:
        """The kept output as lines, with a line saying how much was left out, if any."""
        tail = b"".join(self._tail)
        dropped = self._dropped
        if len(tail) > TAIL_BYTES:
            dropped += len(tail) - TAIL_BYTES
            tail = tail[-TAIL_BYTES:]
        head = b"".join(self._head).decode("utf-8", "replace")
        lines = head.splitlines()
        if dropped:
            lines.append(
                f"[lambdakit] {dropped} bytes of this invocation's output were not kept "
                f"(it keeps the first {HEAD_BYTES} and the last {TAIL_BYTES} bytes)"
            )
        if tail:
            lines.extend(tail.decode("utf-8", "replace").splitlines())
        return lines


class LogStream:
    """One environment's log stream: an append-only file in its function's log group."""

    def __init__(
        self,
        state_dir: Path,
        function_name: str,
        name: str,
        *,
        max_stream_bytes: int = 2 * 1024 * 1024,
        max_streams: int = 32,
    ) -> None:
        self.name = name
        group = log_group_dir(state_dir, function_name)
        # Logs hold payloads and outputs: private to this user (0700 folders, 0600 files).
        group.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        group.mkdir(mode=0o700, exist_ok=True)
        self.path = group / _file_name(name)
        self._max_bytes = max_stream_bytes
        _prune(group, keep=max_streams - 1)
        self._fd: int | None = None
        self._size = 0

    def _open(self) -> int:
        if self._fd is not None and os.fstat(self._fd).st_nlink == 0:
            # Pruned while open: writing on would lose the lines.
            self.close()
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._size = os.fstat(self._fd).st_size
        return self._fd

    def write(self, lines: list[str], *, at: float | None = None) -> None:
        """Append lines, all stamped with `at` (epoch seconds, default now)."""
        self.write_groups([(time.time() if at is None else at, lines)])

    def write_groups(self, groups: list[tuple[float, list[str]]]) -> None:
        """Append several groups of lines, each stamped with its own time, in one write."""
        data = "".join(
            f"{int(at * 1000)}\t{line}\n" for at, lines in groups for line in lines
        ).encode("utf-8", "replace")
        if not data:
            return
        fd = self._open()
        if self._size + len(data) > self._max_bytes and self._size:
            self.close()
            with contextlib.suppress(FileNotFoundError):
                self.path.replace(self.path.with_name(self.path.name + ".1"))
            fd = self._open()
        # One write per call, straight to the file: `lambdakit local logs` sees it at once.
        os.write(fd, data)
        self._size += len(data)

    def close(self) -> None:
        """Close the file (a later write opens it again)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _prune(group: Path, *, keep: int) -> None:
    """Delete the oldest streams so that at most `keep` remain."""
    streams: dict[str, float] = {}
    for path in group.glob("*.log*"):
        with contextlib.suppress(FileNotFoundError):
            stream = _stream_of(path)
            streams[stream] = max(streams.get(stream, 0.0), path.stat().st_mtime)
    for stream, _ in sorted(streams.items(), key=lambda kv: kv[1])[: max(0, len(streams) - keep)]:
        base = group / _file_name(stream)
        for path in (base, base.with_name(base.name + ".1")):
            path.unlink(missing_ok=True)


@dataclass(frozen=True)
class LogEvent:
    """One stored log line."""

    timestamp_ms: int
    stream: str
    message: str

    def format(self) -> str:
        """``<ISO time> <stream> <message>``, as `aws logs tail` prints it."""
        when = datetime.fromtimestamp(self.timestamp_ms / 1000, tz=timezone.utc)
        return f"{when.isoformat(timespec='milliseconds')} {self.stream} {self.message}"


def _last_lines(path: Path, count: int | None) -> list[bytes]:
    """The last `count` lines of a file (all when None), reading only as much as needed."""
    with open(path, "rb") as file:
        if count is None:
            return file.read().splitlines()
        end = file.seek(0, 2)
        data = b""
        block = 64 * 1024
        while end > 0 and data.count(b"\n") <= count:
            start = max(0, end - block)
            file.seek(start)
            data = file.read(end - start) + data
            end = start
        # The loop read one newline more than needed, so a partial first line falls off.
        return data.splitlines()[-count:]


def read_logs(state_dir: Path, function_name: str, *, tail: int | None = None) -> list[LogEvent]:
    """Every stored log line of a function (or its last `tail`), oldest first.

    Example: ``for e in read_logs(Path("state"), "fn", tail=20): print(e.format())``.
    """
    if tail is not None and tail < 0:
        raise InvalidInput(f"tail must be 0 or more, got {tail}")
    group = log_group_dir(state_dir, function_name)
    if not group.is_dir() or tail == 0:
        return []
    events: list[tuple[int, str, int, LogEvent]] = []
    for path in group.glob("*.log*"):
        stream = _stream_of(path)
        # Rotated files (.1) hold the older half of a stream: order them first.
        generation = 0 if path.name.endswith(".1") else 1
        with contextlib.suppress(FileNotFoundError):
            for raw in _last_lines(path, tail):
                stamp, sep, message = raw.decode("utf-8", "replace").partition("\t")
                if not sep or not stamp.isdigit():
                    continue
                event = LogEvent(int(stamp), stream, message)
                events.append((event.timestamp_ms, stream, generation, event))
    # Stable sort: lines of one stream with the same stamp keep their file order.
    events.sort(key=lambda item: (item[0], item[1], item[2]))
    ordered = [item[3] for item in events]
    return ordered if tail is None else ordered[-tail:]
