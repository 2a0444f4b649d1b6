"""Record sources -> streamed Batch objects, split by count and by serialised bytes (orjson)."""

from __future__ import annotations

import collections
import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from lambdakit.errors import InvalidInput, SourceError
from lambdakit.invocation import Batch
from lambdakit.records.datasets import Provenance
from lambdakit.records.encoding import OPTIONS, Encoding
from lambdakit.records.sources import BadLine, as_dataset, iter_records, only_finite_numbers
from lambdakit.records.validation import Rejection, Validator

__all__ = [
    "DEFAULT_MAX_BATCH_BYTES",
    "LAMBDA_PAYLOAD_LIMIT",
    "BatchStream",
    "Envelope",
    "ReadAhead",
    "dumps",
    "iter_batches",
    "split_batch",
    "sub_batch",
]

log = logging.getLogger("lambdakit.records.batching")

DEFAULT_MAX_BATCH_BYTES = 5_000_000
LAMBDA_PAYLOAD_LIMIT = 6_291_456  # synchronous Invoke request limit (413 above it)
_REPEATED_IDS_KEPT = 20  # repeated ids named in the warning and in BatchStream.repeated_ids


def dumps(value: Any, encoding: Encoding | None = None) -> bytes:
    """Serialise like a batch item (see records/encoding.py); InvalidInput if it cannot be."""
    return Encoding.coerce(encoding).dumps(value)


@dataclass(frozen=True)
class Envelope:
    """How items become a request body: `{"Items": [...]}`, BatchInput, or a `payload=` callable.

    `encoding`: how each value is serialised (Decimal form, NaN policy: records/encoding.py).
    """

    payload: Callable[[list[Any]], Any] | None = None
    batch_input: Any = None
    encoding: Encoding = field(default_factory=Encoding)
    _tail: bytes = field(init=False, repr=False, default=b"]}")

    def __post_init__(self) -> None:
        if self.payload is not None and not callable(self.payload):
            raise InvalidInput(f"payload must be a callable(items) -> dict, got {self.payload!r}")
        if not isinstance(self.encoding, Encoding):
            raise InvalidInput(f"encoding must be an Encoding, got {self.encoding!r}")
        if self.batch_input is not None:
            if not isinstance(self.batch_input, dict):
                raise InvalidInput("batch_input must be a dict (sent as BatchInput)")
            part, problem = self.encoding.encode(self.batch_input)
            if part is None:
                raise InvalidInput(f"batch_input cannot be sent: {problem}")
            object.__setattr__(self, "_tail", b'],"BatchInput":' + part + b"}")

    @property
    def overhead(self) -> int:
        """Bytes of the standard envelope around the comma-joined items."""
        return len(b'{"Items":[') + len(self._tail)

    def body(self, items: Sequence[Any], parts: Sequence[bytes] | None = None) -> bytes:
        """The request body for these items (`parts` = their serialised forms, if known)."""
        if self.payload is not None:
            # The user's callable fails mid-run: say which argument did, keeping the cause.
            try:
                shaped = self.payload(list(items))
            except Exception as exc:
                raise InvalidInput(
                    f"payload callable raised {type(exc).__name__}: {exc} "
                    f"(on a batch of {len(items)} items)"
                ) from exc
            if isinstance(shaped, bytes):
                return shaped
            body, problem = self.encoding.encode(shaped)
            if body is None:
                raise InvalidInput(f"payload callable returned what cannot be sent: {problem}")
            return body
        if parts is None:  # items already accepted once: their bytes come out the same
            parts = [self.encoding.dumps(item) for item in items]
        return b'{"Items":[' + b",".join(parts) + self._tail


class _SourceRaised(Exception):
    """The record source itself raised (not batching): carries the source's exception."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _guarded(records: Iterator[Any]) -> Iterator[Any]:
    """The source's records; an exception the source raises becomes _SourceRaised."""
    try:
        yield from records
    except Exception as exc:
        raise _SourceRaised(exc) from exc


class BatchStream(Iterator[Batch]):
    """Iterator of Batches that also counts records and fingerprints the dataset as it goes.

    With `id_field`, a batch never holds two records with the same id: a record whose id is
    already in the batch being built starts the next batch, since `batchItemFailures` could
    not say which of the two failed. Records without the field (or with None) are not split:
    no identifier can name them. The repeated ids are kept in `repeated_ids` (the first few)
    and counted in `repeated_id_records`, and a warning names the first.
    """

    def __init__(
        self,
        source: Any,
        *,
        batch_size: int,
        max_batch_bytes: int,
        envelope: Envelope,
        validator: Validator | None,
        on_reject: Callable[[Rejection], None] | None,
        id_field: str | None = None,
    ) -> None:
        self.records = 0  # records read so far, rejected ones included
        self.exhausted = False  # the source was read to its end (every record is in .records)
        self.rejected = 0
        self.id_field = id_field
        self.repeated_ids: list[str] = []  # the first ids seen twice within a batch
        self.repeated_id_records = 0  # records that started a new batch for their id
        self.batches = 0  # batches emitted so far; the next one's index
        self._sha = hashlib.sha256()
        self._on_reject = on_reject
        # Where each record of a file source came from (object, line, row): see datasets.py.
        self.provenance = Provenance()
        # Opened here, not lazily, so that a bad path or source type is reported at once.
        dataset = as_dataset(source)
        # The objects' versions (S3 ETag/VersionId, a file's size and mtime) count too: a
        # rewritten object is new data even where its records read the same.
        self._versions = dataset.versions_digest if dataset is not None else None
        records = _guarded(
            iter_records(dataset if dataset is not None else source, self.provenance)
        )
        self._finite = only_finite_numbers(
            dataset if dataset is not None else source
        )  # no NaN check needed (see _generate)
        self._iter = self._generate(records, batch_size, max_batch_bytes, envelope, validator)

    def __next__(self) -> Batch:
        return next(self._iter)

    @property
    def fingerprint(self) -> str:
        """sha256 over the serialised records read so far (complete once exhausted), and, for
        files, over each object's address and version."""
        if self._versions is None:
            return self._sha.hexdigest()
        return hashlib.sha256(f"{self._sha.hexdigest()}\n{self._versions}".encode()).hexdigest()

    def _note_repeated(self, key: str) -> None:
        self.repeated_id_records += 1
        if len(self.repeated_ids) < _REPEATED_IDS_KEPT and key not in self.repeated_ids:
            self.repeated_ids.append(key)
            if len(self.repeated_ids) == 1:
                log.warning(
                    "%s %r repeats within a batch: the batch is split so that each id is "
                    "unique (batchItemFailures names records by id)",
                    self.id_field,
                    key,
                )

    def _source_failed(self, failure: _SourceRaised, read: int) -> SourceError:
        cause = failure.cause
        return SourceError(
            f"the record source raised {type(cause).__name__}: {cause} (after {read:,} "
            f"records were read; the run stopped, its partial result is in .result)",
            records_read=read,
        )

    def _reject(self, index: int, reason: str, record: Any) -> None:
        self.rejected += 1
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
        # The hot loop of a run: locals, and no per-record attribute writes, on purpose.
        encoding = envelope.encoding
        serialise, default, options = orjson.dumps, encoding.default, OPTIONS
        # NaN and infinities come out of orjson as null: only a record whose bytes hold a
        # null is looked at more closely (see Encoding.encode, which this inlines). A JSONL
        # file cannot hold them, and its records skip even the search for a null.
        strict = encoding.strict and not self._finite
        closer_look, slowly = encoding.problem, encoding.encode_slowly
        # The fingerprint: every record's serialised bytes and a newline, in input order.
        # Hashed record by record: hashlib releases the GIL for inputs over 2 KB, and getting
        # it back from busy worker threads costs more than the hashing itself.
        digest = self._sha.update
        check = validator.check if validator is not None else None
        overhead = envelope.overhead
        indices: list[int] = []
        items: list[Any] = []
        parts: list[bytes] = []
        size = overhead - 1  # minus the comma the first item will not need
        id_field = self.id_field
        ids: set[str] = set()  # ids in the batch being built (with id_field only)
        cut = False  # the record's id is already in the batch: it starts the next one
        index = -1
        try:
            for index, record in enumerate(records):
                if type(record) is BadLine:
                    digest(record.text.encode() + b"\n")
                    self._reject(index, record.reason, record)  # kept as a BadLine, not text
                    continue
                try:
                    part = serialise(record, default=default, option=options)
                    # find(), not `in`: bytes.__contains__ first tries its argument as an int,
                    # and that failed attempt costs more than the search.
                    problem = None
                    if strict and part.find(b"null") >= 0:
                        problem = closer_look(record)
                except TypeError:  # orjson.JSONEncodeError included
                    part, problem = slowly(record)
                if problem is not None:
                    digest(f"\0{type(record).__name__}\n".encode())
                    self._reject(index, problem, record)
                    continue
                digest(part)
                digest(b"\n")
                n = len(part)
                reason = check(record) if check is not None else None
                if reason is None and overhead + n > max_batch_bytes:
                    reason = (
                        f"record is {n:,} bytes serialised ({overhead + n:,} with the request "
                        f"envelope), over max_batch_bytes={max_batch_bytes:,}"
                    )
                if reason is not None:
                    self._reject(index, reason, record)
                    continue
                key = None
                if id_field is not None and isinstance(record, dict):
                    value = record.get(id_field)
                    key = None if value is None else str(value)  # as reply.py matches ids
                    if key is not None and key in ids:
                        self._note_repeated(key)
                        cut = True
                # A first item always fits: the single-record check above guarantees it.
                if cut or len(items) >= batch_size or size + 1 + n > max_batch_bytes:
                    # Not index + 1: this record opens the next batch, and a run stopped now
                    # must not count a record that is in no batch (it would vanish unaccounted).
                    self.records = index
                    yield from self._emit(indices, items, parts, envelope, max_batch_bytes)
                    indices, items, parts, size = [], [], [], overhead - 1
                    ids.clear()
                    cut = False
                if key is not None:
                    ids.add(key)
                indices.append(index)
                items.append(record)
                parts.append(part)
                size += 1 + n
        except _SourceRaised as failure:
            # What was read before the source raised still goes out: every record read is
            # in a batch, and the error (with the partial result) ends the run after it.
            self.records = index + 1
            if items:
                yield from self._emit(indices, items, parts, envelope, max_batch_bytes)
            raise self._source_failed(failure, index + 1) from failure.cause
        self.records = index + 1
        self.exhausted = True
        if items:
            yield from self._emit(indices, items, parts, envelope, max_batch_bytes)

    def _emit(
        self,
        indices: list[int],
        items: list[Any],
        parts: list[bytes],
        envelope: Envelope,
        max_batch_bytes: int,
    ) -> Iterator[Batch]:
        body = envelope.body(items, parts)
        if len(body) <= max_batch_bytes:
            # Numbered as emitted: the halves of an over-large body are batches of their own.
            self.batches += 1  # before the yield: a consumer that stops here has counted it
            yield Batch(self.batches - 1, tuple(indices), items, body)
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
        yield from self._emit(indices[:mid], items[:mid], parts[:mid], envelope, max_batch_bytes)
        yield from self._emit(indices[mid:], items[mid:], parts[mid:], envelope, max_batch_bytes)


class ReadAhead:
    """The stream of batches, read a little ahead so that a freed slot never waits on batching."""

    def __init__(self, stream: BatchStream, ahead: int) -> None:
        self._iter: Iterator[Batch] = iter(stream)
        self._ready: collections.deque[Batch] = collections.deque()
        self._ahead = ahead
        self.exhausted = False  # nothing left to read (some may still be ready)
        # The source's SourceError, kept until the batches read before it are done: what
        # was read still goes out, and the engine raises it once nothing is left to settle.
        self.error: SourceError | None = None

    @property
    def empty(self) -> bool:
        """No batch left, read or unread."""
        return self.exhausted and not self._ready

    @property
    def running_low(self) -> bool:
        """Half or less of the batches to read ahead are ready, and more are left to read."""
        return not self.exhausted and len(self._ready) <= self._ahead // 2

    def take(self) -> Batch | None:
        """The next batch, or None at the end."""
        if self._ready:
            return self._ready.popleft()
        return None if self.exhausted else self._read()

    def take_ready(self) -> list[Batch]:
        """Every batch read ahead but not yet taken (a stopping run records them as not run)."""
        ready = list(self._ready)
        self._ready.clear()
        return ready

    def prefetch(self) -> bool:
        """Read one batch ahead if there is room; False when there is nothing to do."""
        if self.exhausted or len(self._ready) >= self._ahead:
            return False
        batch = self._read()
        if batch is not None:
            self._ready.append(batch)
        return batch is not None

    def _read(self) -> Batch | None:
        try:
            batch = next(self._iter, None)
        except SourceError as exc:  # the stream emitted every batch of what was read first
            self.error, batch = exc, None
        self.exhausted = batch is None
        return batch


def iter_batches(
    source: Any,
    *,
    batch_size: int = 100,
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    payload: Callable[[list[Any]], Any] | None = None,
    batch_input: dict[str, Any] | None = None,
    validator: Validator | None = None,
    on_reject: Callable[[Rejection], None] | None = None,
    id_field: str | None = None,
    encoding: Encoding | None = None,
) -> BatchStream:
    """Stream `source` as Batches; rejected records go to `on_reject` (or raise without one).

    `id_field`: no batch holds two records with the same value of that field (see
    BatchStream). `encoding`: the Decimal form and NaN policy (records/encoding.py). A
    source that raises ends the stream with SourceError (after the batch of what was read
    before it).

    >>> [b.body for b in iter_batches([1, 2, 3], batch_size=2)]
    [b'{"Items":[1,2]}', b'{"Items":[3]}']
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInput(f"batch_size must be an int >= 1, got {batch_size!r}")
    if not isinstance(max_batch_bytes, int) or not 64 <= max_batch_bytes <= LAMBDA_PAYLOAD_LIMIT:
        raise InvalidInput(
            f"max_batch_bytes must be a whole number of bytes from 64 to {LAMBDA_PAYLOAD_LIMIT:,} "
            f"(Lambda's synchronous request limit), got {max_batch_bytes!r}"
        )
    return BatchStream(
        source,
        batch_size=batch_size,
        max_batch_bytes=max_batch_bytes,
        envelope=Envelope(
            payload=payload, batch_input=batch_input, encoding=Encoding.coerce(encoding)
        ),
        validator=validator,
        on_reject=on_reject,
        id_field=id_field,
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
