"""Record sources: a DataFrame, an iterable, or a .jsonl/.csv/.parquet file, read as a stream."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from lambdakit.errors import InvalidInput

__all__ = ["BadLine", "iter_records", "source_length"]

_FILE_KINDS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
_CHUNK_ROWS = 10_000  # rows converted at once from DataFrames, CSV chunks and Parquet batches


class BadLine:
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


def source_length(source: Any) -> int | None:
    """Number of records when cheap to know (DataFrame, sized iterable, Parquet), else None."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.suffix.lower() == ".parquet" and path.is_file():
            return int(_parquet_file(path).metadata.num_rows)
        return None
    try:
        return len(source)
    except TypeError:
        return None


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


def _csv_records(path: Path) -> Iterator[Any]:
    import pandas as pd

    try:
        with pd.read_csv(path, chunksize=_CHUNK_ROWS) as reader:
            for chunk in reader:
                yield from chunk.to_dict("records")
    except pd.errors.EmptyDataError:
        return  # an empty file holds no records, as an empty .jsonl does
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"records file {path.name} is not readable CSV: {exc}") from exc


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


def _dataframe_records(frame: Any) -> Iterator[Any]:
    for start in range(0, len(frame), _CHUNK_ROWS):
        yield from frame.iloc[start : start + _CHUNK_ROWS].to_dict("records")
