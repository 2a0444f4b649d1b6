"""Record sources: a DataFrame, an iterable, or a .jsonl/.csv/.parquet file, read as a stream."""

from __future__ import annotations

import csv
import io
import itertools
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from lambdakit.errors import InvalidInput

__all__ = [
    "COUNT_LIMIT_BYTES",
    "BadLine",
    "describe_source",
    "iter_records",
    "only_finite_numbers",
    "records_from",
    "source_length",
]

_FILE_KINDS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
_CHUNK_ROWS = 10_000  # rows converted at once from DataFrames, CSV chunks and Parquet batches
# Files up to this size have their records counted before a run (a pass over a 1 GiB file
# takes about a second; JSONL at ~60 ns a line once cached), so the run knows its total.
COUNT_LIMIT_BYTES = 1 << 30


class BadLine:
    """A JSONL line that is not JSON, or a CSV row of the wrong width: a rejection, never a skip."""

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
        duplicated = sorted({str(c) for c in source.columns[source.columns.duplicated()]})
        if duplicated:
            # to_dict("records") would keep only the last column of each name, silently.
            raise InvalidInput(f"the DataFrame has duplicate column names {duplicated}")
        return _dataframe_records(source)
    if isinstance(source, (dict, bytes, bytearray)):
        raise InvalidInput(
            f"records must be a DataFrame, an iterable of records or a file path, not a "
            f"{type(source).__name__} (wrap a single record in a list)"
        )
    if isinstance(source, Iterable):
        return iter(source)
    raise InvalidInput(f"records of type {type(source).__name__} cannot be read")


def only_finite_numbers(source: Any) -> bool:
    """Whether the source cannot yield NaN or an infinity (JSONL: orjson refuses to parse them)."""
    if not isinstance(source, (str, os.PathLike)):
        return False
    return _FILE_KINDS.get(Path(source).suffix.lower()) == "jsonl"


def source_length(source: Any) -> int | None:
    """Number of records when cheap to know, else None.

    A DataFrame or sized iterable: its len(); Parquet: its metadata; a .jsonl/.csv file up to
    COUNT_LIMIT_BYTES: its records counted (non-blank lines; CSV rows after the header, a
    quoted field spanning lines counted once), as the readers will read them.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        kind = _FILE_KINDS.get(path.suffix.lower())
        if kind is None or not path.is_file():
            return None
        if kind == "parquet":
            return int(_parquet_file(path).metadata.num_rows)
        if path.stat().st_size > COUNT_LIMIT_BYTES:
            return None
        return _count_jsonl(path) if kind == "jsonl" else _count_csv(path)
    if isinstance(source, (dict, bytes, bytearray)):
        return None
    try:
        return len(source)
    except TypeError:
        return None


def describe_source(source: Any) -> dict[str, Any]:
    """What a run read, for its manifest: the file's kind and absolute path, or the type."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        kind = _FILE_KINDS.get(path.suffix.lower(), "file")
        return {"type": f"{kind} file", "path": str(path.resolve())}
    kind = type(source)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    if _is_dataframe(source):
        name = "pandas.DataFrame"
    return {"type": name}


def records_from(source: Any, start: int) -> Iterator[Any]:
    """The source's records from input position `start` on (read again, from the beginning
    for an iterable that cannot seek); BadLines as iter_records gives them."""
    if _is_dataframe(source):
        return _dataframe_records(source.iloc[start:])
    if isinstance(source, (list, tuple, range)):
        return iter(source[start:])
    return itertools.islice(iter_records(source), start, None)


def _count_jsonl(path: Path) -> int:
    with path.open("rb", buffering=1 << 20) as handle:
        return sum(1 for line in handle if not line.isspace())  # as _jsonl_records skips


def _count_csv(path: Path) -> int | None:
    try:
        with path.open("r", encoding="utf-8-sig", newline="") as handle:
            rows = _CsvRows(handle).records()
            if next(rows, None) is None:  # the header
                return 0
            return sum(1 for _ in rows)
    except (UnicodeDecodeError, csv.Error):
        return None  # unreadable: the reader will say why


def _jsonl_records(path: Path) -> Iterator[Any]:
    loads = orjson.loads
    # A large buffer: each read releases the GIL, and winning it back from busy worker
    # threads is what made small reads slow.
    with path.open("rb", buffering=1 << 20) as handle:
        for number, line in enumerate(handle, start=1):
            try:
                yield loads(line)
            except orjson.JSONDecodeError as exc:
                if not line.strip():
                    continue  # blank lines separate nothing in JSONL; they are not records
                text = line.decode("utf-8", "replace").rstrip("\r\n")
                yield BadLine(text, f"line {number} of {path.name} is not JSON: {exc}")


class _CsvRows:
    """A CSV file's records as raw text, each with its first line number and field count.

    Fields are counted without parsing where a line has no quote (a comma count), and by the
    csv module where it has one (a quoted field may hold commas and span lines).
    """

    def __init__(self, handle: Any) -> None:
        self._lines = iter(handle)
        self._taken: list[str] = []  # the lines the csv module consumed for one record
        self.line = 0  # physical lines read so far

    def _next_line(self) -> str:
        line = next(self._lines)
        self._taken.append(line)
        return line

    def _more(self) -> Iterator[str]:
        while True:
            try:
                yield self._next_line()
            except StopIteration:
                return

    def records(self) -> Iterator[tuple[str, int, int]]:
        """(text, first line, fields) of each record, blank lines skipped (pandas skips them)."""
        return (row for row in self if row[0].strip())

    def __iter__(self) -> Iterator[tuple[str, int, int]]:
        for line in self._lines:
            first = self.line + 1
            self.line += 1
            if '"' not in line:
                yield line, first, line.count(",") + 1
                continue
            self._taken = [line]
            fields = len(next(csv.reader(itertools.chain((line,), self._more()))))
            self.line += len(self._taken) - 1
            yield "".join(self._taken), first, fields


def _csv_records(path: Path) -> Iterator[Any]:
    """Rows typed by pandas, chunk by chunk; a row with too few or too many fields is a BadLine.

    pandas would fill a short row with NaN and stop the whole file at a long one, so the rows
    are counted first and only well-formed ones reach it, as their own text. Missing values
    (empty fields, pandas' NA markers) are None; integer columns stay integers (nullable
    dtypes, so a missing value does not turn 1 into 1.0).
    """
    import pandas as pd

    # Within Lambda's payload limit: a record cannot be bigger than that anyway.
    csv.field_size_limit(max(csv.field_size_limit(), 6_291_456))
    try:
        with path.open("r", encoding="utf-8-sig", newline="") as handle:
            rows = _CsvRows(handle).records()
            first = next(rows, None)
            if first is None:
                return  # an empty file holds no records, as an empty .jsonl does
            header, _, width = first
            if not header.endswith(("\n", "\r")):
                header += "\n"
            good: list[str] = []
            slots: list[BadLine | None] = []  # in file order: None for a good row
            for text, line, fields in rows:
                if fields == width:
                    good.append(text)
                    slots.append(None)
                else:
                    slots.append(
                        BadLine(
                            text.rstrip("\r\n"),
                            f"line {line} of {path.name} has {fields} "
                            f"field{'s' if fields != 1 else ''}, the header has {width}",
                        )
                    )
                if len(good) >= _CHUNK_ROWS:
                    yield from _csv_chunk(pd, path, header, good, slots)
                    good, slots = [], []
            if slots:
                yield from _csv_chunk(pd, path, header, good, slots)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInput(f"records file {path.name} is not readable CSV: {exc}") from exc


def _csv_chunk(
    pd: Any, path: Path, header: str, good: list[str], slots: list[BadLine | None]
) -> Iterator[Any]:
    records: Iterator[Any] = iter(())
    if good:
        if not good[-1].endswith(("\n", "\r")):
            good[-1] += "\n"
        text = io.StringIO(header + "".join(good))
        try:
            frame = pd.read_csv(text, dtype_backend="numpy_nullable")
        except pd.errors.ParserError as exc:
            raise InvalidInput(f"records file {path.name} is not readable CSV: {exc}") from exc
        records = iter(_missing_as_none(frame).to_dict("records"))
    for slot in slots:
        yield next(records) if slot is None else slot


def _parquet_file(path: Path) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise InvalidInput(
            f"records file {path.name} is not a readable Parquet file: {exc}"
        ) from exc


def _parquet_records(path: Path) -> Iterator[Any]:
    parquet = _parquet_file(path)
    for record_batch in parquet.iter_batches(batch_size=_CHUNK_ROWS):
        yield from record_batch.to_pylist()


def _missing_as_none(frame: Any) -> Any:
    """The frame with pandas' missing values as None in columns that are not float.

    A float column's NaN may be a real NaN (Encoding's `nan=` decides); in any other column
    (strings, objects, nullable integers) NaN, NA and NaT only ever mean "missing".
    """
    floats = {"f", "c"}  # numpy kinds whose NaN is a value
    missing = [
        column
        for column, dtype in frame.dtypes.items()
        if getattr(dtype, "kind", "O") not in floats and frame[column].hasnans
    ]
    if not missing:
        return frame
    frame = frame.copy(deep=False)
    for column in missing:
        values = frame[column]
        frame[column] = values.astype(object).where(values.notna(), None)
    return frame


def _dataframe_records(frame: Any) -> Iterator[Any]:
    for start in range(0, len(frame), _CHUNK_ROWS):
        chunk = _missing_as_none(frame.iloc[start : start + _CHUNK_ROWS])
        yield from chunk.to_dict("records")
