"""The local service's function records on disk, and the lookups that resolve them."""

from __future__ import annotations

import collections
import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any

from lambdakit.local.checks import not_found
from lambdakit.local.codezip import code_dir, remove_unused_code

__all__ = ["ACCOUNT_ID", "LATEST", "FunctionRecords"]

log = logging.getLogger("lambdakit.local.records")

ACCOUNT_ID = "123456789012"
LATEST = "$LATEST"


class FunctionRecords:
    """Every function record of one state directory, read back on `load` and kept current.

    Everything lives under the state directory and survives a restart:

        functions/<name>.json   one record per function ($LATEST, versions, aliases, concurrency)
        code/<sha256 hex>.zip   every uploaded zip, content-addressed and never modified
        code/<sha256 hex>/      its unpacked tree, shared read-only by every version using it

    Lookups raise ResourceNotFoundException as an `ApiError`. The changes Lambda's API makes
    to the records are `Store`'s (state.py), which saves each record it touches.
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

    def load(self) -> list[str]:
        """Read every function record; returns the names whose last update was unfinished."""
        self._functions_dir.mkdir(parents=True, exist_ok=True)
        self.code_root.mkdir(parents=True, exist_ok=True)
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
        """Delete code no function, version or upload in progress refers to."""
        used = set(self.pinned)
        for record in self._functions.values():
            for cfg in [record["latest"], record["live"], *record["versions"].values()]:
                used.add(cfg["_CodeHex"])
        remove_unused_code(self.code_root, used)

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
