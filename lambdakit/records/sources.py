"""Record sources: a DataFrame, an iterable, or files (path, folder, glob, Dataset), streamed."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from typing import Any

from lambdakit.errors import InvalidInput
from lambdakit.records.datasets import (
    COUNT_LIMIT_BYTES,
    Dataset,
    Provenance,
    format_of,
    is_s3_url,
    local_dataset,
)
from lambdakit.records.formats import CHUNK_ROWS, BadLine, missing_as_none

__all__ = [
    "COUNT_LIMIT_BYTES",
    "BadLine",
    "as_dataset",
    "describe_source",
    "iter_records",
    "only_finite_numbers",
    "records_from",
    "source_length",
]


def as_dataset(source: Any) -> Dataset | None:
    """The Dataset a source names (a local path, folder or glob; a Dataset), else None.

    An s3:// URL is opened from above (aws/s3.py, with the run's AWS session): here it is an
    InvalidInput saying so.
    """
    if isinstance(source, Dataset):
        return source
    if isinstance(source, (str, os.PathLike)):
        if is_s3_url(source):
            raise InvalidInput(
                f"records {source!r} is an S3 URL: pass it to run() / start() (or open it "
                f"with lambdakit.aws.s3.open_dataset), which read it with the run's AWS session"
            )
        return local_dataset(source)
    return None


def _is_dataframe(source: Any) -> bool:
    return type(source).__name__ == "DataFrame" and type(source).__module__.startswith("pandas")


def iter_records(source: Any, provenance: Provenance | None = None) -> Iterator[Any]:
    """Stream records from a DataFrame, an iterable, or files (path, folder, glob, Dataset).

    `provenance` (files only) notes the object, line and row each record came from.
    """
    dataset = as_dataset(source)
    if dataset is not None:
        return dataset.records(provenance)
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
    if isinstance(source, Dataset):
        return source.finite_numbers_only
    if not isinstance(source, (str, os.PathLike)) or is_s3_url(source):
        return False
    try:
        return format_of(os.fspath(source))[0] == "jsonl" and not os.path.isdir(source)
    except InvalidInput:
        return False


def source_length(source: Any) -> int | None:
    """Number of records when cheap to know, else None.

    A DataFrame or sized iterable: its len(); files: Parquet footers, and local .jsonl/.csv
    files up to COUNT_LIMIT_BYTES in all counted (non-blank lines; CSV rows after the
    header, a quoted field spanning lines counted once), as the readers will read them.
    """
    if isinstance(source, (str, os.PathLike, Dataset)):
        try:
            dataset = as_dataset(source)
        except InvalidInput:
            return None
        return dataset.length() if dataset is not None else None
    if isinstance(source, (dict, bytes, bytearray)):
        return None
    try:
        return len(source)
    except TypeError:
        return None


def describe_source(source: Any) -> dict[str, Any]:
    """What a run read, for its manifest: the files (kind and path), or the type."""
    if isinstance(source, (str, os.PathLike, Dataset)):
        try:
            dataset = as_dataset(source)
        except InvalidInput:
            dataset = None
        if dataset is not None:
            return dataset.describe()
        return {"type": "file", "path": os.fspath(source)}
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
    dataset = as_dataset(source)
    if dataset is not None:
        return dataset.records(start=start)
    return itertools.islice(iter_records(source), start, None)


def _dataframe_records(frame: Any) -> Iterator[Any]:
    for start in range(0, len(frame), CHUNK_ROWS):
        chunk = missing_as_none(frame.iloc[start : start + CHUNK_ROWS])
        yield from chunk.to_dict("records")
