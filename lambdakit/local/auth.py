"""Who may use the service: allowed access keys, and SigV4 verification of every API request.

Off by default on loopback (any signature, or none, is accepted, as before). With access keys
configured (`--access-key ID:SECRET`, `--keys-file FILE`; required off loopback), every
request to the Lambda API and to the management endpoints (faults, code) must be SigV4-signed
(service `lambda`, or `scheduler`) by one of them, and the signature is verified; others get
AWS's 403 (`MissingAuthenticationTokenException`, `UnrecognizedClientException`,
`InvalidSignatureException`). Function URLs decide by their own AuthType.

The execution environments get a key pair of their own, made per server start, so that
handlers calling the service through `AWS_ENDPOINT_URL_LAMBDA` are let in.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from lambdakit.local.guard import is_api_path
from lambdakit.local.sigv4 import Credential, KeyLookup, key_lookup, verify_request

__all__ = ["Authenticator", "load_keys_file", "parse_access_key", "session_credentials"]

SERVICES = ("lambda", "scheduler")
_KEY_ID = re.compile(r"^[A-Za-z0-9]{1,128}$")
_SCOPE_SERVICE = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/,\s]+/([^/,\s]+)/aws4_request")


def parse_access_key(text: str) -> tuple[str, str]:
    """("ID", "SECRET") from "ID:SECRET"; ValueError names what is wrong."""
    key_id, sep, secret = text.partition(":")
    if not sep or not secret:
        # Not quoted, not even its start: with another separator the secret follows the id.
        what = f"{len(text)} characters without ':'" if not sep else "nothing after ':'"
        raise ValueError(f"expected ACCESS_KEY_ID:SECRET_ACCESS_KEY, got {what} (not shown)")
    if not _KEY_ID.match(key_id):
        raise ValueError(f"an access key id is 1-128 letters and digits, got {key_id[:40]!r}")
    return key_id, secret


def load_keys_file(path: Path) -> dict[str, str]:
    """Allowed keys from a file: a JSON object {id: secret}, or "ID:SECRET" lines (# comments)."""
    text = Path(path).read_text()
    if text.lstrip().startswith("{"):
        loaded = json.loads(text)
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in loaded.items()):
            raise ValueError(f"{path}: expected a JSON object of access key id -> secret")
        return {parse_access_key(f"{k}:{v}")[0]: v for k, v in loaded.items()}
    keys: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if line:
            try:
                key_id, secret = parse_access_key(line)
            except ValueError as exc:
                raise ValueError(f"{path}, line {number}: {exc}") from None
            keys[key_id] = secret
    if not keys:
        raise ValueError(f"{path} holds no access keys")
    return keys


def session_credentials() -> dict[str, str]:
    """A fresh key pair for the environments (what Lambda injects from the function's role)."""
    return {
        "AWS_ACCESS_KEY_ID": "ASIA" + secrets.token_hex(8).upper(),
        "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
        "AWS_SESSION_TOKEN": secrets.token_urlsafe(48),
    }


@dataclass(frozen=True)
class Authenticator:
    """Verifies SigV4 on every API request when `keys` is not empty."""

    keys: Mapping[str, str | Credential] = field(default_factory=dict)
    region: str = "us-east-1"

    def __post_init__(self) -> None:
        object.__setattr__(self, "_lookup", key_lookup(dict(self.keys)))

    @property
    def lookup(self) -> KeyLookup:
        """The allowed keys as a sigv4 KeyLookup (for function URLs with AuthType AWS_IAM)."""
        return self._lookup  # type: ignore[attr-defined, no-any-return]

    @property
    def enabled(self) -> bool:
        """True when requests must be signed by an allowed key."""
        return bool(self.keys)

    def with_environments(self, credentials: Mapping[str, str]) -> Authenticator:
        """These keys plus the environments' own (see session_credentials)."""
        if not self.enabled:
            return self
        own = Credential(credentials["AWS_SECRET_ACCESS_KEY"], credentials["AWS_SESSION_TOKEN"])
        keys = {**self.keys, credentials["AWS_ACCESS_KEY_ID"]: own}
        return Authenticator(keys=keys, region=self.region)

    async def check(self, request: web.Request) -> None:
        """Raise AWS's 403 unless `request` is signed by an allowed key (when enabled)."""
        if not self.enabled or not is_api_path(request.path):
            return
        match = _SCOPE_SERVICE.search(request.headers.get("Authorization", ""))
        service = match.group(1) if match and match.group(1) in SERVICES else SERVICES[0]
        verdict = await verify_request(
            request, service=service, keys=self._lookup, region=self.region
        )
        if not verdict.ok:
            raise verdict.error()

    @web.middleware
    async def middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        """aiohttp middleware applying `check` (inside the error middleware)."""
        await self.check(request)
        return await handler(request)
