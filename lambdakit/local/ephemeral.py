"""EphemeralStorage: an environment's own /tmp of the configured size, as Lambda gives it.

A function whose EphemeralStorage was set runs in a mount namespace of its own (``unshare``)
where /tmp is a fresh tmpfs of that size, so a write past it fails as it does on AWS
(``OSError: [Errno 28] No space left on device``) and nothing it leaves there outlives the
environment. The folders the runtime needs that live under /tmp themselves (the code, its
layers, the interpreter's prefix: a state dir may well be under /tmp) are bound back in at
their own paths, read through a descriptor opened before the tmpfs hid them.

Mount namespaces need root or unprivileged user namespaces. Where ``unshare`` cannot make
one, the function runs with the host's /tmp and its log says the limit is not enforced.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

__all__ = ["NOT_ENFORCED", "private_tmp_command", "unshare_prefix"]

log = logging.getLogger("lambdakit.local.ephemeral")

NOT_ENFORCED = (
    "[lambdakit] EphemeralStorage is not enforced here: this host does not let lambdakit "
    "local make a mount namespace (unshare), so /tmp is the host's"
)

# Run by `sh -c` inside the new namespace: $1 the tmpfs size in MB, $2 the number of folders
# to bind back, then those folders relative to /tmp, then the command.
_SCRIPT = r"""
size=$1; count=$2; shift 2
exec 3</tmp
mount -t tmpfs -o "size=${size}m,mode=1777" lambdakit-tmp /tmp || exit 126
while [ "$count" -gt 0 ]; do
    mkdir -p "/tmp/$1" && mount --no-canonicalize --bind "/proc/self/fd/3/$1" "/tmp/$1" || exit 126
    shift; count=$((count - 1))
done
exec 3<&-
exec "$@"
"""


@functools.lru_cache(maxsize=1)
def unshare_prefix() -> tuple[str, ...] | None:
    """The `unshare` command that gives a private mount namespace here, None if none does."""
    unshare = shutil.which("unshare")
    if unshare is None or not sys.platform.startswith("linux"):
        return None
    candidates = [(unshare, "--mount", "--propagation", "private")]
    if os.geteuid() != 0:
        candidates = [(unshare, "--user", "--map-root-user", "--mount", "--propagation",
                       "private")]  # fmt: skip
    for prefix in candidates:
        probe = [*prefix, "sh", "-c", "mount -t tmpfs -o size=1m lambdakit-probe /tmp"]
        try:
            done = subprocess.run(probe, capture_output=True, timeout=10, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("unshare probe failed: %s", exc)
            continue
        if done.returncode == 0:
            return prefix
        log.warning("no private /tmp for EphemeralStorage: %s",
                    done.stderr.decode(errors="replace").strip()[:200])  # fmt: skip
    return None


def _under_tmp(paths: Iterable[Path | None]) -> list[str]:
    tmp = Path("/tmp").resolve()
    kept: list[str] = []
    for path in paths:
        if path is None:
            continue
        resolved = Path(path).resolve()
        if resolved != tmp and tmp in resolved.parents:
            rel = str(resolved.relative_to(tmp))
            if rel not in kept:
                kept.append(rel)
    return kept


def private_tmp_command(
    command: list[str], size_mb: int, keep: Iterable[Path | None]
) -> list[str] | None:
    """`command` run with a private /tmp of `size_mb` MB; None where that cannot be had.

    `keep`: folders the process needs; those under /tmp are bound back at their paths.
    """
    prefix = unshare_prefix()
    if prefix is None:
        return None
    kept = _under_tmp([*keep, Path(sys.prefix), Path(sys.base_prefix)])
    return [*prefix, "sh", "-c", _SCRIPT, "sh", str(size_mb), str(len(kept)), *kept, *command]
