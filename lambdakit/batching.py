"""Record sources -> streamed Batch objects, split by count and by serialised bytes (orjson)."""

from __future__ import annotations

import datetime as _dt
import decimal
import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from lambdakit.errors import InvalidInput
from lambdakit.validation import Rejection, Validator

__all__ = [
    "DEFAULT_MAX_BATCH_BYTES",
    "LAMBDA_PAYLOAD_LIMIT",
    "Batch",
    "BatchStream",
    "Envelope",
    "dumps",
    "iter_batches",
    "iter_records",
    "source_length",
    "split_batch",
    "sub_batch",
]

log = logging.getLogger("lambdakit.batching")

DEFAULT_MAX_BATCH_BYTES = 5_000_000
LAMBDA_PAYLOAD_LIMIT = 6_291_456  # synchronous Invoke request limit (413 above it)
_FILE_KINDS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
_CHUNK_ROWS = 10_000  # rows converted at once from DataFrames, CSV chunks and Parquet batches
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _default(value: Any) -> Any:
    """orjson fallback for what DataFrames and Parquet produce: NaT, Timestamps, Decimals."""
    if type(value).__name__ == "NaTType":
        return None
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return orjson.Fragment(str(value)) if value.is_finite() else None
    if isinstance(value, (set, frozenset)):
        return list(value)
    if hasattr(value, "tolist"):  # numpy/pyarrow leftovers the option flags do not cover
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def dumps(value: Any) -> bytes:
    """Serialise like a batch item: orjson, NaN -> null, timestamps -> ISO strings."""
    return orjson.dumps(value, default=_default, option=_OPTIONS)


@dataclass(frozen=True)
class Batch:
    """One request: its number in the run, the input index of each item, items, and the body."""

    index: int
    record_indices: tuple[int, ...]
    items: list[Any]
    body: bytes

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class Envelope:
    """How items become a request body: `{"Items": [...]}`, BatchInput, or a `payload=` callable."""

    payload: Callable[[list[Any]], Any] | None = None
    batch_input: Any = None
    _tail: bytes = field(init=False, repr=False, default=b"]}")

    def __post_init__(self) -> None:
        if self.payload is not None and not callable(self.payload):
            raise InvalidInput(f"payload must be a callable(items) -> dict, got {self.payload!r}")
        if self.batch_input is not None:
            if not isinstance(self.batch_input, dict):
                raise InvalidInput("batch_input must be a dict (sent as BatchInput)")
            tail = b'],"BatchInput":' + dumps(self.batch_input) + b"}"
            object.__setattr__(self, "_tail", tail)

    @property
    def overhead(self) -> int:
        """Bytes of the standard envelope around the comma-joined items."""
        return len(b'{"Items":[') + len(self._tail)

    def body(self, items: Sequence[Any], parts: Sequence[bytes] | None = None) -> bytes:
        """The request body for these items (`parts` = their serialised forms, if known)."""
        if self.payload is not None:
            shaped = self.payload(list(items))
            return shaped if isinstance(shaped, bytes) else dumps(shaped)
        if parts is None:
            parts = [dumps(item) for item in items]
        return b'{"Items":[' + b",".join(parts) + self._tail


class BatchStream(Iterator[Batch]):
    """Iterator of Batches that also counts records and fingerprints the dataset as it goes."""

    def __init__(
        self,
        source: Any,
        *,
        batch_size: int,
        max_batch_bytes: int,
        envelope: Envelope,
        validator: Validator | None,
        on_reject: Callable[[Rejection], None] | None,
    ) -> None:
        self.records = 0  # records read so far, rejected ones included
        self.rejected = 0
        self._hash = hashlib.sha256()
        self._on_reject = on_reject
        # Opened here, not lazily, so that a bad path or source type is reported at once.
        records = iter_records(source)
        self._iter = self._generate(records, batch_size, max_batch_bytes, envelope, validator)

    def __next__(self) -> Batch:
        return next(self._iter)

    @property
    def fingerprint(self) -> str:
        """sha256 over the serialised records read so far (complete once exhausted)."""
        return self._hash.hexdigest()

    def _reject(self, index: int, reason: str, record: Any, pending: list[bytes]) -> None:
        self.rejected += 1
        pending.append(b"!" + reason.encode())
        if self._on_reject is None:
            raise InvalidInput(f"record {index} was rejected: {reason}")
        self._on_reject(Rejection(index=index, reason=reason, input=record))

    def _generate(
        self,
        records: Iterator[Any],
        batch_size: int,
        max_batch_bytes: int,
        envelope: Envelope,
        validator: Validator | None,
    ) -> Iterator[Batch]:
        overhead = envelope.overhead
        batch_index = 0
        indices: list[int] = []
        items: list[Any] = []
        parts: list[bytes] = []
        size = overhead - 1  # minus the comma the first item will not need
        pending: list[bytes] = []  # serialised records not yet hashed, in input order
        for index, record in enumerate(records):
            self.records += 1
            if isinstance(record, _BadLine):
                self._reject(index, record.reason, record.text, pending)
                continue
            try:
                part = dumps(record)
            except (TypeError, orjson.JSONEncodeError) as exc:
                self._reject(index, f"not JSON-serialisable: {exc}", record, pending)
                continue
            pending.append(part)
            if validator is not None:
                reason = validator.check(record)
                if reason is not None:
                    self._reject(index, reason, record, pending)
                    continue
            if overhead + len(part) > max_batch_bytes:
                reason = (
                    f"record is {len(part):,} bytes serialised ({overhead + len(part):,} with "
                    f"the request envelope), over max_batch_bytes={max_batch_bytes:,}"
                )
                self._reject(index, reason, record, pending)
                continue
            if items and (len(items) >= batch_size or size + 1 + len(part) > max_batch_bytes):
                self._flush_hash(pending)
                yield from self._emit(batch_index, indices, items, parts, envelope, max_batch_bytes)
                batch_index += 1
                indices, items, parts, size = [], [], [], overhead - 1
            indices.append(index)
            items.append(record)
            parts.append(part)
            size += 1 + len(part)
        self._flush_hash(pending)
        if items:
            yield from self._emit(batch_index, indices, items, parts, envelope, max_batch_bytes)

    def _flush_hash(self, pending: list[bytes]) -> None:
        # One update per batch rather than per record: the joined stream is the same.
        if pending:
            self._hash.update(b"\n".join(pending) + b"\n")
            pending.clear()

    def _emit(
        self,
        batch_index: int,
        indices: list[int],
        items: list[Any],
        parts: list[bytes],
        envelope: Envelope,
        max_batch_bytes: int,
    ) -> Iterator[Batch]:
        body = envelope.body(items, parts)
        if len(body) <= max_batch_bytes:
            yield Batch(batch_index, tuple(indices), items, body)
            return
        # Only a payload= callable can make the body bigger than the sum of its parts.
        if len(items) == 1:
            reason = (
                f"the payload= callable made a {len(body):,}-byte request for this record, "
                f"over max_batch_bytes={max_batch_bytes:,}"
            )
            self.rejected += 1
            if self._on_reject is None:
                raise InvalidInput(f"record {indices[0]} was rejected: {reason}")
            self._on_reject(Rejection(index=indices[0], reason=reason, input=items[0]))
            return
        mid = len(items) // 2
        yield from self._emit(
            batch_index, indices[:mid], items[:mid], parts[:mid], envelope, max_batch_bytes
        )
        yield from self._emit(
            batch_index, indices[mid:], items[mid:], parts[mid:], envelope, max_batch_bytes
        )


class _BadLine:
    """A JSONL line that is not JSON: becomes a rejection, never a silent skip."""

    __slots__ = ("reason", "text")

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        self.reason = reason


def _file_kind(path: Path) -> str:
    kind = _FILE_KINDS.get(path.suffix.lower())
    if kind is None:
        raise InvalidInput(
            f"records path {str(path)!r} has an unsupported suffix; use one of "
            f"{sorted(_FILE_KINDS)} or pass a DataFrame / iterable"
        )
    if not path.is_file():
        raise InvalidInput(f"records path {str(path)!r} does not exist or is not a file")
    return kind


def _is_dataframe(source: Any) -> bool:
    return type(source).__name__ == "DataFrame" and type(source).__module__.startswith("pandas")


def iter_records(source: Any) -> Iterator[Any]:
    """Stream records from a DataFrame, an iterable, or a .jsonl/.csv/.parquet path."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        kind = _file_kind(path)
        if kind == "jsonl":
            return _jsonl_records(path)
        if kind == "csv":
            return _csv_records(path)
        return _parquet_records(path)
    if _is_dataframe(source):
        return _dataframe_records(source)
    if isinstance(source, (dict, bytes, bytearray)):
        raise InvalidInput(
            f"records must be a DataFrame, an iterable of records or a file path, not a "
            f"{type(source).__name__} (wrap a single record in a list)"
        )
    if isinstance(source, Iterable):
        return iter(source)
    raise InvalidInput(f"records of type {type(source).__name__} cannot be read")


def source_length(source: Any) -> int | None:
    """Number of records when cheap to know (DataFrame, sized iterable, Parquet), else None."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.suffix.lower() == ".parquet" and path.is_file():
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(path).metadata.num_rows)
        return None
    try:
        return len(source)
    except TypeError:
        return None


def _jsonl_records(path: Path) -> Iterator[Any]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue  # blank lines separate nothing in JSONL; they are not records
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                text = line.decode("utf-8", "replace").rstrip("\r\n")
                yield _BadLine(text, f"line {number} of {path.name} is not JSON: {exc}")


def _csv_records(path: Path) -> Iterator[Any]:
    import pandas as pd

    with pd.read_csv(path, chunksize=_CHUNK_ROWS) as reader:
        for chunk in reader:
            yield from chunk.to_dict("records")


def _parquet_records(path: Path) -> Iterator[Any]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    for record_batch in parquet.iter_batches(batch_size=_CHUNK_ROWS):
        yield from record_batch.to_pylist()


def _dataframe_records(frame: Any) -> Iterator[Any]:
    for start in range(0, len(frame), _CHUNK_ROWS):
        yield from frame.iloc[start : start + _CHUNK_ROWS].to_dict("records")


def iter_batches(
    source: Any,
    *,
    batch_size: int = 100,
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    payload: Callable[[list[Any]], Any] | None = None,
    batch_input: dict[str, Any] | None = None,
    validator: Validator | None = None,
    on_reject: Callable[[Rejection], None] | None = None,
) -> BatchStream:
    """Stream `source` as Batches; rejected records go to `on_reject` (or raise without one).

    >>> [b.body for b in iter_batches([1, 2, 3], batch_size=2)]
    [b'{"Items":[1,2]}', b'{"Items":[3]}']
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInput(f"batch_size must be an int >= 1, got {batch_size!r}")
    if not isinstance(max_batch_bytes, int) or not 64 <= max_batch_bytes <= LAMBDA_PAYLOAD_LIMIT:
        raise InvalidInput(
            f"max_batch_bytes must be between 64 and {LAMBDA_PAYLOAD_LIMIT:,} (Lambda's "
            f"synchronous request limit), got {max_batch_bytes!r}"
        )
    return BatchStream(
        source,
        batch_size=batch_size,
        max_batch_bytes=max_batch_bytes,
        envelope=Envelope(payload=payload, batch_input=batch_input),
        validator=validator,
        on_reject=on_reject,
    )


def split_batch(batch: Batch, envelope: Envelope | None = None) -> tuple[Batch, Batch]:
    """Bisect a batch (after a 413): two halves that keep the batch index."""
    if len(batch.items) < 2:
        raise InvalidInput(f"batch {batch.index} has a single record and cannot be split")
    mid = len(batch.items) // 2
    return sub_batch(batch, range(mid), envelope), sub_batch(
        batch, range(mid, len(batch.items)), envelope
    )


def sub_batch(batch: Batch, positions: Iterable[int], envelope: Envelope | None = None) -> Batch:
    """The batch restricted to `positions` (0-based within it): to retry only failed items."""
    chosen = sorted(set(positions))
    if not chosen or chosen[0] < 0 or chosen[-1] >= len(batch.items):
        raise InvalidInput(f"positions {chosen} are not within batch {batch.index}")
    items = [batch.items[p] for p in chosen]
    body = (envelope or Envelope()).body(items)
    return Batch(batch.index, tuple(batch.record_indices[p] for p in chosen), items, body)
