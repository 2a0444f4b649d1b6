"""Disk cache of successful batches, keyed by function ARN, the executed code and payload bytes."""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import os
import queue
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lambdakit.errors import InvalidInput

__all__ = ["DEFAULT", "Cache", "CacheEntry", "CacheWriter", "cache_key", "default_cache_dir"]

log = logging.getLogger("lambdakit.engine.cache")

# Overrides the per-user default folder (useful for CI and shared notebooks).
CACHE_DIR_ENV = "LAMBDAKIT_CACHE_DIR"


class _Default:
    """Sentinel for "the default cache folder" (`cache=DEFAULT`)."""

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT = _Default()


def default_cache_dir() -> Path:
    """The per-user cache folder ($LAMBDAKIT_CACHE_DIR, else platformdirs' user cache dir)."""
    override = os.environ.get(CACHE_DIR_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("lambdakit"))


def cache_key(function_arn: str, cache_token: str, body: bytes) -> str:
    """The one key function: sha256 over the ARN, the version's cache token and the payload.

    >>> cache_key("arn:aws:lambda:us-east-1:1:function:f", "3", b'{"Items":[1]}')[:12]
    '11685e4b4c31'
    """
    digest = hashlib.sha256()
    for part in (function_arn.encode(), b"\0", cache_token.encode(), b"\0", body):
        digest.update(part)
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    """One cached successful batch: its outputs, the attempt's metrics and who wrote it."""

    key: str
    function_arn: str
    executed_version: str
    cache_token: str
    run_id: str
    stored_at: str
    records: int
    payload_bytes: int
    outputs: list[Any]
    metrics: dict[str, Any] = field(default_factory=dict)


_ENTRY_FIELDS = tuple(CacheEntry.__dataclass_fields__)


class Cache:
    """A diskcache-backed store of successful batches; failures are never stored.

    The folder is created on first use, not when the object is made. Typical use:
    `lambdakit.run(..., cache=Cache("~/lk-cache"))`, then `cache.entries(function="my-fn")`
    to inspect and `cache.clear(function="my-fn")` to forget.
    """

    def __init__(
        self, directory: str | os.PathLike[str] | None = None, *, shared: bool = False
    ) -> None:
        self._directory = Path(directory).expanduser() if directory is not None else None
        self.shared = shared  # False: the folder is 0700 and its files 0600 (see folders.py)
        self._store: Any = None
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @classmethod
    def coerce(cls, cache: Any) -> Cache | None:
        """Accept DEFAULT/True (default folder), a path, a Cache, or False/None (no cache)."""
        if cache is False or cache is None:
            return None
        if isinstance(cache, Cache):
            return cache
        if cache is DEFAULT or cache is True:
            return cls()
        if isinstance(cache, (str, os.PathLike)):
            if Path(cache).expanduser().is_file():
                raise InvalidInput(f"cache folder {str(cache)!r} is a file; give a folder path")
            return cls(cache)
        raise InvalidInput(
            f"cache must be DEFAULT, a folder path, a lambdakit.Cache or False, got {cache!r}"
        )

    @property
    def directory(self) -> Path:
        """The folder holding the cache (the per-user default unless one was given)."""
        return self._directory if self._directory is not None else default_cache_dir()

    def check(self) -> None:
        """Raise InvalidInput now if the cache folder cannot be written (creates nothing)."""
        if self._store is None:
            from lambdakit.results.folders import check_folder

            check_folder(self.directory, "cache folder")

    def _open(self) -> Any:
        with self._lock:
            if self._store is None:
                import sqlite3

                import diskcache

                from lambdakit.results.folders import make_folder, seal

                try:
                    make_folder(self.directory, shared=self.shared)
                    self._store = diskcache.Cache(str(self.directory))
                    seal(self.directory, shared=self.shared)  # the database diskcache made
                except (OSError, sqlite3.Error) as exc:
                    raise InvalidInput(
                        f"cache folder {self.directory} cannot be used: {exc}"
                    ) from exc
            return self._store

    def __repr__(self) -> str:
        return f"Cache({str(self.directory)!r})"

    def get(self, key: str) -> CacheEntry | None:
        """The entry stored under `key`, or None."""
        value = self._open().get(key)
        return CacheEntry(**value) if isinstance(value, dict) else None

    def lookup(self, target: Any, body: bytes) -> CacheEntry | None:
        """A hit for any version the target currently routes to (weighted aliases have two)."""
        for version in target.versions:
            token = target.cache_tokens.get(version)
            if token is None:
                continue
            entry = self.get(cache_key(target.function_arn, token, body))
            # The entry must say it was written under this very token: an entry from an
            # older token scheme (a bare version number) is ignored, never misread.
            if entry is not None and entry.cache_token == token:
                with self._lock:
                    self.hits += 1
                return entry
        with self._lock:
            self.misses += 1
        return None

    def store(
        self,
        target: Any,
        executed_version: str | None,
        body: bytes,
        outputs: list[Any],
        *,
        run_id: str,
        metrics: dict[str, Any] | None = None,
    ) -> CacheEntry | None:
        """Record a successful batch under the version that ran; None if that is unknown."""
        token = self._token_for(target, executed_version)
        if token is None:
            log.warning(
                "not caching a batch of %s: executed version %r is not one the target routes to",
                target.function_arn,
                executed_version,
            )
            return None
        version = executed_version or next(iter(target.versions))
        key = cache_key(target.function_arn, token, body)
        entry = CacheEntry(
            key=key,
            function_arn=target.function_arn,
            executed_version=version,
            cache_token=token,
            run_id=run_id,
            stored_at=_dt.datetime.now(_dt.timezone.utc).isoformat(),
            records=len(outputs),
            payload_bytes=len(body),
            outputs=list(outputs),
            metrics=dict(metrics or {}),
        )
        # A shallow dict, not dataclasses.asdict: that deep-copies every output.
        value = {name: getattr(entry, name) for name in _ENTRY_FIELDS}
        self._open().set(key, value, tag=target.function_arn)
        return entry

    def writer(self) -> CacheWriter:
        """A background writer for this cache (see CacheWriter)."""
        return CacheWriter(self)

    @staticmethod
    def _token_for(target: Any, executed_version: str | None) -> str | None:
        if executed_version is None:
            # Without an ExecutedVersion only an unweighted target says what ran.
            return next(iter(target.cache_tokens.values())) if len(target.versions) == 1 else None
        # A version the alias moved to mid-run has no known code (its number alone is no
        # identity: numbers restart when a function is recreated), so it is not cached.
        return target.cache_tokens.get(executed_version)

    def _matching(self, function: str | None, run_id: str | None) -> list[CacheEntry]:
        store = self._open()
        found = []
        for key in list(store.iterkeys()):
            value = store.get(key)
            if not isinstance(value, dict):
                continue
            entry = CacheEntry(**value)
            if function is not None and not _same_function(entry.function_arn, function):
                continue
            if run_id is not None and entry.run_id != run_id:
                continue
            found.append(entry)
        return found

    def entries(self, function: str | None = None, *, run_id: str | None = None) -> Any:
        """A DataFrame of entries (no outputs), optionally for one function or one run."""
        import pandas as pd

        rows = [
            {k: v for k, v in asdict(e).items() if k not in ("outputs", "metrics")}
            for e in self._matching(function, run_id)
        ]
        columns = [f for f in CacheEntry.__dataclass_fields__ if f not in ("outputs", "metrics")]
        return pd.DataFrame(rows, columns=columns)

    def clear(self, function: str | None = None, *, run_id: str | None = None) -> int:
        """Delete entries (all, one function's, or one run's); returns how many."""
        store = self._open()
        if function is None and run_id is None:
            count = len(store)
            store.clear()
            return count
        removed = 0
        for entry in self._matching(function, run_id):
            removed += int(store.delete(entry.key))
        return removed

    def stats(self) -> dict[str, Any]:
        """Folder, number of entries, bytes on disk, and this object's hits and misses."""
        store = self._open()
        return {
            "directory": str(self.directory),
            "entries": len(store),
            "size_bytes": int(store.volume()),
            "hits": self.hits,
            "misses": self.misses,
        }

    def close(self) -> None:
        """Close the underlying database (it reopens on next use)."""
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None


def _same_function(function_arn: str, function: str) -> bool:
    """True when `function` (name, ARN or partial ARN) names the function of `function_arn`."""
    if function == function_arn:
        return True
    return function_arn.split(":")[-1] == function.split(":function:")[-1].split(":")[0]


class CacheWriter:
    """Stores successful batches from a background thread, many per sqlite transaction.

    A run's scheduler hands batches over with `put()` and carries on; a store costs a few
    hundred microseconds, which at batch_size=1 would otherwise throttle the whole run.
    `close()` waits until everything handed over is on disk, and re-raises a write error.
    """

    _STOP = object()

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.stored = 0
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="lambdakit-cache", daemon=True)
        self._thread.start()

    def put(self, target: Any, executed_version: str | None, body: bytes, outputs: list[Any],
            *, run_id: str, metrics: dict[str, Any] | None = None) -> None:  # fmt: skip
        """Queue one successful batch for `Cache.store` (same arguments)."""
        self._queue.put((target, executed_version, body, outputs, run_id, metrics))

    def close(self) -> None:
        """Write everything queued, stop the thread, and raise the first write error."""
        self._queue.put(self._STOP)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def _main(self) -> None:
        try:
            store = self.cache._open()
        except BaseException as exc:  # kept for close(); what was queued is not lost silently
            self._error = exc
            return
        while True:
            items = [self._queue.get()]
            while True:  # everything already waiting goes into the same transaction
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = items[-1] is self._STOP
            work = [item for item in items if item is not self._STOP]
            try:
                with store.transact():
                    for target, version, body, outputs, run_id, metrics in work:
                        if self.cache.store(
                            target, version, body, outputs, run_id=run_id, metrics=metrics
                        ):
                            self.stored += 1
            except BaseException as exc:  # kept for close(): a write error is never lost
                self._error = self._error or exc
            if stop:
                return
