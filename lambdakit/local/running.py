"""Where a running `lambdakit local` says it is, so the CLI finds it without --port/--state-dir.

    <state dir>/service.json                      written by every running service
    <platformdirs user state dir>/local-service.json   the pointer: the last service started
                                                  from the command line (`lambdakit local`,
                                                  `lambdakit lab`), not LocalLambda's own

Both hold `{"endpoint_url", "pid", "state_dir", "started_at"}`, are 0600, and are removed when
the service exits cleanly. A file left by a service that was killed names a process that is
gone: `find_service` then raises LocalServiceError saying so, rather than send a request to
whatever now listens on that port.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from lambdakit.errors import LocalServiceError

__all__ = ["SERVICE_FILE", "RunningService", "announce", "find_service", "pointer_path", "withdraw"]

log = logging.getLogger("lambdakit.local.running")

SERVICE_FILE = "service.json"
_POINTER = "local-service.json"


def pointer_path() -> Path:
    """The pointer file: beside the default state dir, in the user's state folder."""
    import platformdirs

    return Path(platformdirs.user_state_dir("lambdakit")) / _POINTER


@dataclass(frozen=True)
class RunningService:
    """What a state file says about a service: where it answers, its process, its state dir."""

    endpoint_url: str
    pid: int
    state_dir: Path
    started_at: str
    path: Path  # the file this was read from, for error messages

    @property
    def alive(self) -> bool:
        """True while the process the file names still runs (a zombie counts as gone)."""
        import psutil

        try:
            return psutil.Process(self.pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False


def announce(state_dir: Path, endpoint_url: str, *, pointer: bool) -> tuple[Path, ...]:
    """Write the state file (and the pointer when `pointer`); returns the paths written."""
    document = {
        "endpoint_url": endpoint_url,
        "pid": os.getpid(),
        "state_dir": str(Path(state_dir).resolve()),
        "started_at": _dt.datetime.now(_dt.timezone.utc).isoformat(),
    }
    written = [_write(Path(state_dir) / SERVICE_FILE, document)]
    if pointer:
        try:
            written.append(_write(pointer_path(), document))
        except OSError as exc:  # a read-only home: the service still works, with --state-dir
            log.warning("cannot write the pointer to this service (%s): %s", pointer_path(), exc)
    return tuple(written)


def _write(path: Path, document: dict[str, object]) -> Path:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Written whole, then renamed: a reader never sees half a file.
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        json.dump(document, out)
    os.replace(partial, path)
    return path


def withdraw(paths: tuple[Path, ...]) -> None:
    """Remove the files `announce` wrote, unless another service has since written its own."""
    for path in paths:
        try:
            if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
                path.unlink()
        except (OSError, ValueError, AttributeError) as exc:
            log.debug("not removing %s: %s", path, exc)


def _read(path: Path) -> RunningService | None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LocalServiceError(f"cannot read lambdakit local's state file {path}: {exc}") from exc
    try:
        return RunningService(
            endpoint_url=str(document["endpoint_url"]),
            pid=int(document["pid"]),
            state_dir=Path(document["state_dir"]),
            started_at=str(document.get("started_at", "")),
            path=path,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise LocalServiceError(f"the lambdakit local state file {path} is malformed") from exc


def find_service(state_dir: str | os.PathLike[str] | None = None) -> RunningService | None:
    """The running service of `state_dir` (else the pointer's); None when there is none.

    Raises LocalServiceError when the file names a process that has gone (a killed service).
    """
    if state_dir is not None:
        found = _read(Path(state_dir) / SERVICE_FILE)
    else:
        found = _read(pointer_path())
    if found is not None and not found.alive:
        raise LocalServiceError(
            f"the lambdakit local recorded in {found.path} ({found.endpoint_url}, pid "
            f"{found.pid}) is no longer running: start it again, or name one with "
            "--endpoint-url / --state-dir"
        )
    return found
