"""Save a RunResult to a folder (Parquet tables, outputs, meta.json) and load it back exactly."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import logging
import math
import os
import shutil
import zoneinfo
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import orjson
import pandas as pd

from lambdakit.errors import InvalidInput
from lambdakit.records.encoding import JsonNumber
from lambdakit.records.formats import BadLine
from lambdakit.results.outputs import OutputStore

if TYPE_CHECKING:
    from lambdakit.results.tables import ResultView

__all__ = ["decode_cell", "decode_meta", "encode_cell", "encode_meta", "load_result", "save_result"]

log = logging.getLogger("lambdakit.results.storage")
R = TypeVar("R")  # what load_result's `build` makes: a RunResult

FORMAT = 1
TABLES = ("attempts", "batches", "failures", "rejections", "not_run")
META_FILE = "meta.json"
OUTPUTS_DIR = "outputs"
REPORT_RESULT = "result"  # where a report folder keeps its saved RunResult
TAGGED = "tagged"  # an object column's cells as encode_cell JSON (older saves: "json")


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


_INT_MIN, _INT_END = -(1 << 63), 1 << 64  # what orjson writes as an int


def encode_cell(value: Any) -> Any:
    """A table cell (a record's input, failed_items) as JSON, tagging what JSON cannot say.

    Tags are one-key dicts (`{"$decimal": "1.10"}`); a record's own dict that could be
    taken for one (a single key starting with `$`, or keys that are not strings) is kept as
    `{"$dict": [[key, value], ...]}`. decode_cell gives back a value of the same type.
    """
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        return value if _INT_MIN <= value < _INT_END else {"$int": str(value)}
    if kind is float:
        return value if math.isfinite(value) else {"$float": repr(value)}
    if kind is dict:
        if all(type(k) is str for k in value) and not (len(value) == 1 and _tagged_key(value)):
            return {k: encode_cell(v) for k, v in value.items()}
        return {"$dict": [[encode_cell(k), encode_cell(v)] for k, v in value.items()]}
    if kind is list:
        return [encode_cell(v) for v in value]
    if kind is tuple:
        return {"$tuple": [encode_cell(v) for v in value]}
    return _encode_other(value)


def _tagged_key(mapping: dict[str, Any]) -> bool:
    return next(iter(mapping)).startswith("$")


def _encode_other(value: Any) -> Any:
    """encode_cell for the kinds that are not plain JSON."""
    name = type(value).__name__
    if name == "NaTType":
        return {"$na": "NaT"}
    if name == "NAType":
        return {"$na": "NA"}
    if isinstance(value, decimal.Decimal):  # JsonNumber: always sent as a number
        return {"$number" if isinstance(value, JsonNumber) else "$decimal": str(value)}
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "Mm":
            return {"$array": [value.dtype.str, value.view("i8").tolist()]}
        if value.dtype.kind == "O":
            return {"$array": ["O", encode_cell(value.tolist())]}
        return {"$array": [value.dtype.str, encode_cell(value.tolist())]}
    if isinstance(value, np.generic):
        if value.dtype.kind in "Mm":
            return {"$numpy": [value.dtype.str, int(value.view("i8"))]}
        return {"$numpy": [value.dtype.str, encode_cell(value.item())]}
    if isinstance(value, pd.Timestamp):
        return {"$timestamp": [value.isoformat(), _zone_name(value.tzinfo)]}
    if isinstance(value, pd.Timedelta):
        return {"$pd_timedelta": int(value.value)}
    if isinstance(value, dt.datetime):
        return {"$datetime": [value.isoformat(), _zone_name(value.tzinfo)]}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, dt.time):
        return {"$time": value.isoformat()}
    if isinstance(value, dt.timedelta):
        return {"$timedelta": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, (set, frozenset)):
        items = [encode_cell(v) for v in value]
        return {"$set" if isinstance(value, set) else "$frozenset": items}
    if isinstance(value, BadLine):
        return {"$bad_line": [value.text, value.reason]}
    if isinstance(value, (bytes, bytearray)):
        return {"$bytes": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, int):  # an int subclass (IntEnum): its value
        return encode_cell(int(value))
    if isinstance(value, float):
        return encode_cell(float(value))
    if isinstance(value, str):
        return str(value)
    # A value no JSON form holds (a record's own object): kept as its text, and said so.
    text = repr(value)
    log.warning(
        "a saved result keeps a %s value as its text (%s): it loads back as that text",
        type(value).__qualname__,
        text[:80],
    )
    return {"$repr": text}


def _zone_name(tzinfo: Any) -> str | None:
    """The zone a datetime is in, by name (an IANA key), when it has one beyond its offset."""
    key = getattr(tzinfo, "key", None) or getattr(tzinfo, "zone", None)
    return str(key) if key else None


def decode_cell(value: Any) -> Any:
    """Inverse of encode_cell."""
    if isinstance(value, list):
        return [decode_cell(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((tag, inner),) = value.items()
        decode = _DECODERS.get(tag)
        if decode is not None:
            return decode(inner)
    return {k: decode_cell(v) for k, v in value.items()}


def _decode_datetime(inner: list[Any]) -> dt.datetime:
    text, zone = inner
    value = dt.datetime.fromisoformat(text)
    return value.astimezone(zoneinfo.ZoneInfo(zone)) if zone else value


def _decode_timestamp(inner: list[Any]) -> pd.Timestamp:
    text, zone = inner
    value = pd.Timestamp(text)
    return value.tz_convert(zone) if zone else value


def _decode_array(inner: list[Any]) -> np.ndarray:
    dtype, data = inner
    if np.dtype(dtype).kind in "Mm":
        return np.array(data, dtype="i8").view(dtype)
    return np.array(decode_cell(data), dtype=dtype)


def _decode_numpy(inner: list[Any]) -> Any:
    dtype, data = inner
    if np.dtype(dtype).kind in "Mm":
        return np.array(data, dtype="i8").view(dtype)[()]
    return np.array(decode_cell(data), dtype=dtype)[()]


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "$int": int,
    "$float": float,
    "$dict": lambda pairs: {decode_cell(k): decode_cell(v) for k, v in pairs},
    "$tuple": lambda items: tuple(decode_cell(v) for v in items),
    "$na": lambda which: pd.NaT if which == "NaT" else pd.NA,
    "$number": JsonNumber,
    "$decimal": decimal.Decimal,
    "$array": _decode_array,
    "$numpy": _decode_numpy,
    "$timestamp": _decode_timestamp,
    "$pd_timedelta": lambda ns: pd.Timedelta(ns, "ns"),
    "$datetime": _decode_datetime,
    "$date": dt.date.fromisoformat,
    "$time": dt.time.fromisoformat,
    "$timedelta": lambda parts: dt.timedelta(*parts),
    "$set": lambda items: {decode_cell(v) for v in items},
    "$frozenset": lambda items: frozenset(decode_cell(v) for v in items),
    "$bytes": base64.b64decode,
    "$bad_line": lambda parts: BadLine(*parts),
    "$repr": str,
}


def _encode_table(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """Tag-encode object columns holding more than strings (encode_cell), so Parquet stores
    them as text and load gives back the values themselves."""
    encoded: dict[str, str] = {}
    out = frame.copy()
    dumps = orjson.dumps
    for column in frame.columns:
        if frame[column].dtype != object:
            continue
        values = [v for v in frame[column] if v is not None]
        if all(isinstance(v, str) for v in values):
            continue
        out[column] = [None if v is None else dumps(encode_cell(v)).decode() for v in frame[column]]
        encoded[str(column)] = TAGGED
    return out, encoded


def _decode_table(frame: pd.DataFrame, encoded: dict[str, str]) -> pd.DataFrame:
    for column, kind in encoded.items():
        if kind == TAGGED:
            values = [None if v is None else decode_cell(orjson.loads(v)) for v in frame[column]]
        else:  # "json" / "json-tuple": saved before tagging (Decimals and datetimes as text)
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
