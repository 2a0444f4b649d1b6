"""S3 as a place for data: datasets listed and streamed from s3:// URLs, folders written there.

One stack: boto3's S3 client (from the run's own session, so one `profile=` serves Lambda
and S3) and pyarrow's Parquet reader over a seekable file of ranged GETs. Objects are
streamed (JSONL/CSV through 1 MiB reads of the GetObject body, Parquet a row group at a
time, fetching only the columns asked for) and read with `IfMatch` on the ETag they were
listed with, so an object rewritten during a run is an error, never a silent mix of two
versions. docs/architecture.md says why not fsspec/s3fs.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import io
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lambdakit.aws.connection import make_s3_client, translating
from lambdakit.errors import InvalidInput, StorageError
from lambdakit.records.datasets import (
    Dataset,
    SourceObject,
    check_formats,
    format_of,
    is_s3_url,
)

__all__ = [
    "S3Location",
    "S3Store",
    "download_folder",
    "open_dataset",
    "parse_s3_url",
    "upload_folder",
]

log = logging.getLogger("lambdakit.aws.s3")

_READ_BYTES = 1 << 20  # GetObject body reads; also the ranged file's buffer
# Files from this size go up in parts of this size (PutObject stops at 5 GB; 10,000 parts of
# 64 MiB hold 640 GiB). S3 refuses parts under 5 MiB, the last one excepted.
_PART_BYTES = 64 << 20
_MIN_PART_BYTES = 5 << 20
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key (or prefix, or glob) within it."""

    bucket: str
    key: str

    @property
    def url(self) -> str:
        """The s3:// URL."""
        return f"s3://{self.bucket}/{self.key}"

    def child(self, relative: str) -> S3Location:
        """The location `relative` below this one taken as a folder."""
        base = self.key if not self.key or self.key.endswith("/") else self.key + "/"
        return S3Location(self.bucket, base + relative)


def parse_s3_url(url: Any) -> S3Location:
    """s3://bucket/key -> S3Location; InvalidInput naming what is wrong."""
    if not is_s3_url(url):
        raise InvalidInput(f"not an s3:// URL: {url!r}")
    bucket, _, key = url[5:].partition("/")
    if not bucket:
        raise InvalidInput(f"S3 URL {url!r} names no bucket (s3://bucket/key)")
    if not _BUCKET.match(bucket):
        raise InvalidInput(
            f"S3 URL {url!r}: {bucket!r} is not a bucket name (3-63 characters: lower-case "
            f"letters, digits, dots and hyphens)"
        )
    return S3Location(bucket, key)


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A key glob as a regex: `*` and `?` stay within one path segment, `**` crosses them."""
    parts = []
    for piece in re.split(r"(\*\*/?|\*|\?|\[[^\]]*\])", pattern):
        if piece.startswith("**"):
            parts.append(".*")
        elif piece == "*":
            parts.append("[^/]*")
        elif piece == "?":
            parts.append("[^/]")
        elif piece.startswith("[") and piece.endswith("]") and len(piece) > 2:
            parts.append(fnmatch.translate(piece)[4:-3])  # fnmatch's class syntax
        else:
            parts.append(re.escape(piece))
    return re.compile("".join(parts) + r"\Z")


@contextlib.contextmanager
def _about(url: str, operation: str) -> Iterator[None]:
    """S3's error for `url`, with the URL in its message (botocore's translated in connection)."""
    try:
        with translating(operation):
            yield
    except StorageError as exc:
        if exc.url is not None:
            raise
        raise StorageError(
            f"{url}: {exc.message}", code=exc.code, status=exc.status, url=url, operation=operation
        ) from exc.__cause__


class _Body(io.RawIOBase):
    """A GetObject body as a raw stream (read in chunks, never whole), errors translated."""

    def __init__(self, body: Any, url: str) -> None:
        self._body = body
        self._url = url

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        with _about(self._url, "GetObject"):
            data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class _RangeFile(io.RawIOBase):
    """A seekable file over one object: each read is a ranged GET (pinned to its ETag)."""

    def __init__(self, store: S3Store, where: S3Location, size: int, etag: str) -> None:
        self._store = store
        self._where = where
        self._size = size
        self._etag = etag
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self._size - self._pos)
        if want <= 0:
            return 0
        end = self._pos + want - 1
        url = self._where.url
        with _about(url, "GetObject"):
            reply = self._store.client.get_object(
                Bucket=self._where.bucket,
                Key=self._where.key,
                Range=f"bytes={self._pos}-{end}",
                IfMatch=self._etag,
            )
            data = reply["Body"].read()
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


class S3Store:
    """Lists, streams and writes objects with one boto3 S3 client."""

    def __init__(self, client: Any, *, part_bytes: int = _PART_BYTES) -> None:
        if part_bytes < _MIN_PART_BYTES:
            raise InvalidInput(
                f"part_bytes must be at least {_MIN_PART_BYTES} (S3's smallest part), "
                f"got {part_bytes}"
            )
        self.client = client
        self.part_bytes = part_bytes

    def _listed(self, where: S3Location, prefix: str) -> Iterator[dict[str, Any]]:
        paginator = self.client.get_paginator("list_objects_v2")
        with _about(where.url, "ListObjectsV2"):
            for page in paginator.paginate(Bucket=where.bucket, Prefix=prefix):
                yield from page.get("Contents", ())

    def _head(self, where: S3Location) -> dict[str, Any] | None:
        try:
            with _about(where.url, "HeadObject"):
                return self.client.head_object(Bucket=where.bucket, Key=where.key)
        except StorageError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, url: str) -> tuple[list[dict[str, Any]], list[str], bool]:
        """(objects, skipped keys, chosen) of a URL: one key, a prefix (every object under
        it, in key order, without hidden or `_` names and folder markers) or a glob.

        `chosen` is True for a glob (the user picked the names) or a single key."""
        where = parse_s3_url(url)
        if glob.has_magic(where.key):
            first = min(where.key.find(c) for c in "*?[" if c in where.key)
            pattern = _glob_regex(where.key)
            found = [o for o in self._listed(where, where.key[:first]) if pattern.match(o["Key"])]
            if not found:
                raise InvalidInput(f"records glob {url!r} matches no objects")
            return found, [], True
        if where.key and not where.key.endswith("/"):
            head = self._head(where)
            if head is not None:
                listed = {
                    "Key": where.key,
                    "Size": head["ContentLength"],
                    "ETag": head["ETag"],
                    "VersionId": head.get("VersionId"),
                }
                return [listed], [], True
            prefix = where.key + "/"  # s3://bucket/folder, without its slash
        else:
            prefix = where.key
        objects, skipped = [], []
        for entry in self._listed(where, prefix):
            relative = entry["Key"][len(prefix) :]
            if relative.endswith("/") and entry.get("Size", 0) == 0:
                continue  # a console "folder": no data
            if any(part.startswith((".", "_")) for part in relative.split("/")):
                skipped.append(entry["Key"])
                continue
            objects.append(entry)
        if not objects:
            what = (
                "no object with this key, and no objects under it"
                if prefix != where.key
                else ("no objects under this prefix")
            )
            if skipped:
                what += f" (only hidden or _ objects such as {skipped[0]!r})"
            raise InvalidInput(f"records {url!r}: {what}")
        return objects, skipped, False

    def source_object(self, where: S3Location, listed: dict[str, Any]) -> SourceObject:
        """The SourceObject of a listed object: its name, version and openers."""
        key = listed["Key"]
        url = f"s3://{where.bucket}/{key}"
        kind, compression = format_of(url)
        etag = listed["ETag"]
        size = int(listed["Size"])
        version = f"etag={etag}" + (
            f";version={listed['VersionId']}" if listed.get("VersionId") else ""
        )
        at = S3Location(where.bucket, key)
        return SourceObject(
            name=url,
            location=url,
            size=size,
            version=version,
            kind=kind,
            compression=compression,
            open=lambda: self.stream(at, etag),
            open_random=lambda: io.BufferedReader(_RangeFile(self, at, size, etag), _READ_BYTES),
            local=False,
        )

    def stream(self, where: S3Location, etag: str | None = None) -> io.BufferedReader:
        """The object's bytes as a buffered stream (1 MiB reads), pinned to `etag` if given."""
        extra = {"IfMatch": etag} if etag else {}
        with _about(where.url, "GetObject"):
            reply = self.client.get_object(Bucket=where.bucket, Key=where.key, **extra)
        return io.BufferedReader(_Body(reply["Body"], where.url), _READ_BYTES)

    def dataset(
        self, url: str, columns: Sequence[str] | None = None, csv_types: str = "exact"
    ) -> Dataset:
        """The Dataset an s3:// URL names (see `list`); a prefix must hold one format."""
        where = parse_s3_url(url)
        listed, skipped, chosen = self.list(url)
        objects = [self.source_object(where, entry) for entry in listed]
        if not chosen:
            check_formats(url, objects)
        if skipped:
            log.info("records %s: %d hidden or _ objects left out", url, len(skipped))
        return Dataset(url, objects, columns=columns, csv_types=csv_types, skipped=skipped)

    def put_file(self, path: Path, where: S3Location) -> None:
        """Upload one local file to `where`: one PutObject, or in parts from part_bytes up."""
        if path.stat().st_size >= self.part_bytes:
            self._put_in_parts(path, where)
            return
        with path.open("rb") as body, _about(where.url, "PutObject"):
            self.client.put_object(Bucket=where.bucket, Key=where.key, Body=body)

    def _put_in_parts(self, path: Path, where: S3Location) -> None:
        """A multipart upload, one part in memory at a time; aborted if any step fails.

        PutObject takes at most 5 GB, and a run's outputs can be more; parts also mean a
        large file is never read whole. An upload left unfinished keeps its parts (billed)
        until aborted, so any failure aborts it before the error goes on.
        """
        bucket, key = where.bucket, where.key
        with _about(where.url, "CreateMultipartUpload"):
            upload = self.client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        try:
            parts = []
            with path.open("rb") as file:
                while chunk := file.read(self.part_bytes):
                    number = len(parts) + 1
                    with _about(where.url, "UploadPart"):
                        reply = self.client.upload_part(
                            Bucket=bucket, Key=key, UploadId=upload, PartNumber=number,
                            Body=chunk,
                        )  # fmt: skip
                    parts.append({"PartNumber": number, "ETag": reply["ETag"]})
            with _about(where.url, "CompleteMultipartUpload"):
                self.client.complete_multipart_upload(
                    Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
                )
        except BaseException:
            with contextlib.suppress(Exception), _about(where.url, "AbortMultipartUpload"):
                self.client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload)
            raise

    def check_writable(self, url: str) -> None:
        """Refuse a destination whose bucket is missing or cannot be listed, before a run."""
        where = parse_s3_url(url)
        with _about(where.url, "ListObjectsV2"):
            self.client.list_objects_v2(Bucket=where.bucket, Prefix=where.key, MaxKeys=1)


def _store(
    client: Any = None,
    *,
    region: str | None = None,
    profile: str | None = None,
    endpoint_url: str | None = None,
    session: Any = None,
) -> S3Store:
    if client is None:
        client = make_s3_client(
            endpoint_url=endpoint_url, region=region, profile=profile, session=session
        )
    return S3Store(client)


def open_dataset(
    url: str,
    *,
    columns: Sequence[str] | None = None,
    csv_types: str = "exact",
    region: str | None = None,
    profile: str | None = None,
    endpoint_url: str | None = None,
    client: Any = None,
    session: Any = None,
) -> Dataset:
    """The Dataset of an s3:// URL: one object, every object under a prefix, or a glob's.

    Formats come from the names (.jsonl/.ndjson/.csv/.parquet/.json, + .gz/.bz2/.zst);
    `endpoint_url` (else $AWS_ENDPOINT_URL_S3) points at a local S3; `columns` and
    `csv_types` as for a records Dataset.

    >>> open_dataset("s3://bucket/2026/*/part-*.parquet", columns=["id"])  # doctest: +SKIP
    """
    store = _store(
        client, region=region, profile=profile, endpoint_url=endpoint_url, session=session
    )
    return store.dataset(url, columns=columns, csv_types=csv_types)


def upload_folder(folder: str | Path, url: str, *, client: Any = None, **where: Any) -> str:
    """Copy every file under `folder` to the prefix `url`, keeping relative paths; the URL."""
    store = _store(client, **where)
    base = parse_s3_url(url if url.endswith("/") else url + "/")
    root = Path(folder)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        store.put_file(path, base.child(path.relative_to(root).as_posix()))
    return base.url


def download_folder(url: str, folder: str | Path, *, client: Any = None, **where: Any) -> Path:
    """Copy every object under the prefix `url` into `folder` (relative paths kept)."""
    store = _store(client, **where)
    base = parse_s3_url(url if url.endswith("/") else url + "/")
    root = Path(folder)
    found = False
    for entry in store._listed(base, base.key):
        relative = entry["Key"][len(base.key) :]
        if not relative or relative.endswith("/"):
            continue
        target = root / relative
        if ".." in Path(relative).parts:
            raise InvalidInput(f"{base.url}: object {entry['Key']!r} would land outside {root}")
        target.parent.mkdir(parents=True, exist_ok=True)
        with store.stream(S3Location(base.bucket, entry["Key"])) as body, target.open("wb") as out:
            while chunk := body.read(_READ_BYTES):
                out.write(chunk)
        found = True
    if not found:
        raise InvalidInput(f"no objects under {base.url}")
    return root
