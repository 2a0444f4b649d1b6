"""Versions of a function that differ only in MemorySize, for the engine's memory ladder.

Lambda publishes a version from `$LATEST`'s configuration, so a version with more memory is
made by setting `$LATEST`'s MemorySize, publishing (with the CodeSha256 the run resolved,
so other code is never published), and setting it back at once, even when publishing fails.
The version's Description tags it (`lambdakit memory ladder: 2048 MB of <sha256>`), so a
later run finds and reuses it instead of publishing another; the user's aliases are never
touched. Needs `lambda:UpdateFunctionConfiguration` and `lambda:PublishVersion` (and
`lambda:ListVersionsByFunction` to find earlier ones).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from lambdakit.aws.connection import call_api
from lambdakit.errors import LambdakitError

__all__ = ["LADDER_TAG", "find_memory_version", "memory_version"]

log = logging.getLogger("lambdakit.aws.memory_versions")

LADDER_TAG = "lambdakit memory ladder"
_UPDATE_WAIT_S = 120.0


def _description(memory_mb: int, code_sha256: str) -> str:
    return f"{LADDER_TAG}: {memory_mb} MB of {code_sha256}"


def find_memory_version(
    client: Any, function_arn: str, code_sha256: str, memory_mb: int
) -> str | None:
    """The tagged version with this code and memory, published by an earlier run; or None."""
    wanted = _description(memory_mb, code_sha256)
    marker = None
    while True:
        kwargs: dict[str, Any] = {"FunctionName": function_arn}
        if marker:
            kwargs["Marker"] = marker
        page = call_api(client, "list_versions_by_function", **kwargs)
        for config in page.get("Versions", []):
            if (
                config.get("Version") != "$LATEST"
                and config.get("Description") == wanted
                and config.get("CodeSha256") == code_sha256
                and int(config.get("MemorySize", 0)) == memory_mb
            ):
                return str(config["Version"])
        marker = page.get("NextMarker")
        if not marker:
            return None


def _settled(client: Any, function_arn: str) -> dict[str, Any]:
    """$LATEST's configuration once an update has finished (polled, at most two minutes)."""
    deadline = time.monotonic() + _UPDATE_WAIT_S
    while True:
        config = call_api(client, "get_function_configuration", FunctionName=function_arn)
        status = config.get("LastUpdateStatus")
        if status != "InProgress":
            if status == "Failed":
                reason = config.get("LastUpdateStatusReason") or "no reason given"
                raise LambdakitError(f"updating {function_arn} failed: {reason}")
            return config
        if time.monotonic() > deadline:
            raise LambdakitError(f"updating {function_arn} did not finish in two minutes")
        time.sleep(0.25)


def memory_version(client: Any, function_arn: str, code_sha256: str, memory_mb: int) -> str:
    """A version of the function with `code_sha256` and `memory_mb`, found or published.

    Raises a LambdakitError (AccessDenied among them) when it can be neither; `$LATEST`'s
    MemorySize is what it was afterwards either way.
    """
    found = find_memory_version(client, function_arn, code_sha256, memory_mb)
    if found is not None:
        return found
    latest = _settled(client, function_arn)
    if latest.get("CodeSha256") != code_sha256:
        raise LambdakitError(
            f"$LATEST of {function_arn} runs other code ({latest.get('CodeSha256')}) than the "
            f"run's ({code_sha256}): a version with more memory would not be the same function"
        )
    original = int(latest["MemorySize"])
    updated = call_api(
        client, "update_function_configuration", FunctionName=function_arn,
        MemorySize=memory_mb, RevisionId=latest["RevisionId"],
    )  # fmt: skip
    try:
        settled = _settled(client, function_arn)
        published = call_api(
            client, "publish_version", FunctionName=function_arn, CodeSha256=code_sha256,
            Description=_description(memory_mb, code_sha256), RevisionId=settled["RevisionId"],
        )  # fmt: skip
    finally:
        # Set back whatever happened: $LATEST is the user's. Only if nobody changed it since.
        revision = updated.get("RevisionId")
        now = call_api(client, "get_function_configuration", FunctionName=function_arn)
        if int(now.get("MemorySize", original)) == memory_mb:
            call_api(
                client, "update_function_configuration", FunctionName=function_arn,
                MemorySize=original, RevisionId=now.get("RevisionId", revision),
            )  # fmt: skip
            _settled(client, function_arn)
    version = str(published["Version"])
    log.info("published version %s of %s with %d MB (memory ladder)", version, function_arn,
             memory_mb)  # fmt: skip
    return version
