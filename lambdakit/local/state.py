"""The changes Lambda's API makes to local functions, versions, aliases and concurrency."""

from __future__ import annotations

import copy
import datetime as dt
import uuid
from typing import Any

from lambdakit.local.checks import (
    alias_version,
    check_alias_name,
    check_reservation,
    check_revision,
    conflict,
    invalid,
    not_ready,
    routing_weights,
    validate_config,
)
from lambdakit.local.codezip import CodeInfo
from lambdakit.local.records import LATEST, FunctionRecords

__all__ = ["Store"]

_BUSY = "The operation cannot be performed at this time."


def _now() -> str:
    """Timestamp in the format Lambda uses for LastModified."""
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "+0000")


class Store(FunctionRecords):
    """All functions of one local service, mirrored to disk on every change.

    Errors are raised as `ApiError`, already carrying the AWS error code and HTTP status.
    """

    def create_function(self, body: dict[str, Any], code: CodeInfo) -> dict[str, Any]:
        """Record a new function in State Pending; `finish_update` makes it Active."""
        name = body["FunctionName"]
        if name in self._functions:
            raise conflict(f"Function already exist: {name}")
        settings = validate_config(body, creating=True)
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
        cfg.update(settings)
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
        self, name: str, code: CodeInfo, revision_id: str | None = None, *, publish: bool = False
    ) -> dict[str, Any]:
        """Point $LATEST at new code; LastUpdateStatus is InProgress until it is unpacked."""
        record = self.check_updatable(name, revision_id)
        latest = record["latest"]
        self._set_code(latest, code)
        _mark_updating(latest)
        published = self._publish(name, None) if publish else None
        self._save(name)
        return published or latest

    def update_config(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Change Handler, Timeout, MemorySize, Environment, ... of $LATEST."""
        record = self.check_updatable(name, body.get("RevisionId"))
        settings = validate_config(body, creating=False, runtime=record["latest"]["Runtime"])
        latest = record["latest"]
        latest.update(settings)
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
        del self.record(name)["aliases"][alias_name]
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


def _same_function(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("CodeSha256", "Handler", "Runtime", "Timeout", "MemorySize", "Environment", "Role")
    return all(a.get(k) == b.get(k) for k in keys)


def _alias_versions(alias: dict[str, Any]) -> list[str]:
    return [
        alias["FunctionVersion"],
        *alias.get("RoutingConfig", {}).get("AdditionalVersionWeights", {}),
    ]
