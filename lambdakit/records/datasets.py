"""Datasets: files or stored objects (a path, a folder, a glob, an S3 prefix) read as one source.

A Dataset is an ordered list of SourceObjects, each with its format and compression taken
from its name and a version (mtime and size locally, ETag/VersionId on S3) that the dataset
fingerprint covers. Reading streams one object after another; a Provenance notes where
each record came from (object, line, row), so a bad line can be found in the source.
The objects themselves are opened by callables the SourceObject carries: this wing never
talks to S3 (aws/s3.py lists and opens objects, from above).
"""

from __future__ import annotations

import bisect
import bz2
import functools
import glob
import gzip
import hashlib
import io
import logging
import os
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from lambdakit.errors import InvalidInput
from lambdakit.records.formats import (
    check_csv_types,
    count_csv,
    count_jsonl,
    csv_records,
    json_array_records,
    jsonl_records,
    parquet_file,
    parquet_records,
)

__all__ = [
    "COMPRESSIONS",
    "COUNT_LIMIT_BYTES",
    "FORMATS",
    "Dataset",
    "Provenance",
    "SourceObject",
    "check_formats",
    "format_of",
    "is_location",
    "is_s3_url",
    "local_dataset",
    "locate",
]

log = logging.getLogger("lambdakit.records.datasets")

FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".json": "json",
}
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}
# Files up to this size have their records counted before a run (a pass over a 1 GiB file
# takes about a second; JSONL at ~60 ns a line once cached), so the run knows its total.
COUNT_LIMIT_BYTES = 1 << 30
_BUFFER = 1 << 20
_FOOTER_READERS = 8  # Parquet footers read at once from S3 to count a dataset's rows
_COMPRESSED_RATIO = 8  # what gzip/bz2/zstd JSONL and CSV typically expand to
# The first line of a record at offset 0, when nothing is skipped (CSV: after its header).
_FIRST_LINE = {"jsonl": 1, "csv": 2}


def is_s3_url(value: Any) -> bool:
    """Whether `value` is an s3:// URL (a str)."""
    return isinstance(value, str) and value[:5].lower() == "s3://"


def is_location(value: Any) -> bool:
    """Whether `value` names files: a path (str or PathLike) or an s3:// URL."""
    return isinstance(value, (str, os.PathLike))


def format_of(name: str) -> tuple[str, str | None]:
    """(format, compression) from a file or object name: `x.jsonl.gz` -> ("jsonl", "gzip")."""
    lower = name.lower()
    compression = None
    for suffix, kind in COMPRESSIONS.items():
        if lower.endswith(suffix):
            compression, lower = kind, lower[: -len(suffix)]
            break
    for suffix, kind in FORMATS.items():
        if lower.endswith(suffix):
            if kind == "parquet" and compression is not None:
                raise InvalidInput(
                    f"records path {name!r}: a Parquet file compresses its own pages, "
                    f"and cannot be read by row group once compressed as a whole"
                )
            return kind, compression
    raise InvalidInput(
        f"records path {name!r} has an unsupported suffix; use one of {sorted(FORMATS)}, "
        f"optionally compressed ({', '.join(sorted(COMPRESSIONS))}), or pass a DataFrame / "
        f"iterable"
    )


@dataclass(frozen=True)
class SourceObject:
    """One file or stored object of a dataset.

    `name` names it in messages (a local file's name, or s3://bucket/key); `location` is its
    full address (absolute path or URL); `version` changes when its bytes do (S3: ETag and
    VersionId; locally: size and mtime). `open()` gives a stream of the stored bytes;
    `open_random()` a seekable file (Parquet reads its footer, then row groups), None when
    `open()`'s is seekable.
    """

    name: str
    location: str
    size: int
    version: str
    kind: str
    compression: str | None
    open: Callable[[], BinaryIO]
    open_random: Callable[[], BinaryIO] | None = None
    local: bool = True


def _decompressed(raw: BinaryIO, compression: str | None) -> BinaryIO:
    if compression is None:
        return raw
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if compression == "bz2":
        return bz2.BZ2File(raw)  # type: ignore[return-value]
    import zstandard

    reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    return io.BufferedReader(reader, _BUFFER)  # type: ignore[arg-type, return-value]


def _decode_errors() -> tuple[type[BaseException], ...]:
    """What a decompressor raises on bytes that are not its format (or end too soon)."""
    errors: list[type[BaseException]] = [OSError, EOFError, zlib.error]
    try:
        import zstandard

        errors.append(zstandard.ZstdError)
    except ImportError:  # pragma: no cover - zstandard is a dependency
        pass
    return tuple(errors)


class Provenance:
    """Where the records of one read came from: per object, its first record and line breaks."""

    def __init__(self) -> None:
        self.objects: list[dict[str, Any]] = []

    def begin(self, obj: SourceObject, first_record: int) -> list[tuple[int, int]]:
        """Note that `obj` starts at input position `first_record`; returns its line breaks."""
        lines: list[tuple[int, int]] = []
        self.objects.append(
            {
                "object": obj.location,
                "version": obj.version,
                "format": obj.kind,
                "first_record": first_record,
                "lines": lines,
            }
        )
        return lines

    def table(self, records_read: int) -> list[dict[str, Any]]:
        """The objects read, each with its record count (of `records_read` in all), for meta."""
        rows = []
        for number, entry in enumerate(self.objects):
            following = self.objects[number + 1 :]
            end = following[0]["first_record"] if following else records_read
            first_line = _FIRST_LINE.get(entry["format"])
            breaks: list[list[int]] = [[0, first_line]] if first_line is not None else []
            for offset, line in entry["lines"]:
                if offset == 0:
                    breaks[0] = [0, line]  # the first record is not on the usual line
                else:
                    breaks.append([offset, line])
            rows.append(
                {
                    "object": entry["object"],
                    "version": entry["version"],
                    "format": entry["format"],
                    "first_record": entry["first_record"],
                    "records": max(0, end - entry["first_record"]),
                    "lines": breaks,
                }
            )
        return rows


def locate(objects: Sequence[dict[str, Any]], records: Sequence[int]) -> list[tuple[Any, ...]]:
    """(source, line, row) of each input position, from a Provenance table (meta's objects).

    `row` counts the object's records from 1; `line` is the line a JSONL/CSV record starts
    on (None for Parquet and JSON arrays); (None, None, None) for a position no object holds.
    """
    firsts = [int(o["first_record"]) for o in objects]
    found: list[tuple[Any, ...]] = []
    for record in records:
        at = bisect.bisect_right(firsts, int(record)) - 1
        if at < 0:
            found.append((None, None, None))
            continue
        entry = objects[at]
        offset = int(record) - firsts[at]
        if offset >= int(entry.get("records", offset + 1)):
            found.append((None, None, None))
            continue
        line = None
        breaks = entry.get("lines") or []
        if breaks:
            starts = [int(b[0]) for b in breaks]
            k = bisect.bisect_right(starts, offset) - 1
            base_offset, base_line = breaks[max(k, 0)]
            line = int(base_line) + offset - int(base_offset)
        found.append((entry["object"], line, offset + 1))
    return found


class Dataset:
    """Files or objects read one after another as one source, in order (see module doc).

    `columns`: the Parquet columns to read (only those are fetched); every object must then
    be Parquet. `csv_types`: how CSV cells become values ("exact", the default: numbers only
    where exact, else the text; "text"; "pandas": see formats.csv_records); another than
    "exact" needs CSV objects. `skipped`: names left out of a folder or prefix (hidden or `_`
    files), kept so the manifest can say so.
    """

    def __init__(
        self,
        location: str,
        objects: Sequence[SourceObject],
        *,
        columns: Sequence[str] | None = None,
        csv_types: str = "exact",
        skipped: Sequence[str] = (),
    ) -> None:
        if not objects:
            raise InvalidInput(f"records {location!r} holds no files")
        check_csv_types(csv_types)
        if csv_types != "exact" and not any(o.kind == "csv" for o in objects):
            kinds = ", ".join(sorted({o.kind for o in objects}))
            raise InvalidInput(
                f"csv_types={csv_types!r} types the cells of CSV files; records {location!r} "
                f"holds {kinds} files"
            )
        if columns is not None:
            if isinstance(columns, str) or not all(isinstance(c, str) for c in columns):
                raise InvalidInput(f"columns must be a list of column names, got {columns!r}")
            others = sorted({o.kind for o in objects} - {"parquet"})
            if others:
                raise InvalidInput(
                    f"columns= selects Parquet columns; records {location!r} holds "
                    f"{', '.join(others)} files"
                )
        self.location = location
        self.objects = tuple(objects)
        self.columns = list(columns) if columns is not None else None
        self.csv_types = csv_types
        self.skipped = tuple(skipped)

    def __repr__(self) -> str:
        return (
            f"Dataset({self.location!r}, {len(self.objects)} objects, {self.total_bytes:,} bytes)"
        )

    def __iter__(self) -> Iterator[Any]:
        return self.records()

    @property
    def total_bytes(self) -> int:
        """Stored bytes of every object (compressed, as listed)."""
        return sum(o.size for o in self.objects)

    @property
    def formats(self) -> list[str]:
        """The formats of its objects (with their compressions), sorted."""
        return sorted(
            {o.kind + (f"+{o.compression}" if o.compression else "") for o in self.objects}
        )

    @property
    def finite_numbers_only(self) -> bool:
        """Whether no record can hold NaN or an infinity (JSON: orjson refuses to parse them;
        CSV but as pandas types it: "nan" and "inf" stay text)."""
        exact_csv = self.csv_types != "pandas"
        return all(
            o.kind in ("jsonl", "json") or (o.kind == "csv" and exact_csv) for o in self.objects
        )

    @property
    def versions_digest(self) -> str:
        """sha256 over each object's location and version, in order (for the fingerprint)."""
        sha = hashlib.sha256()
        for obj in self.objects:
            sha.update(f"{obj.location}\0{obj.version}\n".encode())
        return sha.hexdigest()

    def describe(self) -> dict[str, Any]:
        """What the dataset is, for a manifest: type, path (as given), objects, bytes, formats."""
        only = self.objects[0]
        if len(self.objects) == 1 and only.local and only.location == self.location:
            return {"type": f"{only.kind} file", "path": only.location}
        described: dict[str, Any] = {
            "type": "dataset",
            "path": self.location,
            "objects": len(self.objects),
            "bytes": self.total_bytes,
            "formats": self.formats,
        }
        if self.columns is not None:
            described["columns"] = list(self.columns)
        if self.csv_types != "exact":
            described["csv_types"] = self.csv_types
        if self.skipped:
            described["skipped"] = list(self.skipped)
        return described

    def length(self) -> int | None:
        """Records in all, when cheap to know: Parquet footers; local JSONL/CSV files counted
        when they hold COUNT_LIMIT_BYTES or less in all (compressed ones count 8x their
        size); else None (S3 text objects and JSON arrays would be read twice)."""
        # A compressed file is counted by what it holds: about 8x its size for text.
        text_bytes = sum(
            o.size * (_COMPRESSED_RATIO if o.compression else 1)
            for o in self.objects
            if o.kind in ("jsonl", "csv")
        )
        if any(o.kind == "json" for o in self.objects):
            return None
        if text_bytes and (
            text_bytes > COUNT_LIMIT_BYTES or not all(o.local for o in self.objects)
        ):
            return None
        if all(o.local for o in self.objects):
            counts = [self._count(obj) for obj in self.objects]
        else:
            # Footers over the network: one ranged GET each, a few at a time, so a prefix
            # of hundreds of Parquet objects is counted in seconds, not minutes.
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=_FOOTER_READERS) as pool:
                counts = list(pool.map(self._count, self.objects))
        if any(c is None for c in counts):
            return None
        return sum(c for c in counts if c is not None)

    def _count(self, obj: SourceObject) -> int | None:
        if obj.kind == "parquet":
            handle = (obj.open_random or obj.open)()
            try:
                return int(parquet_file(handle, obj.name).metadata.num_rows)
            finally:
                handle.close()
        with obj.open() as raw:
            try:
                stream = _decompressed(raw, obj.compression)
                if obj.kind == "jsonl":
                    return count_jsonl(stream)
                return count_csv(stream, self.csv_types)
            except _decode_errors():
                return None  # unreadable: the reader will say why, naming the object

    def records(self, provenance: Provenance | None = None, start: int = 0) -> Iterator[Any]:
        """Every record of every object in order (BadLines for lines that cannot be records),
        from input position `start` on; `provenance` notes where each came from."""
        return self._records(provenance, start)

    def _records(self, provenance: Provenance | None, start: int) -> Iterator[Any]:
        index = 0
        for obj in self.objects:
            lines = provenance.begin(obj, index) if provenance is not None else None
            records = self._object_records(obj, lines)
            if index < start:
                # Skipped records are still read: a text object cannot seek to a record.
                for _ in records:
                    index += 1
                    if index >= start:
                        break
                if index < start:
                    continue
            for record in records:
                index += 1
                yield record

    def _object_records(
        self, obj: SourceObject, lines: list[tuple[int, int]] | None
    ) -> Iterator[Any]:
        if obj.kind == "parquet":
            handle = (obj.open_random or obj.open)()
            try:
                yield from parquet_records(handle, obj.name, self.columns)
            finally:
                handle.close()
            return
        read = 0
        raw = obj.open()
        try:
            stream = _decompressed(raw, obj.compression)
            if obj.kind == "jsonl":
                reader = jsonl_records(stream, obj.name, lines)
            elif obj.kind == "csv":
                reader = csv_records(stream, obj.name, lines, self.csv_types)
            else:
                reader = json_array_records(stream, obj.name)
            for record in reader:
                read += 1
                yield record
        except _decode_errors() as exc:
            what = f"a readable {obj.compression} stream" if obj.compression else "readable"
            raise InvalidInput(
                f"records file {obj.name} is not {what} ({type(exc).__name__}: {exc}); "
                f"{read:,} of its records were read before"
            ) from exc
        finally:
            raw.close()

    def resume(self, start: int, objects_read: Sequence[dict[str, Any]]) -> Iterator[Any]:
        """The records from input position `start` on, as a run that read `objects_read`
        (meta's Provenance table) numbered them: whole objects before it are not read again.

        An object read by the run whose version changed since is an InvalidInput: its
        records may no longer be the ones the positions name.
        """
        by_location = {obj.location: n for n, obj in enumerate(self.objects)}
        for entry in objects_read:
            at = by_location.get(entry["object"])
            if at is None:
                raise InvalidInput(f"{entry['object']} is no longer in {self.location!r}")
            if self.objects[at].version != entry["version"]:
                raise InvalidInput(
                    f"{entry['object']} changed since the run read it (version "
                    f"{entry['version']} -> {self.objects[at].version}): its records may not "
                    f"be the ones the run numbered"
                )
        before = [e for e in objects_read if int(e["first_record"]) <= start]
        if not before:
            return self.records(start=start)
        entry = before[-1]
        rest = Dataset(
            self.location,
            self.objects[by_location[entry["object"]] :],
            columns=self.columns,
            csv_types=self.csv_types,
        )
        return rest.records(start=start - int(entry["first_record"]))

    def preview(self, rows: int = 5) -> list[Any]:
        """The first `rows` records (of the first objects only: nothing more is read)."""
        found: list[Any] = []
        for record in self.records():
            found.append(record)
            if len(found) >= rows:
                break
        return found


def check_formats(location: str, objects: Sequence[SourceObject]) -> None:
    """A folder or prefix must hold one format: two usually mean a stray file in it."""
    by_format: dict[str, str] = {}
    for obj in objects:
        by_format.setdefault(obj.kind, obj.name)
    if len(by_format) > 1:
        found = ", ".join(f"{kind} ({name})" for kind, name in sorted(by_format.items()))
        raise InvalidInput(
            f"records {location!r} mixes formats: {found}; choose one with a glob "
            f"(e.g. {location.rstrip('/')}/*.{sorted(by_format)[0]}*)"
        )


def _skipped_name(relative: str) -> bool:
    """Hidden and `_` files (`.DS_Store`, Spark's `_SUCCESS`): not data, as pyarrow skips them."""
    return any(part.startswith((".", "_")) for part in relative.split("/"))


def _local_object(path: Path, name: str) -> SourceObject:
    kind, compression = format_of(str(path))
    stat = path.stat()
    location = str(path.resolve())
    return SourceObject(
        name=name,
        location=location,
        size=stat.st_size,
        version=f"{stat.st_size}:{stat.st_mtime_ns}",
        kind=kind,
        compression=compression,
        # A large buffer: each read releases the GIL, and winning it back from busy worker
        # threads is what made small reads slow.
        open=functools.partial(open, location, "rb", buffering=_BUFFER),
    )


def local_dataset(
    location: str | os.PathLike[str],
    columns: Sequence[str] | None = None,
    csv_types: str = "exact",
) -> Dataset:
    """A Dataset of a local file, every file under a folder (in path order), or a glob's
    (`columns`, `csv_types`: see Dataset)."""
    text = os.fspath(location)
    path = Path(text)
    if glob.has_magic(text):
        paths = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if not paths:
            raise InvalidInput(f"records glob {text!r} matches no files")
        objects = [_local_object(p, str(p)) for p in paths]
        return Dataset(text, objects, columns=columns, csv_types=csv_types)
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file())
        relative = [p.relative_to(path).as_posix() for p in found]
        skipped = [r for r in relative if _skipped_name(r)]
        kept = [(p, r) for p, r in zip(found, relative, strict=True) if not _skipped_name(r)]
        if not kept:
            raise InvalidInput(f"records folder {text!r} holds no data files")
        objects = [_local_object(p, r) for p, r in kept]
        check_formats(text, objects)
        if skipped:
            log.info("records folder %s: %d hidden or _ files left out", text, len(skipped))
        return Dataset(
            str(path.resolve()), objects, columns=columns, csv_types=csv_types, skipped=skipped
        )
    format_of(text)  # an unsupported suffix is named before a missing file
    if not path.is_file():
        raise InvalidInput(f"records path {text!r} does not exist or is not a file")
    obj = _local_object(path, path.name)
    return Dataset(obj.location, [obj], columns=columns, csv_types=csv_types)
