"""Lambda layers in the local service: layer versions on disk, their REST API, and /opt.

    layers/<name>.json      one record per layer: its versions, and the next version number
    code/<sha256 hex>.zip   a layer's zip, beside function code (content-addressed, shared)
    opt/<sha256 hex>/       the layers of one function configuration merged in order

PublishLayerVersion takes the zip inline (`Content.ZipFile`) and checks it exactly as
function code is checked (codezip.check_zip: zip slip, absolute paths, symlinks leaving the
package, sizes); it is unpacked before the reply, so a function can use it at once. Version
numbers are never reused, as on AWS, even after every version was deleted. A deleted
version stays usable by the functions that reference it (AWS keeps a copy for them), so its
code is kept while a configuration names it. CompatibleRuntimes and CompatibleArchitectures
are stored and filter ListLayers / ListLayerVersions; like AWS, CreateFunction does not
enforce them.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from lambdakit.local.checks import (
    LAYER_VERSION_ARN_RE,
    ApiError,
    invalid,
    not_found,
    optional,
)
from lambdakit.local.codezip import (
    MAX_CODE_REQUEST_BYTES,
    CodeInfo,
    check_zip,
    store_zip,
    unpack,
    zip_field,
)
from lambdakit.local.protocol import page, public, read_json

__all__ = [
    "LAYERS",
    "LayerStore",
    "add_layer_routes",
    "merge_layers",
    "opt_digest",
    "remove_unused_opt",
]

log = logging.getLogger("lambdakit.local.layers")

_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,140}$")
_LAYER_ARN_RE = re.compile(
    r"^arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):layer:"
    r"(?P<name>[a-zA-Z0-9_-]{1,140})$"
)


@functools.cache
def _runtimes() -> frozenset[str]:
    """The Runtime enum of botocore's lambda model: what CompatibleRuntimes may name."""
    import botocore.session  # only when a layer names runtimes: the model takes a while

    model = botocore.session.get_session().get_service_model("lambda")
    return frozenset(model.shape_for("Runtime").enum)


_ARCHITECTURES = ("x86_64", "arm64")
_MISSING = "The resource you requested does not exist."


def _now() -> str:
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "+0000")


def _validation(message: str) -> ApiError:
    # Lambda's front end spells the key lower-case (validation.validation_error does too).
    return ApiError(400, "ValidationException", message, message_key="message")


def _string_list(body: dict[str, Any], key: str, allowed: Any, most: int) -> list[str] | None:
    """A list member of PublishLayerVersion, each value one of `allowed`, at most `most`."""
    values = optional(body, key, list)
    if values is None:
        return None
    field = key[0].lower() + key[1:]
    if len(values) > most:
        raise _validation(
            f"1 validation error detected: Value {json.dumps(values)[:300]} at '{field}' "
            f"failed to satisfy constraint: Member must have length less than or equal to {most}"
        )
    for value in values:
        if not isinstance(value, str) or value not in allowed:
            raise _validation(
                f"1 validation error detected: Value {json.dumps(value)[:100]} at '{field}' "
                "failed to satisfy constraint: Member must satisfy enum value set: "
                f"[{', '.join(sorted(allowed))}]"
            )
    return list(values)


class LayerStore:
    """Every layer of one local service: versions on disk, lookups and what the API changes."""

    def __init__(self, state_dir: Path, code_root: Path, *, region: str, account: str) -> None:
        self.code_root = Path(code_root)
        self.region = region
        self.account = account
        self._dir = Path(state_dir) / "layers"
        self.opt_root = Path(state_dir) / "opt"
        self._layers: dict[str, dict[str, Any]] = {}
        # Uploads in progress (digest -> how many): garbage collection keeps their code.
        self.pinned: collections.Counter[str] = collections.Counter()
        # Set by the function store: deletes code no layer or function refers to any more.
        self.collect_garbage: Callable[[], None] = lambda: None

    def load(self) -> None:
        """Read every layer record."""
        self._dir.mkdir(parents=True, exist_ok=True)
        for path in sorted(self._dir.glob("_*.json")):
            try:
                record = json.loads(path.read_text())
                self._layers[record["LayerName"]] = record
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("ignoring unreadable layer record %s: %r", path, exc)

    def _save(self, name: str) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        path = self._dir / f"_{name}.json"
        tmp = path.with_suffix(f".tmp-{uuid.uuid4().hex}")
        tmp.write_text(json.dumps(self._layers[name], indent=1, sort_keys=True))
        os.replace(tmp, path)

    def layer_arn(self, name: str) -> str:
        """The layer's ARN (without a version)."""
        return f"arn:aws:lambda:{self.region}:{self.account}:layer:{name}"

    def name_of(self, raw: str) -> str:
        """A LayerName path parameter (a name or a layer ARN of here) as a name."""
        match = _LAYER_ARN_RE.match(raw)
        if match is not None:
            if (match["region"], match["account"]) != (self.region, self.account):
                raise not_found(_MISSING)
            return match["name"]
        if not _NAME_RE.match(raw):
            raise _validation(
                f"1 validation error detected: Value '{raw[:200]}' at 'layerName' failed to "
                "satisfy constraint: Member must satisfy regular expression pattern: "
                "[a-zA-Z0-9-_]+ (or a layer ARN)"
            )
        return raw

    # -- the API's changes and lookups ------------------------------------------------------

    def publish(self, name: str, body: dict[str, Any], code: CodeInfo) -> dict[str, Any]:
        """Record a new version of a layer (creating the layer); returns the version."""
        runtimes = _string_list(body, "CompatibleRuntimes", _runtimes(), 15)
        architectures = _string_list(body, "CompatibleArchitectures", _ARCHITECTURES, 2)
        description = optional(body, "Description", str) or ""
        license_info = optional(body, "LicenseInfo", str)
        if len(description) > 256:
            raise invalid("Description must be at most 256 characters.")
        if license_info is not None and len(license_info) > 512:
            raise invalid("LicenseInfo must be at most 512 characters.")
        layer = self._layers.setdefault(
            name, {"LayerName": name, "next_version": 1, "versions": {}}
        )
        number = layer["next_version"]
        layer["next_version"] += 1
        version: dict[str, Any] = {
            "LayerArn": self.layer_arn(name),
            "LayerVersionArn": f"{self.layer_arn(name)}:{number}",
            "Version": number,
            "Description": description,
            "CreatedDate": _now(),
            "Content": {"CodeSha256": code.sha256, "CodeSize": code.size},
            "_CodeHex": code.sha_hex,
            "_UnzippedSize": code.unzipped_size,
        }
        if runtimes is not None:
            version["CompatibleRuntimes"] = runtimes
        if architectures is not None:
            version["CompatibleArchitectures"] = architectures
        if license_info is not None:
            version["LicenseInfo"] = license_info
        layer["versions"][str(number)] = version
        self._save(name)
        return version

    def version(self, name: str, number: Any) -> dict[str, Any]:
        """One layer version; ResourceNotFoundException when missing or deleted."""
        found = self._layers.get(name, {}).get("versions", {}).get(str(number))
        if found is None:
            raise not_found(_MISSING)
        return found

    def by_arn(self, arn: Any) -> dict[str, Any]:
        """The version a LayerVersionArn names."""
        if not isinstance(arn, str) or not LAYER_VERSION_ARN_RE.match(arn):
            raise _validation(
                f"1 validation error detected: Value '{str(arn)[:200]}' at 'arn' failed to "
                "satisfy constraint: Member must satisfy regular expression pattern: "
                "arn:aws:lambda:<region>:<account>:layer:<name>:<version>"
            )
        layer_arn, number = arn.rsplit(":", 1)
        if not layer_arn.startswith(f"arn:aws:lambda:{self.region}:{self.account}:layer:"):
            raise not_found(_MISSING)
        return self.version(layer_arn.rsplit(":", 1)[1], number)

    def delete(self, name: str, number: Any) -> None:
        """Delete one version (nothing to do when it is missing, as on AWS)."""
        layer = self._layers.get(name)
        if layer is None or layer["versions"].pop(str(number), None) is None:
            return
        self._save(name)
        self.collect_garbage()

    def versions(
        self, name: str, runtime: str | None = None, architecture: str | None = None
    ) -> list[dict[str, Any]]:
        """A layer's versions matching the filters, newest first."""
        layer = self._layers.get(name, {"versions": {}})
        found = [layer["versions"][n] for n in sorted(layer["versions"], key=int, reverse=True)]
        return [v for v in found if _matches(v, runtime, architecture)]

    def layers(
        self, runtime: str | None = None, architecture: str | None = None
    ) -> list[dict[str, Any]]:
        """ListLayers' items: each layer with a matching version, and its newest such version."""
        out = []
        for name in sorted(self._layers):
            matching = self.versions(name, runtime, architecture)
            if matching:
                latest = {k: v for k, v in matching[0].items() if k not in ("LayerArn", "Content")}
                out.append(
                    {"LayerName": name, "LayerArn": self.layer_arn(name),
                     "LatestMatchingVersion": latest}
                )  # fmt: skip
        return out

    def resolve(self, arns: list[str]) -> list[dict[str, Any]]:
        """The versions a function's Layers name, in order; AWS's error for any it cannot use."""
        seen: dict[str, str] = {}
        found = []
        for arn in arns:
            layer_arn, number = arn.rsplit(":", 1)
            region, account = layer_arn.split(":")[3:5]
            if region != self.region:
                raise invalid(
                    "Layers are not in the same region as the function. "
                    f"Layers are expected to be in region {self.region}."
                )
            name = layer_arn.rsplit(":", 1)[1]
            version = self._layers.get(name, {}).get("versions", {}).get(number)
            if account != self.account or version is None:
                raise invalid(f"Layer version {arn} does not exist.")
            if layer_arn in seen:
                raise invalid(
                    "Two different versions of the same layer are not allowed to be referenced "
                    f"in the same function. {seen[layer_arn]} and {arn} are versions of the "
                    "same layer."
                )
            seen[layer_arn] = arn
            found.append(version)
        return found

    def used(self) -> set[str]:
        """Digests of every stored version's code, and of uploads in progress."""
        used = set(self.pinned)
        for layer in self._layers.values():
            used.update(v["_CodeHex"] for v in layer["versions"].values())
        return used


def _matches(version: dict[str, Any], runtime: str | None, architecture: str | None) -> bool:
    if runtime is not None and runtime not in version.get("CompatibleRuntimes", ()):
        return False
    return architecture is None or architecture in version.get("CompatibleArchitectures", ())


# -- /opt: the layers of one configuration, merged in order -----------------------------------


def opt_digest(code_hexes: list[str]) -> str:
    """The name of the merged folder of these layer digests, in this order."""
    return hashlib.sha256("\n".join(code_hexes).encode()).hexdigest()


def merge_layers(code_root: Path, opt_root: Path, code_hexes: list[str]) -> Path:
    """Merge unpacked layers in order into one folder (a later layer's file wins); idempotent.

    Files are hard links to the unpacked layers (copies where linking fails), symlinks stay
    symlinks; the folder appears whole or not at all.
    """
    target = opt_root / opt_digest(code_hexes)
    if target.is_dir():
        return target
    opt_root.mkdir(parents=True, exist_ok=True)
    tmp = opt_root / f".{target.name}.{uuid.uuid4().hex}.merging"
    tmp.mkdir()
    try:
        for sha_hex in code_hexes:
            source = unpack(code_root, sha_hex)
            _merge_tree(source, tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another merge of the same layers won
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _merge_tree(source: Path, dest: Path) -> None:
    for entry in os.scandir(source):
        target = dest / entry.name
        if entry.is_dir(follow_symlinks=False):
            if target.is_symlink() or (target.exists() and not target.is_dir()):
                target.unlink()
            target.mkdir(exist_ok=True)
            _merge_tree(Path(entry.path), target)
            continue
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.is_dir():
            shutil.rmtree(target)
        if entry.is_symlink():
            os.symlink(os.readlink(entry.path), target)
            continue
        try:
            os.link(entry.path, target)
        except OSError:
            shutil.copy2(entry.path, target)


def remove_unused_opt(opt_root: Path, used: set[str]) -> None:
    """Delete every merged folder no configuration refers to."""
    if not opt_root.is_dir():
        return
    for path in opt_root.iterdir():
        if not path.name.startswith(".") and path.name not in used:
            shutil.rmtree(path, ignore_errors=True)


# -- REST API (botocore's 2018-10-31 paths) --------------------------------------------------

LAYERS: web.AppKey[LayerStore] = web.AppKey("lambdakit_layers", LayerStore)


def _view(request: web.Request, version: dict[str, Any]) -> dict[str, Any]:
    """A version as GetLayerVersion shows it: Content.Location is where its zip downloads."""
    location = f"{request.scheme}://{request.host}/_lambdakit/code/{version['_CodeHex']}.zip"
    return public(version, Content={**version["Content"], "Location": location})


def _number(request: web.Request) -> int:
    raw = request.match_info["version"]
    if not raw.isdigit():
        raise _validation(f"VersionNumber must be a version number, got {raw!r}.")
    return int(raw)


def _filters(request: web.Request) -> tuple[str | None, str | None]:
    runtime = request.query.get("CompatibleRuntime")
    architecture = request.query.get("CompatibleArchitecture")
    if runtime is not None and runtime not in _runtimes():
        raise _validation(f"Invalid CompatibleRuntime {runtime!r}: not a Lambda runtime.")
    if architecture is not None and architecture not in _ARCHITECTURES:
        raise _validation(f"Invalid CompatibleArchitecture {architecture!r}: x86_64 or arm64.")
    return runtime, architecture


async def publish_layer_version(request: web.Request) -> web.Response:
    """PublishLayerVersion (201): a zip from Content.ZipFile, checked like function code."""
    layers = request.app[LAYERS]
    name = layers.name_of(request.match_info["layer"])
    body = await read_json(request, limit=MAX_CODE_REQUEST_BYTES)
    data = zip_field(optional(body, "Content", dict) or {}, "ZipFile", "Content.ZipFile")
    loop = asyncio.get_running_loop()
    info = await loop.run_in_executor(None, check_zip, data)
    layers.pinned[info.sha_hex] += 1
    try:
        await loop.run_in_executor(None, store_zip, layers.code_root, data, info)
        try:
            await loop.run_in_executor(None, unpack, layers.code_root, info.sha_hex)
        except Exception as exc:  # a corrupt member only shows when it is read
            raise invalid(f"Could not unpack the uploaded zip: {exc}") from None
        version = layers.publish(name, body, info)
    finally:
        layers.pinned[info.sha_hex] -= 1
        if layers.pinned[info.sha_hex] <= 0:
            del layers.pinned[info.sha_hex]
        layers.collect_garbage()  # a refused upload leaves nothing behind
    return web.json_response(_view(request, version), status=201)


async def get_layer_version(request: web.Request) -> web.Response:
    """GetLayerVersion."""
    layers = request.app[LAYERS]
    name = layers.name_of(request.match_info["layer"])
    return web.json_response(_view(request, layers.version(name, _number(request))))


async def delete_layer_version(request: web.Request) -> web.Response:
    """DeleteLayerVersion (204); functions using it keep it."""
    layers = request.app[LAYERS]
    layers.delete(layers.name_of(request.match_info["layer"]), _number(request))
    return web.Response(status=204)


async def list_layer_versions(request: web.Request) -> web.Response:
    """ListLayerVersions: newest first, filtered by CompatibleRuntime/Architecture."""
    layers = request.app[LAYERS]
    name = layers.name_of(request.match_info["layer"])
    found = layers.versions(name, *_filters(request))
    items = [{k: v for k, v in item.items() if k not in ("LayerArn", "Content")} for item in found]
    return page(request, [dict(i, _Key=str(i["Version"])) for i in items], "_Key", "LayerVersions")


async def list_layers(request: web.Request) -> web.Response:
    """ListLayers, or GetLayerVersionByArn (the same path with ?find=LayerVersion)."""
    layers = request.app[LAYERS]
    if request.query.get("find") == "LayerVersion":
        return web.json_response(_view(request, layers.by_arn(request.query.get("Arn"))))
    return page(request, layers.layers(*_filters(request)), "LayerName", "Layers")


def add_layer_routes(app: web.Application, layers: LayerStore) -> None:
    """Mount the layer operations at their botocore paths."""
    app[LAYERS] = layers
    base = "/2018-10-31/layers"
    app.router.add_get(base, list_layers)
    app.router.add_post(base + "/{layer}/versions", publish_layer_version)
    app.router.add_get(base + "/{layer}/versions", list_layer_versions)
    app.router.add_get(base + "/{layer}/versions/{version}", get_layer_version)
    app.router.add_delete(base + "/{layer}/versions/{version}", delete_layer_version)
