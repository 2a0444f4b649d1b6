"""The readers of each file format, over an open binary stream: JSONL, CSV, Parquet, JSON array.

Each reader streams (a line or a row at a time; CSV as pandas types it and Parquet a chunk
or a row group at a time) and yields records, or a BadLine for a line or element that cannot
be a record. CSV cells become values by `csv_types` (see csv_records): by default a number
only where that number writes back as the cell, else the cell's own text. `lines` (optional)
receives (record offset, line number) pairs where the line of a record is not the previous
one's plus one (blank lines, a quoted CSV field over several lines), so that a record's
line in its file can be found again (see datasets.Provenance).
"""

from __future__ import annotations

import csv
import decimal
import io
import re
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO

import orjson

from lambdakit.errors import InvalidInput
from lambdakit.records.encoding import (
    NUMBER_CLASSES,
    NUMBER_LONG_RUN,
    NUMBER_TINY,
    exact_loads,
    loads_exact,
    loses_digits,
)

__all__ = [
    "CHUNK_ROWS",
    "CSV_TYPES",
    "BadLine",
    "check_csv_types",
    "count_csv",
    "count_jsonl",
    "csv_records",
    "exact_cell",
    "json_array_records",
    "jsonl_records",
    "missing_as_none",
    "parquet_file",
    "parquet_records",
]

CHUNK_ROWS = 10_000  # rows converted at once from DataFrames, CSV chunks and Parquet batches
CSV_TYPES = ("exact", "text", "pandas")  # how CSV cells become values (csv_records)
_READ_BYTES = 1 << 20


class BadLine:
    """A JSONL line that is not JSON, or a CSV row of the wrong width: a rejection, never a skip.

    It is what a run keeps as such a record's input (its `failed_records()`), so a rerun of
    those rejects it again with its reason instead of sending its text as a string record.
    """

    __slots__ = ("reason", "text")

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        self.reason = reason

    def __eq__(self, other: object) -> bool:
        if type(other) is not BadLine:
            return NotImplemented
        return (self.text, self.reason) == (other.text, other.reason)

    def __hash__(self) -> int:
        return hash((self.text, self.reason))

    def __repr__(self) -> str:
        return f"BadLine({self.text!r}, reason={self.reason!r})"


def count_jsonl(handle: BinaryIO) -> int:
    """Records of a JSONL stream, as jsonl_records reads them (non-blank lines)."""
    return sum(1 for line in handle if not line.isspace())


def jsonl_records(
    handle: BinaryIO, name: str, lines: list[tuple[int, int]] | None = None
) -> Iterator[Any]:
    """One record per non-blank line; a line that is not JSON is a BadLine naming its number."""
    loads, classes = orjson.loads, NUMBER_CLASSES  # the hot loop
    long_run, tiny = NUMBER_LONG_RUN, NUMBER_TINY
    records = 0
    skipped = False  # a blank line was skipped since the last record
    for number, line in enumerate(handle, start=1):
        try:
            record = loads(line)
            mapped = line.translate(classes)  # encoding.may_lose, inlined
            if (long_run in mapped or tiny in mapped) and loses_digits(line, record):
                record = exact_loads(line)
        except orjson.JSONDecodeError as exc:
            if not line.strip():
                skipped = True
                continue  # blank lines separate nothing in JSONL; they are not records
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            record = BadLine(text, f"line {number} of {name} is not JSON: {exc}")
        if skipped:
            if lines is not None:
                lines.append((records, number))
            skipped = False
        records += 1
        yield record


class _CsvRows:
    """A CSV file's records as raw text, each with its first line number and its fields.

    A line without a quote is split at its commas; the csv module parses a line with one (a
    quoted field may hold commas and span lines). `split=False` gives only the field count
    (a comma count where there is no quote), for counting records.
    """

    def __init__(self, handle: Any, split: bool = True) -> None:
        self._lines = iter(handle)
        self._split = split
        self._taken: list[str] = []  # the lines the csv module consumed for one record
        self._pending: str | None = None  # the line the csv module's next record starts with
        # One reader for the file: making one per quoted line cost more than the parsing.
        self._reader = csv.reader(self._feed())
        self.line = 0  # physical lines read so far

    def _feed(self) -> Iterator[str]:
        """The csv module's lines: a record's first line (pending), then further lines."""
        lines = self._lines
        while True:
            line = self._pending
            if line is None:  # a quoted field goes on: the next physical line
                line = next(lines, None)
                if line is None:
                    return
                self._taken.append(line)
            else:
                self._pending = None
            yield line

    def records(self, csv_types: str) -> Iterator[tuple[str, int, Any]]:
        """(text, first line, fields or their count) of the header, then of each record.

        Lines before the header that hold only whitespace are skipped. After it, "pandas"
        skips such lines as pandas does; "exact" and "text" skip only empty lines, as the
        csv module does: a line of spaces is a row (a record in a one-column file, else a
        row of the wrong width), never a record dropped unseen.
        """
        rows = iter(self)
        for row in rows:
            if row[0].strip():
                yield row  # the header
                break
        if csv_types == "pandas":
            yield from (row for row in rows if row[0].strip())
        else:
            yield from (row for row in rows if row[0].strip("\r\n"))

    def __iter__(self) -> Iterator[tuple[str, int, Any]]:
        split = self._split
        for line in self._lines:
            self.line += 1
            if '"' not in line:
                fields = line.rstrip("\r\n").split(",") if split else line.count(",") + 1
                yield line, self.line, fields
                continue
            first = self.line
            self._taken = [line]
            self._pending = line
            parsed = next(self._reader)
            self.line += len(self._taken) - 1
            yield "".join(self._taken), first, parsed if split else len(parsed)


# The first character of a cell that may be a number: a digit or a minus sign.
_NUMBER_START = frozenset("-0123456789")
# A number with a fraction or an exponent, as JSON writes numbers (no "+", ".5", "inf").
_FRACTION = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+(?:[eE][-+]?[0-9]+)?|[eE][-+]?[0-9]+)")


def exact_cell(cell: str) -> Any:
    """A CSV cell as csv_types="exact" reads it (see csv_records): None, a number, or its text."""
    if not cell:
        return None
    if cell[0] not in _NUMBER_START:
        return cell
    return _exact_number_cell(cell)


def _exact_number_cell(cell: str) -> Any:
    """A cell starting with a digit or "-": a number only when it writes back as the cell."""
    digits = cell if cell[0] != "-" else cell[1:]
    if digits.isdigit():
        if not digits.isascii() or (digits[0] == "0" and cell != "0"):
            return cell  # "007", "-0", "-01", other scripts' digits: text
        try:
            return int(cell)
        except ValueError:  # beyond Python's int-from-text limit (4300 digits)
            return cell
    if _FRACTION.fullmatch(cell) is None:
        return cell  # "2024-03-01", "1.5.3", "12 kg": text
    value = float(cell)
    if repr(value) == cell:
        return value  # "0.1", "2.5", "1e+100": the float writes back as the cell
    exact = decimal.Decimal(cell)
    if str(exact) == cell:
        return exact  # "19.90", "12345678901234567.89": digits a float would change
    return cell  # "1e5", "0.0000001": a number Python writes otherwise, kept as written


def check_csv_types(csv_types: Any) -> str:
    """csv_types itself, or InvalidInput naming the choices."""
    if csv_types not in CSV_TYPES:
        raise InvalidInput(
            f"csv_types must be one of {', '.join(map(repr, CSV_TYPES))} (how CSV cells are "
            f"typed: numbers only where exact, every cell as text, or as pandas infers them), "
            f"got {csv_types!r}"
        )
    return str(csv_types)


def count_csv(handle: BinaryIO, csv_types: str = "exact") -> int | None:
    """Records of a CSV stream (rows after the header, as csv_records reads them with
    `csv_types`); None when it is not readable CSV."""
    try:
        text = io.TextIOWrapper(handle, encoding="utf-8-sig", newline="")
        rows = _CsvRows(text, split=False).records(csv_types)
        if next(rows, None) is None:  # the header
            return 0
        return sum(1 for _ in rows)
    except (UnicodeDecodeError, csv.Error):
        return None  # unreadable: the reader will say why


def csv_records(
    handle: BinaryIO,
    name: str,
    lines: list[tuple[int, int]] | None = None,
    csv_types: str = "exact",
) -> Iterator[Any]:
    """A dict per row, its cells typed by `csv_types`; a row of the wrong width is a BadLine.

    "exact" (the default): an empty cell is None; a cell is an int, a float or a Decimal only
    when that number, written back, is the cell's text ("42", "0.1", "19.90"); any other cell
    is its text ("007", "+5", "1e5", "NA", "2024-03-01"). "text": every cell is its text, ""
    included. "pandas": read_csv's inference, chunk by chunk, with nullable dtypes (integer
    columns stay integers; empty cells and pandas' NA markers are None; floats may round).

    Fields are counted per row first, so a short or long row is a BadLine naming its line,
    never padded with missing values or the end of the file; a header naming a column twice
    is an InvalidInput (one of the two values would be lost).
    """
    check_csv_types(csv_types)
    # Within Lambda's payload limit: a record cannot be bigger than that anyway.
    csv.field_size_limit(max(csv.field_size_limit(), 6_291_456))
    try:
        text = io.TextIOWrapper(handle, encoding="utf-8-sig", newline="")
        reader = _CsvRows(text)
        rows = reader.records(csv_types)
        first = next(rows, None)
        if first is None:
            return  # an empty file holds no records, as an empty .jsonl does
        header_text, _, header = first
        _check_header(header, name)
        if csv_types == "pandas":
            yield from _pandas_rows(reader, rows, header_text, len(header), name, lines)
        else:
            yield from _exact_rows(reader, rows, header, name, lines, csv_types == "exact")
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInput(f"records file {name} is not readable CSV: {exc}") from exc


def _check_header(header: list[str], name: str) -> None:
    seen: set[str] = set()
    for column in header:
        if column in seen:
            raise InvalidInput(
                f"records file {name} names the column {column!r} twice in its header: "
                f"each row would keep only one of the two values"
            )
        seen.add(column)


def _bad_width(row: str, line: int, fields: int, width: int, name: str) -> BadLine:
    return BadLine(
        row.rstrip("\r\n"),
        f"line {line} of {name} has {fields} field{'s' if fields != 1 else ''}, "
        f"the header has {width}",
    )


def _exact_rows(
    reader: _CsvRows,
    rows: Iterator[tuple[str, int, Any]],
    header: list[str],
    name: str,
    lines: list[tuple[int, int]] | None,
    typed: bool,
) -> Iterator[Any]:
    """csv_types "exact" (typed) or "text": one row at a time, typed cell by cell."""
    width = len(header)
    starts, number = _NUMBER_START, _exact_number_cell  # the hot loop
    expected = 2  # the line the next record starts on, if nothing is skipped (Provenance's)
    for offset, (row, line, fields) in enumerate(rows):
        if line != expected and lines is not None:
            lines.append((offset, line))
        expected = reader.line + 1
        if len(fields) != width:
            yield _bad_width(row, line, len(fields), width, name)
        elif typed:
            values = [
                cell if cell and cell[0] not in starts else number(cell) if cell else None
                for cell in fields
            ]
            yield dict(zip(header, values, strict=True))
        else:
            yield dict(zip(header, fields, strict=True))


def _pandas_rows(
    reader: _CsvRows,
    rows: Iterator[tuple[str, int, Any]],
    header: str,
    width: int,
    name: str,
    lines: list[tuple[int, int]] | None,
) -> Iterator[Any]:
    """csv_types "pandas": well-formed rows reach read_csv as their own text, a chunk at a time.

    pandas would fill a short row with NaN and stop the whole file at a long one, so only
    rows of the header's width reach it.
    """
    import pandas as pd

    if not header.endswith(("\n", "\r")):
        header += "\n"
    good: list[str] = []
    slots: list[BadLine | None] = []  # in file order: None for a good row
    expected = 2
    for offset, (row, line, fields) in enumerate(rows):
        if line != expected and lines is not None:
            lines.append((offset, line))
        expected = reader.line + 1
        if len(fields) == width:
            good.append(row)
            slots.append(None)
        else:
            slots.append(_bad_width(row, line, len(fields), width, name))
        if len(good) >= CHUNK_ROWS:
            yield from _csv_chunk(pd, name, header, good, slots)
            good, slots = [], []
    if slots:
        yield from _csv_chunk(pd, name, header, good, slots)


def _csv_chunk(
    pd: Any, name: str, header: str, good: list[str], slots: list[BadLine | None]
) -> Iterator[Any]:
    records: Iterator[Any] = iter(())
    if good:
        if not good[-1].endswith(("\n", "\r")):
            good[-1] += "\n"
        text = io.StringIO(header + "".join(good))
        try:
            frame = pd.read_csv(text, dtype_backend="numpy_nullable")
        except pd.errors.ParserError as exc:
            raise InvalidInput(f"records file {name} is not readable CSV: {exc}") from exc
        records = iter(missing_as_none(frame).to_dict("records"))
    for slot in slots:
        yield next(records) if slot is None else slot


def parquet_file(handle: Any, name: str) -> Any:
    """A pyarrow ParquetFile over a path or a seekable binary file; InvalidInput naming `name`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(handle)
    except (pa.ArrowException, OSError) as exc:
        raise InvalidInput(f"records file {name} is not a readable Parquet file: {exc}") from exc


def parquet_records(handle: Any, name: str, columns: Sequence[str] | None = None) -> Iterator[Any]:
    """Rows as dicts, one row group at a time, reading only `columns` (all when None)."""
    import pyarrow as pa

    parquet = parquet_file(handle, name)
    if columns is not None:
        present = set(parquet.schema_arrow.names)
        missing = [c for c in columns if c not in present]
        if missing:
            raise InvalidInput(
                f"records file {name} has no column {missing[0]!r} (columns= asked for "
                f"{list(columns)}; it has {parquet.schema_arrow.names})"
            )
    wanted = list(columns) if columns is not None else None
    for group in range(parquet.num_row_groups):
        try:
            table = parquet.read_row_group(group, columns=wanted)
        except (pa.ArrowException, OSError) as exc:
            raise InvalidInput(
                f"records file {name} is not a readable Parquet file (row group {group}): {exc}"
            ) from exc
        for record_batch in table.to_batches(max_chunksize=CHUNK_ROWS):
            yield from record_batch.to_pylist()
        del table  # one row group in memory at a time


# The bytes that change a JSON scanner's state: brackets, braces, commas, quotes, backslashes.
_STRUCTURE = re.compile(rb'[\[\]{},"\\]')


def json_array_records(handle: BinaryIO, name: str) -> Iterator[Any]:
    """The elements of a file holding one JSON array, each parsed on its own (streamed).

    The array is cut at its top-level commas by a scan of its structural bytes, so the file
    is never held whole; an element that is not JSON is a BadLine naming its position.
    """
    depth = 0  # nesting: 1 inside the array itself
    in_string = False
    skip_at = -1  # a position whose byte a backslash escaped
    pending = bytearray()  # the current element's bytes from earlier chunks
    start = 0  # where the current element begins in this chunk
    element = 0
    done = False
    prefix_ok = True
    while True:
        chunk = handle.read(_READ_BYTES)
        if not chunk:
            break
        start = 0
        for match in _STRUCTURE.finditer(chunk):
            at = match.start()
            if at == skip_at:
                continue
            char = chunk[at]
            if done:
                raise InvalidInput(f"records file {name} has more after its JSON array")
            if in_string:
                if char == 0x5C:  # backslash
                    skip_at = at + 1
                elif char == 0x22:
                    in_string = False
                continue
            if depth == 0:
                if chunk[:at].strip() or pending.strip() or char != 0x5B:
                    prefix_ok = False
                    break
                depth, start = 1, at + 1
                pending.clear()
                continue
            if char == 0x22:
                in_string = True
            elif char in (0x5B, 0x7B):
                depth += 1
            elif char in (0x5D, 0x7D):
                depth -= 1
                if depth == 0:
                    text = bytes(pending + chunk[start:at]).strip()
                    pending.clear()
                    if text or element:
                        element += 1
                        yield _json_element(text, element, name)
                    done = True
                    start = at + 1
            elif char == 0x2C and depth == 1:
                element += 1
                yield _json_element(bytes(pending + chunk[start:at]).strip(), element, name)
                pending.clear()
                start = at + 1
        if not prefix_ok:
            break
        skip_at = 0 if skip_at == len(chunk) else -1
        if done:
            if chunk[start:].strip():
                raise InvalidInput(f"records file {name} has more after its JSON array")
        elif depth:
            pending += chunk[start:]
        else:
            pending += chunk  # before the array: only whitespace may come
    if not prefix_ok or (not done and (depth or pending.strip())):
        raise InvalidInput(
            f"records file {name} does not hold a JSON array (a .json file must be one array "
            f"of records: use .jsonl for one record per line)"
        )
    if not done and element == 0 and not pending.strip():
        return  # an empty file holds no records


def _json_element(text: bytes, number: int, name: str) -> Any:
    try:
        return loads_exact(text)
    except orjson.JSONDecodeError as exc:
        shown = text.decode("utf-8", "replace")
        return BadLine(shown, f"element {number} of the array in {name} is not JSON: {exc}")


def missing_as_none(frame: Any) -> Any:
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
