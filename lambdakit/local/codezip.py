"""Uploaded function code: zip checks, content-addressed storage and unpacking.

A zip is checked completely before anything is written: an absolute or `..` entry, a
symlink that resolves outside the package (or an entry written through a symlink), an empty
zip, one without the handler's module (or a provided.* runtime's `bootstrap`), or more than
AWS's 250 MB unzipped, is refused with InvalidParameterValueException. Symlinks are unpacked
as symlinks, as AWS keeps them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import posixpath
import shutil
import stat
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from lambdakit.local.checks import bad_content, invalid, optional

__all__ = [
    "MAX_CODE_REQUEST_BYTES",
    "MAX_UNZIPPED_BYTES",
    "MAX_ZIPPED_BYTES",
    "CodeInfo",
    "check_handler",
    "check_zip",
    "code_dir",
    "remove_unused_code",
    "store_zip",
    "unpack",
    "zip_field",
]

MAX_ZIPPED_BYTES = 50 * 1024 * 1024  # direct upload limit of a zip
MAX_UNZIPPED_BYTES = 250 * 1024 * 1024  # AWS's unzipped deployment package limit
# Base64 of a 50 MB zip plus the JSON around it: AWS's CreateFunction request limit.
MAX_CODE_REQUEST_BYTES = 69_905_067
MAX_LINK_TARGET = 4096  # PATH_MAX: a longer "target" is not a link a system could make
_MAX_LINK_HOPS = 40  # Linux's limit on symlinks followed while resolving one path


@dataclass(frozen=True)
class CodeInfo:
    """One uploaded zip: its AWS-style CodeSha256 (base64), hex digest and sizes."""

    sha256: str
    sha_hex: str
    size: int
    unzipped_size: int
    files: frozenset[str] = frozenset()  # regular files and symlinks, as posix paths


def zip_field(body: dict[str, Any], key: str, field_name: str | None = None) -> bytes:
    """The decoded zip in body[key]; the error names the field that is missing or malformed."""
    field_name = field_name or key
    encoded = optional(body, key, str)
    if encoded is None:
        raise invalid(
            f"{field_name} is required: lambdakit local takes the zip inline (no S3 or images)."
        )
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise bad_content(
            f"Could not parse request body into json: {field_name} is not base64: {exc}"
        ) from None


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
    files: set[str] = set()
    for info in infos:
        _check_entry(info.filename)
        total += info.file_size
        if not info.is_dir():
            files.add(_posix(info.filename))
    if total > MAX_UNZIPPED_BYTES:
        raise invalid(
            f"Unzipped size must be smaller than {MAX_UNZIPPED_BYTES} bytes, got {total}."
        )
    if not files:
        raise invalid("Uploaded file must be a non-empty zip: it holds no files.")
    _check_links(archive, infos)
    digest = hashlib.sha256(data)
    return CodeInfo(
        sha256=base64.b64encode(digest.digest()).decode(),
        sha_hex=digest.hexdigest(),
        size=len(data),
        unzipped_size=total,
        files=frozenset(files),
    )


def check_handler(info: CodeInfo, handler: str | None, runtime: str | None) -> None:
    """Refuse a package without the handler's module (python) or a bootstrap (provided.*)."""
    if not runtime or not info.files:
        return
    if runtime.startswith("provided"):
        if "bootstrap" not in info.files:
            raise invalid(
                f"The zip has no 'bootstrap' at its root, which a {runtime} function runs."
            )
        return
    if not runtime.startswith("python") or not handler or "." not in handler:
        return  # a malformed handler is refused by the configuration checks
    module = handler.rsplit(".", 1)[0].replace(".", "/")
    stem = posixpath.basename(module)
    folder = posixpath.dirname(module)
    candidates = {f"{module}.py", f"{module}.pyc", f"{module}/__init__.py", f"{module}.so"}
    found = candidates & info.files or {
        name
        for name in info.files
        if posixpath.dirname(name) == folder
        and posixpath.basename(name).startswith(f"{stem}.")
        and name.endswith(".so")
    }
    if not found:
        raise invalid(
            f"The zip has no module for handler {handler!r}: expected {module}.py "
            f"(or {module}/__init__.py) in it."
        )


def _posix(name: str) -> str:
    return posixpath.normpath(name.replace("\\", "/")).lstrip("/")


def _is_link(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _check_links(archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> None:
    """Every symlink must resolve inside the package; nothing may be written through one."""
    links: dict[str, str] = {}
    for info in infos:
        if _is_link(info):
            raw = archive.read(info)
            if not raw or len(raw) > MAX_LINK_TARGET or b"\0" in raw:
                raise invalid(f"Symlink {info.filename!r} has no usable target.")
            links[_posix(info.filename)] = raw.decode("utf-8", "replace")
    if not links:
        return
    names = [_posix(info.filename) for info in infos]
    for name in names:
        parts = name.split("/")
        through = next(
            ("/".join(parts[:i]) for i in range(1, len(parts)) if "/".join(parts[:i]) in links),
            None,
        )
        if through is not None:
            raise invalid(
                f"Could not unzip uploaded file: entry {name!r} would be written through the "
                f"symlink {through!r}."
            )
    for name in links:
        if names.count(name) > 1:
            raise invalid(f"Could not unzip uploaded file: {name!r} appears more than once.")
        if _resolve(name, links) is None:
            raise invalid(
                f"Symlink {name!r} -> {links[name]!r} points outside the function's package; "
                "links must resolve to a path inside it."
            )


def _resolve(name: str, links: dict[str, str]) -> str | None:
    """Where the link `name` leads inside the package (following links), None if outside."""
    pending = [*reversed(links[name].split("/"))]
    if links[name].startswith("/"):
        return None
    here: list[str] = name.split("/")[:-1]
    hops = 0
    while pending:
        part = pending.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if not here:
                return None
            here.pop()
            continue
        here.append(part)
        path = "/".join(here)
        if path in links:
            hops += 1
            target = links[path]
            if hops > _MAX_LINK_HOPS or target.startswith("/"):
                return None
            here.pop()
            pending.extend(reversed(target.split("/")))
    return "/".join(here)


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
                if _is_link(info):
                    # As AWS keeps it; check_zip made sure it resolves inside the package.
                    os.symlink(archive.read(info).decode("utf-8", "replace"), dest)
                    continue
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
