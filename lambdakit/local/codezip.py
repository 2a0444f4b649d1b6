"""Uploaded function code: zip checks, content-addressed storage and unpacking.

A zip is checked completely before anything is written: an absolute or `..` entry, or more
than AWS's 250 MB unzipped, is refused with InvalidParameterValueException.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import stat
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from lambdakit.local.checks import invalid

__all__ = [
    "MAX_UNZIPPED_BYTES",
    "MAX_ZIPPED_BYTES",
    "CodeInfo",
    "check_zip",
    "code_dir",
    "remove_unused_code",
    "store_zip",
    "unpack",
]

MAX_ZIPPED_BYTES = 50 * 1024 * 1024  # direct upload limit of a zip
MAX_UNZIPPED_BYTES = 250 * 1024 * 1024  # AWS's unzipped deployment package limit


@dataclass(frozen=True)
class CodeInfo:
    """One uploaded zip: its AWS-style CodeSha256 (base64), hex digest and sizes."""

    sha256: str
    sha_hex: str
    size: int
    unzipped_size: int


def check_zip(data: bytes) -> CodeInfo:
    """Validate a deployment package without writing anything; raises ApiError when refused."""
    if len(data) > MAX_ZIPPED_BYTES:
        raise invalid(f"Zipped size must be at most {MAX_ZIPPED_BYTES} bytes, got {len(data)}.")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise invalid(
            "Could not unzip uploaded file. Please check your file, then try to upload again. "
            f"({exc})"
        ) from None
    total = 0
    for info in infos:
        _check_entry(info.filename)
        total += info.file_size
    if total > MAX_UNZIPPED_BYTES:
        raise invalid(
            f"Unzipped size must be smaller than {MAX_UNZIPPED_BYTES} bytes, got {total}."
        )
    digest = hashlib.sha256(data)
    return CodeInfo(
        sha256=base64.b64encode(digest.digest()).decode(),
        sha_hex=digest.hexdigest(),
        size=len(data),
        unzipped_size=total,
    )


def _check_entry(name: str) -> None:
    # Zip slip: an entry must stay inside the folder it is extracted to.
    posix = name.replace("\\", "/")
    parts = PurePosixPath(posix).parts
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":") or ".." in parts:
        raise invalid(
            f"Could not unzip uploaded file: entry {name!r} is an absolute path or contains '..', "
            "which would be written outside the function's code folder."
        )


def store_zip(code_root: Path, data: bytes, info: CodeInfo) -> Path:
    """Write a checked zip under its digest (idempotent) and return its path."""
    code_root.mkdir(parents=True, exist_ok=True)
    path = code_root / f"{info.sha_hex}.zip"
    if not path.exists():
        tmp = code_root / f".{info.sha_hex}.{uuid.uuid4().hex}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return path


def code_dir(code_root: Path, sha_hex: str) -> Path:
    """Where the code with this digest is unpacked."""
    return code_root / sha_hex


def unpack(code_root: Path, sha_hex: str) -> Path:
    """Unpack a stored zip once (atomically), keeping the entries' Unix permission bits."""
    target = code_dir(code_root, sha_hex)
    if target.is_dir():
        return target
    tmp = code_root / f".{sha_hex}.{uuid.uuid4().hex}.unpacking"
    tmp.mkdir(parents=True)
    try:
        with zipfile.ZipFile(code_root / f"{sha_hex}.zip") as archive:
            for info in archive.infolist():
                _check_entry(info.filename)
                dest = tmp.joinpath(*PurePosixPath(info.filename.replace("\\", "/")).parts)
                if info.is_dir():
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out, 1024 * 1024)
                mode = (info.external_attr >> 16) & 0o777
                # Zips made on Windows carry no Unix mode: AWS then makes files readable.
                os.chmod(dest, (mode | stat.S_IRUSR) if mode else 0o644)
        try:
            os.replace(tmp, target)
        except OSError:
            # Another unpack of the same digest won the race; its tree is identical.
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def remove_unused_code(code_root: Path, used: set[str]) -> None:
    """Delete every stored zip and unpacked tree whose digest is not in `used`."""
    # Folders too: an unpack that finished after its function was deleted leaves one.
    stored = {path.name.removesuffix(".zip") for path in code_root.iterdir()}
    for sha_hex in stored - used:
        if not sha_hex.startswith("."):  # uploads and unpacks in progress
            (code_root / f"{sha_hex}.zip").unlink(missing_ok=True)
            shutil.rmtree(code_dir(code_root, sha_hex), ignore_errors=True)
