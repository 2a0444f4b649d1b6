"""Save a RunResult to a folder (Parquet tables, outputs, meta.json) and load it back exactly."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import orjson
import pandas as pd

from lambdakit.errors import InvalidInput
from lambdakit.results.outputs import OutputStore

if TYPE_CHECKING:
    from lambdakit.results.tables import ResultView

__all__ = ["decode_meta", "encode_meta", "load_result", "save_result"]

log = logging.getLogger("lambdakit.results.storage")
R = TypeVar("R")  # what load_result's `build` makes: a RunResult

FORMAT = 1
TABLES = ("attempts", "batches", "failures", "rejections", "not_run")
META_FILE = "meta.json"
OUTPUTS_DIR = "outputs"
REPORT_RESULT = "result"  # where a report folder keeps its saved RunResult


def encode_meta(value: Any) -> Any:
    """Turn meta into JSON, tagging what JSON cannot say (timestamps, tuples, NaN)."""
    if isinstance(value, dict):
        return {str(k): encode_meta(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return {"$tuple": [encode_meta(v) for v in value]}
    if isinstance(value, (list, set, frozenset)):
        return [encode_meta(v) for v in value]
    if isinstance(value, pd.Timestamp):
        return {"$timestamp": value.isoformat()}
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, np.generic):
        return encode_meta(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return {"$float": repr(value)}
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    # Settings objects (a Retry, a Cache) are kept readable rather than failing the save.
    log.debug("meta value %r saved as its repr", value)
    return repr(value)


def decode_meta(value: Any) -> Any:
    """Inverse of encode_meta."""
    if isinstance(value, list):
        return [decode_meta(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((tag, inner),) = value.items()
        if tag == "$tuple":
            return tuple(decode_meta(v) for v in inner)
        if tag == "$timestamp":
            return pd.Timestamp(inner)
        if tag == "$datetime":
            return dt.datetime.fromisoformat(inner)
        if tag == "$float":
            return float(inner)
    return {k: decode_meta(v) for k, v in value.items()}


def _json_default(value: Any) -> Any:
    if isinstance(value, (pd.Timestamp, dt.datetime, dt.date)):
        return value.isoformat()
    return str(value)


def _encode_table(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """JSON-encode object columns holding more than strings, so Parquet stores them as-is."""
    encoded: dict[str, str] = {}
    out = frame.copy()
    for column in frame.columns:
        if frame[column].dtype != object:
            continue
        values = [v for v in frame[column] if v is not None]
        if all(isinstance(v, str) for v in values):
            continue
        kind = "json-tuple" if values and all(isinstance(v, tuple) for v in values) else "json"
        out[column] = [
            None
            if v is None
            else orjson.dumps(v, default=_json_default, option=orjson.OPT_SERIALIZE_NUMPY).decode()
            for v in frame[column]
        ]
        encoded[str(column)] = kind
    return out, encoded


def _decode_table(frame: pd.DataFrame, encoded: dict[str, str]) -> pd.DataFrame:
    for column, kind in encoded.items():
        values = [None if v is None else orjson.loads(v) for v in frame[column]]
        if kind == "json-tuple":
            values = [None if v is None else tuple(v) for v in values]
        frame[column] = pd.Series(values, index=frame.index, dtype=object)
    return frame


def save_result(
    result: ResultView, path: str | os.PathLike[str], *, shared: bool = False, **s3: Any
) -> Path | str:
    """Write `result` to the folder `path` (replacing a previous save there), or under an
    s3:// URL in the same layout (`s3`: endpoint_url, region, profile, client).

    Private (folders 0700, files 0600) unless `shared`, when the umask decides.
    """
    from lambdakit.results.folders import make_folder, seal
    from lambdakit.results.redact import scrub
    from lambdakit.results.remote import is_remote, staged

    if is_remote(path):
        with staged(str(path), **s3) as staging:
            save_result(result, staging, shared=shared)
        return str(path)
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise InvalidInput(f"{folder} is a file; save a RunResult to a folder")
    if folder.exists() and not (folder / META_FILE).exists() and any(folder.iterdir()):
        raise InvalidInput(f"{folder} exists and is not a saved RunResult; choose an empty folder")
    make_folder(folder, shared=shared)
    encoded: dict[str, dict[str, str]] = {}
    for name in TABLES:
        table, encoded[name] = _encode_table(getattr(result, name))
        table.to_parquet(folder / f"{name}.parquet", engine="pyarrow")
    outputs = folder / OUTPUTS_DIR
    if outputs.exists() and outputs.resolve() != result.store.directory.resolve():
        shutil.rmtree(outputs)
    result.store.save(outputs)
    document = {
        "format": FORMAT,
        "records": result.records,
        "encoded_columns": encoded,
        # Credentials never reach disk, even in the run's own folder.
        "meta": encode_meta(scrub(result.meta)),
    }
    (folder / META_FILE).write_text(json.dumps(document, indent=2, sort_keys=True))
    seal(folder, shared=shared)
    return folder


def load_result(path: str | os.PathLike[str], build: Callable[..., R], **s3: Any) -> R:
    """Read a result written by save_result, or the one in a report folder (`result/`);
    from a folder or an s3:// URL (`s3`: endpoint_url, region, profile, client).

    `build` (RunResult) is called with the tables, outputs, records and meta as keywords.
    """
    from lambdakit.results.remote import fetched, is_remote, tie

    if is_remote(path):
        folder = fetched(str(path), **s3)
        loaded = load_result(folder, build)
        tie(loaded, folder)  # its outputs are read from there, lazily
        return loaded
    folder = Path(path)
    if not (folder / META_FILE).exists() and (folder / REPORT_RESULT / META_FILE).exists():
        folder = folder / REPORT_RESULT  # a report folder holds its result
    return _load_folder(folder, build)


def _load_folder(folder: Path, build: Callable[..., R]) -> R:
    meta_path = folder / META_FILE
    if not meta_path.exists():
        raise InvalidInput(f"{folder} is not a saved RunResult (no {META_FILE})")
    document = json.loads(meta_path.read_text())
    if document.get("format") != FORMAT:
        raise InvalidInput(f"{meta_path} has format {document.get('format')!r}, expected {FORMAT}")
    tables = {
        name: _decode_table(
            pd.read_parquet(folder / f"{name}.parquet", engine="pyarrow"),
            document["encoded_columns"].get(name, {}),
        )
        for name in TABLES
        if name != "not_run" or (folder / f"{name}.parquet").exists()  # saved before it was
    }
    return build(
        **tables,
        outputs=OutputStore.open(folder / OUTPUTS_DIR),
        records=int(document["records"]),
        meta=decode_meta(document["meta"]),
    )
