"""The local service's functions: records on disk, their lookups, and what the API changes."""

from __future__ import annotations

import collections
import copy
import datetime as dt
import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any

from lambdakit.local.checks import (
    alias_version,
    check_alias_name,
    check_reservation,
    check_revision,
    conflict,
    invalid,
    not_found,
    not_ready,
    routing_weights,
    validate_config,
)
from lambdakit.local.codezip import MAX_UNZIPPED_BYTES, CodeInfo, code_dir, remove_unused_code
from lambdakit.local.layers import LayerStore, opt_digest, remove_unused_opt

__all__ = ["ACCOUNT_ID", "LATEST", "Store"]

log = logging.getLogger("lambdakit.local.state")

ACCOUNT_ID = "123456789012"
LATEST = "$LATEST"
_BUSY = "The operation cannot be performed at this time."


def _now() -> str:
    """Timestamp in the format Lambda uses for LastModified."""
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "+0000")


class Store:
    """All functions of one local service: records on disk, lookups, and the API's changes.

    Everything lives under the state directory and survives a restart:

        functions/<name>.json   one record per function ($LATEST, versions, aliases, concurrency)
        code/<sha256 hex>.zip   every uploaded zip, content-addressed and never modified
        code/<sha256 hex>/      its unpacked tree, shared read-only by every version using it
        layers/, opt/           layer versions, and each configuration's layers merged
                                (`self.layers`, see layers.py)

    Lookups raise ResourceNotFoundException, and every other refusal its own AWS error, as an
    `ApiError` already carrying the AWS error code and HTTP status. Each change saves the
    record it touches.
    """

    def __init__(
        self, state_dir: Path, *, region: str = "us-east-1", account_concurrency: int = 1000
    ) -> None:
        self.state_dir = Path(state_dir)
        self.region = region
        self.account_concurrency = account_concurrency
        self.code_root = self.state_dir / "code"
        self._functions_dir = self.state_dir / "functions"
        self._functions: dict[str, dict[str, Any]] = {}
        # Uploads in progress (digest -> how many): garbage collection keeps their code.
        self.pinned: collections.Counter[str] = collections.Counter()
        self.layers = LayerStore(self.state_dir, self.code_root, region=region, account=ACCOUNT_ID)
        self.layers.collect_garbage = self.collect_garbage

    def load(self) -> list[str]:
        """Read every function record; returns the names whose last update was unfinished."""
        self._functions_dir.mkdir(parents=True, exist_ok=True)
        self.code_root.mkdir(parents=True, exist_ok=True)
        self.layers.load()
        unfinished = []
        for path in sorted(self._functions_dir.glob("*.json")):
            try:
                record = json.loads(path.read_text())
                name, status = (
                    record["latest"]["FunctionName"],
                    record["latest"]["LastUpdateStatus"],
                )
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("ignoring unreadable function record %s: %r", path, exc)
                continue
            self._functions[name] = record
            if status == "InProgress":
                unfinished.append(name)
        return unfinished

    def _save(self, name: str) -> None:
        path = self._functions_dir / f"{name}.json"
        tmp = path.with_suffix(f".tmp-{uuid.uuid4().hex}")
        tmp.write_text(json.dumps(self._functions[name], indent=1, sort_keys=True))
        os.replace(tmp, path)  # atomic: a crash never leaves half a record

    def save(self, name: str) -> None:
        """Write a function's record after a change made outside this class (policies, URLs)."""
        self._save(name)

    def _forget(self, name: str) -> None:
        del self._functions[name]
        (self._functions_dir / f"{name}.json").unlink(missing_ok=True)

    def pin(self, sha_hex: str) -> None:
        """Keep an upload's code from garbage collection until it is unpinned."""
        self.pinned[sha_hex] += 1

    def unpin(self, sha_hex: str) -> None:
        """Undo one pin (once a record refers to the code, or the upload failed)."""
        self.pinned[sha_hex] -= 1
        if self.pinned[sha_hex] <= 0:
            del self.pinned[sha_hex]

    def collect_garbage(self) -> None:
        """Delete code no function, version, layer or upload in progress refers to."""
        used = set(self.pinned) | self.layers.used()
        merged = set()
        for record in self._functions.values():
            for cfg in [record["latest"], record["live"], *record["versions"].values()]:
                used.add(cfg["_CodeHex"])
                # A deleted layer version stays with the configurations that use it.
                used.update(cfg.get("_LayerHexes", ()))
                if cfg.get("_LayerHexes"):
                    merged.add(opt_digest(cfg["_LayerHexes"]))
        remove_unused_code(self.code_root, used)
        remove_unused_opt(self.layers.opt_root, merged)

    @property
    def home(self) -> dict[str, str]:
        """The region and account whose ARNs name functions here (parse_function_name's)."""
        return {"region": self.region, "account": ACCOUNT_ID}

    def arn(self, name: str, qualifier: str | None = None) -> str:
        """The function ARN, qualified when a qualifier is given."""
        base = f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{name}"
        return f"{base}:{qualifier}" if qualifier else base

    def names(self) -> list[str]:
        """Every function name, sorted."""
        return sorted(self._functions)

    def record(self, name: str) -> dict[str, Any]:
        """The raw record of a function; ResourceNotFoundException when missing."""
        record = self._functions.get(name)
        if record is None:
            raise not_found(f"Function not found: {self.arn(name)}")
        return record

    def config(self, name: str, qualifier: str | None = None) -> dict[str, Any]:
        """The configuration of $LATEST, a version or an alias's primary version."""
        record = self.record(name)
        if qualifier in (None, LATEST):
            return record["latest"]
        if qualifier.isdigit():
            cfg = record["versions"].get(qualifier)
            if cfg is None:
                raise not_found(f"Function not found: {self.arn(name, qualifier)}")
            return cfg
        alias = self.alias(name, qualifier)
        return self.config(name, alias["FunctionVersion"])

    def live_config(self, name: str, version: str) -> dict[str, Any]:
        """The configuration invocations run: for $LATEST, the last one whose update finished."""
        record = self.record(name)
        return record["live"] if version == LATEST else self.config(name, version)

    def code_dir(self, cfg: dict[str, Any]) -> Path:
        """The unpacked code of one configuration."""
        return code_dir(self.code_root, cfg["_CodeHex"])

    def opt_dir(self, cfg: dict[str, Any]) -> Path | None:
        """The merged layers of one configuration (its /opt), None when it has no layers."""
        hexes = cfg.get("_LayerHexes")
        return self.layers.opt_root / opt_digest(hexes) if hexes else None

    def layer_settings(self, arns: list[str], code_unzipped: int) -> dict[str, Any]:
        """What a configuration records for these Layers; AWS's error for any it cannot use."""
        versions = self.layers.resolve(arns)
        layers_unzipped = sum(v["_UnzippedSize"] for v in versions)
        total = code_unzipped + layers_unzipped
        if total > MAX_UNZIPPED_BYTES:
            raise invalid(
                "Function code combined with layers exceeds the maximum allowed size of "
                f"{MAX_UNZIPPED_BYTES} bytes. The actual size is {total} bytes."
            )
        return {
            "Layers": [
                {"Arn": v["LayerVersionArn"], "CodeSize": v["Content"]["CodeSize"]}
                for v in versions
            ],
            "_LayerHexes": [v["_CodeHex"] for v in versions],
            "_LayersUnzipped": layers_unzipped,
        }

    def concurrency(self, name: str) -> int | None:
        """Reserved concurrency of a function, None when it shares the account pool."""
        return self.record(name)["concurrency"]

    def list_versions(self, name: str) -> list[dict[str, Any]]:
        """$LATEST (with a qualified ARN, as AWS lists it) followed by every version in order."""
        record = self.record(name)
        latest = dict(record["latest"], FunctionArn=self.arn(name, LATEST))
        return [latest, *(record["versions"][v] for v in sorted(record["versions"], key=int))]

    def alias(self, name: str, alias_name: str) -> dict[str, Any]:
        """One alias; ResourceNotFoundException when missing."""
        found = self.record(name)["aliases"].get(alias_name)
        if found is None:
            raise not_found(f"Alias not found: {self.arn(name, alias_name)}")
        return found

    def aliases(self, name: str, function_version: str | None = None) -> list[dict[str, Any]]:
        """Every alias of a function, sorted by name, optionally only those using a version."""
        found = sorted(self.record(name)["aliases"].values(), key=lambda a: a["Name"])
        if function_version:
            found = [a for a in found if a["FunctionVersion"] == function_version]
        return found

    def alias_routes(self, name: str, alias_name: str) -> list[tuple[str, float]]:
        """(version, weight) pairs an alias splits its traffic over; weights sum to 1."""
        found = self.alias(name, alias_name)
        extra = found.get("RoutingConfig", {}).get("AdditionalVersionWeights", {})
        routes = [(v, float(w)) for v, w in extra.items()]
        return [(found["FunctionVersion"], 1.0 - sum(w for _, w in routes)), *routes]

    # -- changes made by Lambda's API ---------------------------------------------------

    def create_function(self, body: dict[str, Any], code: CodeInfo) -> dict[str, Any]:
        """Record a new function in State Pending; `finish_update` makes it Active."""
        name = body["FunctionName"]
        if name in self._functions:
            raise conflict(f"Function already exist: {name}")
        cfg: dict[str, Any] = {
            "FunctionName": name, "FunctionArn": self.arn(name), "Role": body["Role"],
            "Description": "", "Timeout": 3, "MemorySize": 128, "Environment": {"Variables": {}},
            "Version": LATEST, "PackageType": "Zip", "Architectures": ["x86_64"],
            "TracingConfig": {"Mode": "PassThrough"}, "EphemeralStorage": {"Size": 512},
            "SnapStart": {"ApplyOn": "None", "OptimizationStatus": "Off"},
            "LoggingConfig": {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{name}"},
            "State": "Pending", "StateReason": "The function is being created.",
            "StateReasonCode": "Creating", "LastUpdateStatus": "InProgress",
        }  # fmt: skip
        settings = validate_config(body, creating=True, current=cfg)
        arns = settings.pop("Layers", None)
        _apply(cfg, settings)
        if arns:
            cfg.update(self.layer_settings(arns, code.unzipped_size))
        self._set_code(cfg, code)
        self._functions[name] = {
            "latest": cfg,
            "live": copy.deepcopy(cfg),
            "versions": {},
            "aliases": {},
            "concurrency": None,
            "next_version": 1,
            "tags": dict(body.get("Tags") or {}),
        }
        published = self._publish(name, body.get("Description")) if body.get("Publish") else None
        self._save(name)
        return published or cfg

    def _set_code(self, cfg: dict[str, Any], code: CodeInfo) -> None:
        cfg.update(CodeSha256=code.sha256, CodeSize=code.size, _CodeHex=code.sha_hex)
        cfg["_CodeUnzipped"] = code.unzipped_size
        cfg.update(LastModified=_now(), RevisionId=str(uuid.uuid4()))

    def check_updatable(self, name: str, revision_id: str | None) -> dict[str, Any]:
        """The record of a function that may be updated now (409 while busy, 412 on revision)."""
        record = self.record(name)
        latest = record["latest"]
        if latest["State"] == "Pending":
            raise not_ready("Pending")
        if latest["LastUpdateStatus"] == "InProgress":
            raise conflict(f"{_BUSY} An update is in progress for resource: {self.arn(name)}")
        check_revision(latest, revision_id)
        return record

    def update_code(
        self,
        name: str,
        code: CodeInfo,
        revision_id: str | None = None,
        *,
        publish: bool = False,
        architectures: list[str] | None = None,
    ) -> dict[str, Any]:
        """Point $LATEST at new code; LastUpdateStatus is InProgress until it is unpacked."""
        record = self.check_updatable(name, revision_id)
        latest = record["latest"]
        total = code.unzipped_size + latest.get("_LayersUnzipped", 0)
        if total > MAX_UNZIPPED_BYTES:
            raise invalid(
                "Function code combined with layers exceeds the maximum allowed size of "
                f"{MAX_UNZIPPED_BYTES} bytes. The actual size is {total} bytes."
            )
        if architectures is not None:
            latest["Architectures"] = list(architectures)
        self._set_code(latest, code)
        _mark_updating(latest)
        published = self._publish(name, None) if publish else None
        self._save(name)
        return published or latest

    def update_config(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Change Handler, Timeout, MemorySize, Environment, ... of $LATEST."""
        record = self.check_updatable(name, body.get("RevisionId"))
        latest = record["latest"]
        settings = validate_config(body, creating=False, runtime=latest["Runtime"], current=latest)
        if "Layers" in settings:
            arns = settings.pop("Layers")
            # Looked up (and refused) before anything changes; [] removes every layer.
            layers = self.layer_settings(arns, latest.get("_CodeUnzipped", 0)) if arns else {}
            for key in ("Layers", "_LayerHexes", "_LayersUnzipped"):
                latest.pop(key, None)
            settings.update(layers)
        _apply(latest, settings)
        latest.update(LastModified=_now(), RevisionId=str(uuid.uuid4()))
        _mark_updating(latest)
        self._save(name)
        return latest

    def finish_update(self, name: str, error: str | None = None) -> None:
        """Make a created or updated $LATEST Active/Successful (or Failed), and serve it."""
        record = self._functions.get(name)
        if record is None:  # deleted while its code was being unpacked
            return
        waiting = [record["latest"]]
        # Versions published together with the code (Publish=True) wait for the same unpack.
        waiting += [v for v in record["versions"].values() if v["LastUpdateStatus"] == "InProgress"]
        for cfg in waiting:
            for key in _REASONS:
                cfg.pop(key, None)
            if error is None:
                cfg.update(State="Active", LastUpdateStatus="Successful")
            elif cfg["State"] == "Pending":
                cfg.update(State="Failed", LastUpdateStatus="Failed", StateReason=error)
                cfg["StateReasonCode"] = "InvalidZipFileException"
            else:
                cfg.update(LastUpdateStatus="Failed", LastUpdateStatusReason=error)
                cfg["LastUpdateStatusReasonCode"] = "InvalidZipFileException"
        # A failed create also becomes what invokes see, so they are refused as Failed.
        if error is None or record["live"]["State"] == "Pending":
            record["live"] = copy.deepcopy(record["latest"])
        self._save(name)
        self.collect_garbage()

    def delete_function(self, name: str, qualifier: str | None = None) -> None:
        """Delete a function with all its versions and aliases, or one published version."""
        record = self.record(name)
        if qualifier in (None, ""):
            self._forget(name)
            self.collect_garbage()
            return
        if qualifier == LATEST:
            raise invalid("$LATEST version cannot be deleted without deleting the function.")
        if not qualifier.isdigit():
            raise invalid("DeleteFunction does not delete aliases: use DeleteAlias.")
        self.config(name, qualifier)  # 404 when missing
        aliases = record["aliases"].values()
        users = [a["Name"] for a in aliases if qualifier in _alias_versions(a)]
        if users:
            raise conflict(f"Unable to delete version: the aliases {users} use it.")
        del record["versions"][qualifier]
        record.get("policies", {}).pop(qualifier, None)  # a version's policy goes with it
        record.get("event_invoke", {}).pop(qualifier, None)  # and its event invoke config
        self._save(name)
        self.collect_garbage()

    def publish_version(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Publish $LATEST as an immutable numbered copy (or return the identical last one)."""
        record = self.check_updatable(name, body.get("RevisionId"))
        latest = record["latest"]
        sha = body.get("CodeSha256")
        if sha is not None and sha != latest["CodeSha256"]:
            raise invalid(f"CodeSHA256 ({sha}) differs from $LATEST's ({latest['CodeSha256']}).")
        cfg = self._publish(name, body.get("Description"))
        self._save(name)
        return cfg

    def _publish(self, name: str, description: Any) -> dict[str, Any]:
        record = self.record(name)
        latest, versions = record["latest"], record["versions"]
        if versions:
            last = versions[str(max(int(v) for v in versions))]
            if _same_function(last, latest):
                return last  # AWS publishes nothing when neither code nor config changed
        number = str(record["next_version"])
        record["next_version"] += 1
        cfg = copy.deepcopy(latest)
        cfg.update(Version=number, FunctionArn=self.arn(name, number), LastModified=_now())
        cfg["RevisionId"] = str(uuid.uuid4())
        if description is not None:
            cfg["Description"] = str(description)
        versions[number] = cfg
        return cfg

    def put_alias(
        self, name: str, alias_name: str, body: dict[str, Any], *, create: bool
    ) -> dict[str, Any]:
        """Create or update an alias after checking its versions and routing weights."""
        record = self.record(name)
        if create:
            check_alias_name(alias_name)
            if alias_name in record["aliases"]:
                raise conflict(f"Alias already exists: {self.arn(name, alias_name)}")
            arn = self.arn(name, alias_name)
            current: dict[str, Any] = {"Name": alias_name, "AliasArn": arn, "Description": ""}
        else:
            current = copy.deepcopy(self.alias(name, alias_name))
            check_revision(current, body.get("RevisionId"))
        if "FunctionVersion" in body or create:
            current["FunctionVersion"] = alias_version(body.get("FunctionVersion"))
        if "Description" in body:
            current["Description"] = str(body["Description"])
        if "RoutingConfig" in body:
            current["RoutingConfig"] = {
                "AdditionalVersionWeights": routing_weights(body["RoutingConfig"])
            }
        self.config(name, current["FunctionVersion"])  # 404 for a missing version
        weights = current.get("RoutingConfig", {}).get("AdditionalVersionWeights", {})
        for extra in weights:
            self.config(name, extra)
            if extra == current["FunctionVersion"]:
                raise invalid("The additional version must differ from FunctionVersion.")
        if weights and current["FunctionVersion"] == LATEST:
            raise invalid("$LATEST is not supported for an alias pointing to more than 1 version")
        current["RevisionId"] = str(uuid.uuid4())
        record["aliases"][alias_name] = current
        self._save(name)
        return current

    def delete_alias(self, name: str, alias_name: str) -> None:
        """Delete an alias (404 when missing)."""
        self.alias(name, alias_name)
        record = self.record(name)
        del record["aliases"][alias_name]
        # Its function URL and resource policy go with it, as on AWS (urls.py, policy.py).
        record.get("urls", {}).pop(alias_name, None)
        record.get("policies", {}).pop(alias_name, None)
        record.get("event_invoke", {}).pop(alias_name, None)  # destinations.py
        self._save(name)

    def put_concurrency(self, name: str, value: Any) -> int:
        """Reserve concurrency for a function, leaving the account's unreserved minimum."""
        record = self.record(name)
        others = sum(r["concurrency"] or 0 for n, r in self._functions.items() if n != name)
        record["concurrency"] = check_reservation(value, self.account_concurrency, others)
        self._save(name)
        return value

    def set_tags(self, name: str, tags: dict[str, str]) -> None:
        """Replace a function's tags."""
        self.record(name)["tags"] = dict(tags)
        self._save(name)

    def delete_concurrency(self, name: str) -> None:
        """Return a function to the shared account pool."""
        self.record(name)["concurrency"] = None
        self._save(name)


_REASONS = (
    "StateReason",
    "StateReasonCode",
    "LastUpdateStatusReason",
    "LastUpdateStatusReasonCode",
)


def _mark_updating(cfg: dict[str, Any]) -> None:
    cfg.update(
        LastUpdateStatus="InProgress", LastUpdateStatusReason="The function is being updated."
    )
    cfg["LastUpdateStatusReasonCode"] = "Updating"


# Keys of a configuration that say nothing about what the function is.
_VOLATILE = frozenset({
    "FunctionArn", "Version", "LastModified", "RevisionId", "Description", "State",
    "LastUpdateStatus", *_REASONS,
})  # fmt: skip


def _same_function(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Code and every setting equal (a version differing only in, say, TracingConfig is new)."""
    keys = (set(a) | set(b)) - _VOLATILE
    return all(a.get(k) == b.get(k) for k in keys)


# Settings that an empty value returns to Lambda's default, which GetFunctionConfiguration
# shows by leaving them out.
_CLEARED_BY_EMPTY = ("KMSKeyArn", "DeadLetterConfig")


def _apply(cfg: dict[str, Any], settings: dict[str, Any]) -> None:
    """Store checked settings in a configuration."""
    cfg.update(settings)
    for key in _CLEARED_BY_EMPTY:
        if key in settings and not settings[key]:
            del cfg[key]
    if "EphemeralStorage" in settings:
        # Given explicitly: the environment gets a /tmp of its own of that size.
        cfg["_PrivateTmp"] = True


def _alias_versions(alias: dict[str, Any]) -> list[str]:
    return [
        alias["FunctionVersion"],
        *alias.get("RoutingConfig", {}).get("AdditionalVersionWeights", {}),
    ]
