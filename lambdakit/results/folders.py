"""Private folders: what lambdakit writes (cache, reports, saved results) is the user's alone.

Folders it creates are 0700 and the files it writes 0600, whatever the umask, because they
hold payloads and outputs that other users of a shared machine must not read. `shared=True`
leaves both to the umask, for a team folder the user asked for.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from lambdakit.errors import InvalidInput

__all__ = ["PRIVATE_DIR", "PRIVATE_FILE", "check_folder", "make_folder", "seal"]

log = logging.getLogger("lambdakit.results.folders")

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def make_folder(path: str | os.PathLike[str], *, shared: bool = False) -> Path:
    """Create `path` and its missing parents (0700 unless `shared`); existing ones are kept."""
    folder = Path(path)
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    if not shared:
        for created in missing:
            os.chmod(created, PRIVATE_DIR)
    return folder


def check_folder(path: str | os.PathLike[str], what: str = "folder") -> Path:
    """Check that `path` is, or can be created as, a folder we can write; create nothing.

    Called before a run's first invocation, so a report, output or cache folder that cannot
    be written fails the run at once (InvalidInput naming `what` and the path), not after
    every batch was paid for.
    """
    folder = Path(path).expanduser()
    try:
        existing = next(p for p in (folder, *folder.parents) if p.exists() or p == p.parent)
    except OSError as exc:  # a parent we may not even look into
        raise InvalidInput(f"{what} {str(folder)!r} cannot be checked: {exc}") from exc
    if not existing.is_dir():
        if existing == folder:
            raise InvalidInput(f"{what} {str(folder)!r} is a file, not a folder")
        raise InvalidInput(f"{what} {str(folder)!r} cannot be created: {existing} is a file")
    # Permission bits do not tell (root, ACLs, read-only mounts): try what the run will do.
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".lambdakit-check-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if existing == folder:
            raise InvalidInput(f"{what} {str(folder)!r} is not writable: {reason}") from exc
        raise InvalidInput(
            f"{what} {str(folder)!r} cannot be created in {existing}: {reason}"
        ) from exc
    return folder


def seal(folder: str | os.PathLike[str], *, shared: bool = False) -> None:
    """Make what was written under `folder` private: files 0600, folders 0700 (not if shared)."""
    if shared:
        return
    root = Path(folder)
    _chmod(str(root), PRIVATE_DIR)
    for here, folders, files in os.walk(root):
        for name in folders:
            _chmod(os.path.join(here, name), PRIVATE_DIR)
        for name in files:
            path = os.path.join(here, name)
            if not os.path.islink(path):
                _chmod(path, PRIVATE_FILE)


def _chmod(path: str, mode: int) -> None:
    # Another user's file in a folder shared on purpose is theirs to protect, not an error.
    try:
        os.chmod(path, mode)
    except PermissionError:
        log.debug("cannot make %s private: not ours", path)
