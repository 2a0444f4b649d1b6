"""OutputStore: per-record outputs kept on disk as JSON lines, read back in input order.

Every digit is kept (records/encoding.py's dumps_exact / loads_exact): an int beyond 64 bits
and a JsonNumber (a reply's number no float holds) come back as they were stored.
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import shutil
import tempfile
import threading
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from lambdakit.errors import InvalidInput
from lambdakit.records.encoding import dumps_exact, loads_exact
from lambdakit.results.folders import PRIVATE_FILE, make_folder

__all__ = ["OutputStore"]

log = logging.getLogger("lambdakit.results.outputs")

DATA_FILE = "outputs.jsonl"
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
INDEX_FILE = "outputs.index.json"


class _Chunk(NamedTuple):
    """Where one put() landed: byte offset and length of its line, and its record range."""

    offset: int
    length: int
    first_record: int  # smallest record index in the line, for the in-order merge
    count: int


class OutputStore:
    """Per-record outputs on disk, iterated in input order with None where missing.

    Each `put()` appends one JSON line `[record_indices, outputs]` (every digit kept);
    memory holds only the offset, length and smallest record index of each line, so millions
    of outputs cost a few bytes per batch. `put()` is thread-safe. In a `directory` you
    name, each put is flushed, so a crash or another reader never misses a stored batch.
    Without `directory` the store lives in a private temporary folder, removed when the
    store is garbage-collected, and puts are buffered (a flush per batch cost ~17 us, a
    tenth of a run's own time per attempt at batch_size=1): its reads, `flush()`, `save()`
    and pickling flush first. Pickling embeds the data.

    >>> store = OutputStore()
    >>> store.put([2, 0], ["c", "a"])
    >>> list(store.get_all(3))
    ['a', None, 'c']
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self._lock = threading.Lock()
        self._chunks: list[_Chunk] = []
        self._size = 0
        self._records = 0
        if directory is None:
            self._dir = Path(tempfile.mkdtemp(prefix="lambdakit-outputs-"))
            # The temp folder belongs to this object alone; nothing else knows its name.
            self._cleanup: weakref.finalize | None = weakref.finalize(
                self, shutil.rmtree, str(self._dir), True
            )
        else:
            self._dir = make_folder(directory)  # payload outputs: the user's alone
            self._cleanup = None
            self._open_existing()
        # Only this object knows a temp folder: nobody else can read it before it flushes.
        self._flush_each_put = directory is not None
        self._fh = open(self._dir / DATA_FILE, "ab")  # noqa: SIM115 - held for appends
        if directory is not None:
            os.chmod(self._dir / DATA_FILE, PRIVATE_FILE)

    @property
    def directory(self) -> Path:
        """The folder holding the outputs file."""
        return self._dir

    def __len__(self) -> int:
        """Number of outputs stored (a record put twice counts twice)."""
        return self._records

    def put(self, record_indices: Sequence[int], outputs: Sequence[Any]) -> None:
        """Store one output per record index (one call per delivered batch or sub-batch)."""
        if len(record_indices) == 1 == len(outputs):  # batch_size=1: the per-record path
            indices, values = [int(record_indices[0])], [outputs[0]]
        else:
            indices, values = [int(i) for i in record_indices], list(outputs)
            if len(indices) != len(values):
                raise InvalidInput(
                    f"OutputStore.put got {len(indices)} record indices but {len(values)} outputs"
                )
            if not indices:
                return
            if len(indices) > 1 and indices != sorted(indices):  # usually in order already
                order = sorted(range(len(indices)), key=indices.__getitem__)
                indices, values = [indices[k] for k in order], [values[k] for k in order]
        if indices[0] < 0:  # the smallest, once sorted
            raise InvalidInput(f"OutputStore.put got a negative record index {indices[0]}")
        try:
            line = dumps_exact([indices, values], option=_OPTIONS)
        except TypeError as exc:
            raise InvalidInput(f"an output of records {indices[:5]}... is not JSON: {exc}") from exc
        line += b"\n"
        with self._lock:
            self._fh.write(line)
            if self._flush_each_put:
                self._fh.flush()
            self._chunks.append(_Chunk(self._size, len(line), indices[0], len(indices)))
            self._size += len(line)
            self._records += len(indices)

    def flush(self) -> None:
        """Write buffered outputs to the file."""
        with self._lock:
            self._fh.flush()

    def get_all(self, n_records: int) -> Iterator[Any]:
        """Yield `n_records` outputs in input order, None where no output was stored."""
        with self._lock:
            self._fh.flush()
            chunks = sorted(enumerate(self._chunks), key=lambda c: (c[1].first_record, c[0]))
        return self._merge(chunks, int(n_records))

    def _merge(self, chunks: list[tuple[int, _Chunk]], n_records: int) -> Iterator[Any]:
        # Lines are loaded only when the walk reaches their first record, so batches that
        # cover disjoint ranges (the usual case) keep about one line in memory at a time.
        heap: list[tuple[int, int, int, list[int], list[Any]]] = []
        pending = 0
        record = 0
        with open(self._dir / DATA_FILE, "rb") as fh:
            while record < n_records:
                while pending < len(chunks) and chunks[pending][1].first_record <= record:
                    seq, chunk = chunks[pending]
                    fh.seek(chunk.offset)
                    indices, values = loads_exact(fh.read(chunk.length))
                    heapq.heappush(heap, (indices[0], seq, 0, indices, values))
                    pending += 1
                if len(heap) == 1 and self._whole_run(heap[0], record, n_records, chunks, pending):
                    # Fast path: a batch covering the next records alone, nothing overlapping.
                    values = heapq.heappop(heap)[4]
                    yield from values
                    record += len(values)
                    continue
                value = None
                # The later put wins when a record was stored twice (seq breaks the tie).
                while heap and heap[0][0] <= record:
                    _, seq, pos, indices, values = heapq.heappop(heap)
                    if indices[pos] == record:
                        value = values[pos]
                    if pos + 1 < len(indices):
                        heapq.heappush(heap, (indices[pos + 1], seq, pos + 1, indices, values))
                yield value
                record += 1

    @staticmethod
    def _whole_run(
        entry: tuple[int, int, int, list[int], list[Any]],
        record: int,
        n_records: int,
        chunks: list[tuple[int, _Chunk]],
        pending: int,
    ) -> bool:
        """Whether a freshly loaded line holds exactly records record.. with no overlap."""
        _, _, pos, indices, _ = entry
        last = record + len(indices) - 1
        return (
            pos == 0
            and last < n_records
            and (pending == len(chunks) or chunks[pending][1].first_record > last)
            and indices == list(range(record, last + 1))
        )

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Copy the outputs and their index into `directory` (created if needed)."""
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._fh.flush()
            if target.resolve() != self._dir.resolve():
                shutil.copyfile(self._dir / DATA_FILE, target / DATA_FILE)
            index = {"size": self._size, "chunks": [list(c) for c in self._chunks]}
        (target / INDEX_FILE).write_text(json.dumps(index))
        return target

    @classmethod
    def open(cls, directory: str | os.PathLike[str]) -> OutputStore:
        """Open a store saved with `save()` (further puts append to it)."""
        if not (Path(directory) / DATA_FILE).exists():
            raise InvalidInput(f"no {DATA_FILE} in {directory}: not a saved OutputStore")
        return cls(directory)

    def close(self) -> None:
        """Close the append handle (reads still work)."""
        with self._lock:
            self._fh.close()

    def _open_existing(self) -> None:
        data = self._dir / DATA_FILE
        if not data.exists():
            return
        size = data.stat().st_size
        index_path = self._dir / INDEX_FILE
        if index_path.exists():
            index = json.loads(index_path.read_text())
            if index.get("size") == size:
                self._chunks = [_Chunk(*c) for c in index["chunks"]]
                self._size = size
                self._records = sum(c.count for c in self._chunks)
                return
            log.info("outputs index of %s is stale; rebuilding it from the data", self._dir)
        self._rebuild(data)

    def _rebuild(self, data: Path) -> None:
        # A crash can leave a half-written last line: keep every complete line before it.
        offset = 0
        with open(data, "rb") as fh:
            for line in fh:
                if not line.endswith(b"\n"):
                    log.warning("ignoring a truncated last line in %s", data)
                    break
                indices, _ = orjson.loads(line)
                self._chunks.append(_Chunk(offset, len(line), min(indices), len(indices)))
                offset += len(line)
                self._records += len(indices)
        self._size = offset
        if offset != data.stat().st_size:
            with open(data, "r+b") as fh:
                fh.truncate(offset)

    def __getstate__(self) -> dict[str, Any]:
        with self._lock:
            self._fh.flush()
            data = (self._dir / DATA_FILE).read_bytes()
        return {"data": data, "chunks": [tuple(c) for c in self._chunks]}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]  # a fresh temp folder owned by this copy
        self._fh.write(state["data"])
        self._fh.flush()
        self._chunks = [_Chunk(*c) for c in state["chunks"]]
        self._size = len(state["data"])
        self._records = sum(c.count for c in self._chunks)

    def __repr__(self) -> str:
        return f"OutputStore({self._records} outputs in {len(self._chunks)} batches)"
