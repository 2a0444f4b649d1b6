"""Results in S3: a report, a saved result or a run's outputs written under s3://bucket/prefix/
in the same folder layout as on disk, and read back from there.

Writing goes through a private local staging folder that is uploaded once complete (so a
half-written folder never looks finished); reading downloads the prefix into a private
temporary folder that lives as long as the object reading it.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lambdakit.errors import InvalidInput, StorageError
from lambdakit.records.datasets import is_s3_url

__all__ = ["check_destination", "fetched", "is_remote", "staged", "tie"]


def is_remote(path: Any) -> bool:
    """Whether `path` is an s3:// URL (results go to S3) rather than a local folder."""
    return is_s3_url(path)


def _private_temp(prefix: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=prefix))  # 0700 already (mkdtemp)
    return folder


def check_destination(url: str, what: str, **where: Any) -> None:
    """Before a run: the bucket exists and can be listed by these credentials; else an error
    naming `what` (the run would otherwise pay for every batch and then fail to write)."""
    from lambdakit.aws.s3 import parse_s3_url

    parse_s3_url(url)
    store = _store(where)
    try:
        store.check_writable(url)
    except StorageError as exc:
        raise StorageError(
            f"{what} {url!r} cannot be written: {exc.message}",
            code=exc.code, status=exc.status, url=url, operation=exc.operation,
        ) from exc  # fmt: skip


def _store(where: dict[str, Any]) -> Any:
    from lambdakit.aws.connection import make_s3_client
    from lambdakit.aws.s3 import S3Store

    client = where.get("client")
    if client is None:
        client = make_s3_client(
            endpoint_url=where.get("endpoint_url"),
            region=where.get("region"),
            profile=where.get("profile"),
            session=where.get("session"),
        )
    return S3Store(client)


@contextlib.contextmanager
def staged(url: str, **where: Any) -> Iterator[Path]:
    """A private local folder to write in; its files are uploaded under `url` on success."""
    from lambdakit.aws.s3 import parse_s3_url, upload_folder

    parse_s3_url(url)  # a bad URL is named before anything is written
    root = _private_temp("lambdakit-upload-")
    folder = root / "folder"
    try:
        yield folder
        if not folder.exists():
            raise InvalidInput(f"nothing was written for {url}")
        upload_folder(folder, url, client=_store(where).client)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def fetched(url: str, **where: Any) -> Path:
    """The objects under `url` in a private temporary folder (see `tie` for its removal)."""
    from lambdakit.aws.s3 import download_folder, parse_s3_url

    parse_s3_url(url)
    root = _private_temp("lambdakit-download-")
    try:
        download_folder(url, root / "folder", client=_store(where).client)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return root / "folder"


def tie(owner: Any, folder: Path) -> None:
    """Remove a `fetched` folder once `owner` (the object reading from it) is gone."""
    weakref.finalize(owner, shutil.rmtree, str(folder.parent), True)
