"""AWS Signature Version 4 verification of incoming requests, as botocore signs them.

`verify()` rebuilds the canonical request from what arrived (method, path, query, the headers
named in `SignedHeaders`, the body's SHA-256), derives the signing key from the secret that
`keys` holds for the access key id, and compares signatures in constant time. The verdict
tells apart a request without a signature, an access key nobody allowed, a signature that does
not match, and a date outside the five-minute window AWS allows, each with the error code and
message AWS answers with (`verdict.error()` is the 403 ApiError to raise).

Only the `Authorization: AWS4-HMAC-SHA256 ...` header form is read (what botocore, the AWS CLI
and `curl --aws-sigv4` send); presigned URLs (`X-Amz-Signature` in the query) are refused as
unsigned, never half-checked.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote

from aiohttp import web

from lambdakit.local.checks import ApiError

__all__ = [
    "ALGORITHM",
    "Credential",
    "KeyLookup",
    "Verdict",
    "canonical_request",
    "key_lookup",
    "signing_key",
    "string_to_sign",
    "verify",
    "verify_request",
]

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = dt.timedelta(minutes=5)  # AWS's window either side of its own clock
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_PARAM = re.compile(r"\s*([A-Za-z]+)\s*=\s*([^,\s]*)\s*")

# The messages AWS answers with, so a client's error handling sees what it would see on AWS.
_BAD_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. Check your "
    "AWS Secret Access Key and signing method. Consult the service documentation for details."
)
_UNKNOWN_KEY = "The security token included in the request is invalid."


@dataclass(frozen=True)
class Credential:
    """The secret behind an access key id, and the session token it must come with (if any)."""

    secret_key: str
    session_token: str | None = None


KeyLookup = Callable[[str], Credential | None]


def key_lookup(keys: Mapping[str, str | Credential] | KeyLookup) -> KeyLookup:
    """A lookup access key id -> Credential from a mapping (to a secret or a Credential)."""
    if callable(keys):
        return keys
    table = {k: v if isinstance(v, Credential) else Credential(v) for k, v in keys.items()}
    return table.get


@dataclass(frozen=True)
class Verdict:
    """What verification concluded; `ok` only when the signature matched within the window.

    kind: "ok" | "unsigned" | "malformed" | "unknown_key" | "bad_signature" | "expired" |
    "not_yet_current" | "wrong_scope".
    """

    kind: str
    message: str = ""
    access_key: str | None = None

    @property
    def ok(self) -> bool:
        """True when the request is signed by a known key and the signature matches."""
        return self.kind == "ok"

    @property
    def code(self) -> str | None:
        """The AWS error code for this verdict (None when ok)."""
        return _CODES[self.kind]

    def error(self) -> ApiError:
        """The 403 AWS answers with for this verdict (do not call on an ok verdict)."""
        if self.ok:
            raise ValueError("an ok verdict has no error")
        return ApiError(403, _CODES[self.kind], self.message)


_CODES: dict[str, str | None] = {
    "ok": None,
    "unsigned": "MissingAuthenticationTokenException",
    "malformed": "IncompleteSignatureException",
    "unknown_key": "UnrecognizedClientException",
    "bad_signature": "InvalidSignatureException",
    "expired": "InvalidSignatureException",
    "not_yet_current": "InvalidSignatureException",
    "wrong_scope": "InvalidSignatureException",
}


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    """The derived key: HMAC chain over date (YYYYMMDD), region, service, "aws4_request"."""
    key = _hmac(f"AWS4{secret_key}".encode(), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    """The string SigV4 signs: algorithm, timestamp, scope, hash of the canonical request."""
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def canonical_request(
    method: str,
    raw_path: str,
    canonical_query: str,
    headers: Iterable[tuple[str, str]],
    signed_headers: list[str],
    payload_hash: str,
) -> str:
    """The canonical request over the named headers (values trimmed, repeats joined by ',')."""
    values: dict[str, list[str]] = {}
    for name, value in headers:
        values.setdefault(name.lower(), []).append(" ".join(value.split()))
    lines = [f"{name}:{','.join(values.get(name, []))}" for name in signed_headers]
    return "\n".join(
        [
            method.upper(),
            quote(_remove_dot_segments(raw_path), safe="/~"),
            canonical_query,
            "\n".join(lines) + "\n",
            ";".join(signed_headers),
            payload_hash,
        ]
    )


def verify(
    *,
    method: str,
    raw_path: str,
    query_string: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    service: str,
    keys: KeyLookup,
    region: str | None = None,
    now: dt.datetime | None = None,
    allow_unsigned_payload: bool = False,
) -> Verdict:
    """Check one request's SigV4 signature; never raises on anything the client sent.

    raw_path and query_string are as they arrived (still percent-encoded). `region=None`
    accepts whatever region the credential scope names; the service must be `service`.
    """
    pairs = list(headers)
    first = {}
    for name, value in pairs:
        first.setdefault(name.lower(), value)
    auth = first.get("authorization")
    if auth is None or not auth.strip():
        return Verdict("unsigned", "Missing Authentication Token")
    parsed = _parse_authorization(auth)
    if isinstance(parsed, Verdict):
        return parsed
    access_key, scope_parts, signed_headers, signature = parsed
    date, scope_region, scope_service, terminator = scope_parts
    if scope_service != service or terminator != "aws4_request":
        return Verdict(
            "wrong_scope",
            f"Credential should be scoped to correct service: '{service}'.",
            access_key,
        )
    if region is not None and scope_region != region:
        return Verdict(
            "wrong_scope",
            f"Credential should be scoped to a valid region, not '{scope_region}'. "
            f"This endpoint serves '{region}'.",
            access_key,
        )
    if "host" not in signed_headers:
        return Verdict(
            "malformed", "'Host' must be a signed header; SignedHeaders does not name it.",
            access_key,
        )  # fmt: skip
    amz_date = first.get("x-amz-date")
    if amz_date is None:
        return Verdict("malformed", "Authorization header requires existence of X-Amz-Date.")
    if "x-amz-date" not in signed_headers:
        return Verdict("malformed", "'X-Amz-Date' must be a signed header.", access_key)
    try:
        signed_at = dt.datetime.strptime(amz_date, _AMZ_DATE).replace(tzinfo=dt.UTC)
    except ValueError:
        return Verdict(
            "malformed", f"X-Amz-Date {amz_date[:40]!r} is not in the form YYYYMMDD'T'HHMMSS'Z'.",
            access_key,
        )  # fmt: skip
    if date != amz_date[:8]:
        return Verdict(
            "wrong_scope",
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{date}' != '{amz_date[:8]}', from '{amz_date}'.",
            access_key,
        )
    clock = now or dt.datetime.now(dt.UTC)
    if signed_at < clock - MAX_SKEW:
        return Verdict(
            "expired",
            f"Signature expired: {amz_date} is now earlier than "
            f"{(clock - MAX_SKEW).strftime(_AMZ_DATE)} ({clock.strftime(_AMZ_DATE)} - 5 min.)",
            access_key,
        )
    if signed_at > clock + MAX_SKEW:
        return Verdict(
            "not_yet_current",
            f"Signature not yet current: {amz_date} is still later than "
            f"{(clock + MAX_SKEW).strftime(_AMZ_DATE)} ({clock.strftime(_AMZ_DATE)} + 5 min.)",
            access_key,
        )
    credential = keys(access_key)
    if credential is None:
        return Verdict("unknown_key", _UNKNOWN_KEY, access_key)
    token = first.get("x-amz-security-token")
    if credential.session_token is not None or token is not None:
        if token is None or credential.session_token is None:
            return Verdict("unknown_key", _UNKNOWN_KEY, access_key)
        if not hmac.compare_digest(token.encode(), credential.session_token.encode()):
            return Verdict("unknown_key", _UNKNOWN_KEY, access_key)
        if "x-amz-security-token" not in signed_headers:
            return Verdict("malformed", "'X-Amz-Security-Token' must be signed.", access_key)
    body_hash = hashlib.sha256(body).hexdigest()
    claimed = first.get("x-amz-content-sha256")
    if claimed is None:
        payload_hash = body_hash
    elif claimed == UNSIGNED_PAYLOAD and allow_unsigned_payload:
        payload_hash = claimed
    elif claimed != body_hash:
        # Either the body changed on the way or the client hashed something else: the
        # signature would cover a hash that is not this body's, so it proves nothing.
        return Verdict(
            "bad_signature",
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
            access_key,
        )
    else:
        payload_hash = claimed
    key = signing_key(credential.secret_key, date, scope_region, service)
    scope = f"{date}/{scope_region}/{service}/aws4_request"
    for query in _canonical_queries(query_string):
        canonical = canonical_request(method, raw_path, query, pairs, signed_headers, payload_hash)
        expected = _hmac(key, string_to_sign(amz_date, scope, canonical)).hex()
        if hmac.compare_digest(expected, signature):
            return Verdict("ok", access_key=access_key)
    return Verdict("bad_signature", _BAD_SIGNATURE, access_key)


async def verify_request(
    request: web.Request,
    *,
    service: str,
    keys: KeyLookup,
    region: str | None = None,
    now: dt.datetime | None = None,
    allow_unsigned_payload: bool = False,
) -> Verdict:
    """verify() for an aiohttp request; reads (and so caches) its body."""
    body = await request.read()
    path, _, query = request.raw_path.partition("?")
    return verify(
        method=request.method,
        raw_path=path,
        query_string=query,
        headers=request.headers.items(),
        body=body,
        service=service,
        keys=keys,
        region=region,
        now=now,
        allow_unsigned_payload=allow_unsigned_payload,
    )


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def _parse_authorization(
    value: str,
) -> tuple[str, list[str], list[str], str] | Verdict:
    """(access key, scope parts, signed headers, signature) or the verdict refusing it."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        return Verdict(
            "malformed",
            f"Authorization header uses {algorithm[:40]!r}: only {ALGORITHM} is accepted.",
        )
    params: dict[str, str] = {}
    for part in rest.split(","):
        match = _PARAM.fullmatch(part)
        if match is None:
            return Verdict("malformed", f"Authorization header has a malformed part {part!r}.")
        params[match.group(1)] = match.group(2)
    missing = [p for p in ("Credential", "SignedHeaders", "Signature") if not params.get(p)]
    if missing:
        return Verdict(
            "malformed",
            "Authorization header requires "
            + ", ".join(f"'{p}' parameter" for p in missing)
            + ". Authorization header requires 'Credential', 'SignedHeaders' and 'Signature'.",
        )
    credential = params["Credential"].split("/")
    if len(credential) != 5 or not all(credential):
        return Verdict(
            "malformed",
            "Credential should be <access key id>/<YYYYMMDD>/<region>/<service>/aws4_request, "
            f"got {params['Credential'][:200]!r}.",
        )
    signed = params["SignedHeaders"].split(";")
    if signed != sorted(set(signed)) or any(h != h.lower() or not h for h in signed):
        return Verdict(
            "malformed", "SignedHeaders must be lower-case header names, sorted, ';'-separated.",
            credential[0],
        )  # fmt: skip
    if not _HEX64.match(params["Signature"]):
        return Verdict("malformed", "Signature must be 64 lower-case hex digits.", credential[0])
    return credential[0], credential[1:], signed, params["Signature"]


def _canonical_queries(query_string: str) -> list[str]:
    """The canonical query string in the SigV4 form, and botocore's form when it differs.

    SigV4 decodes and re-encodes every name and value; botocore sorts the pairs as they are
    in the URL. They agree for any query botocore built itself, but not for a URL typed with
    '+' or unencoded characters and then signed, which AWS still accepts.
    """
    if not query_string:
        return [""]
    raw: list[tuple[str, str]] = []
    encoded: list[tuple[str, str]] = []
    for pair in query_string.split("&"):
        key, _, value = pair.partition("=")
        raw.append((key, value))
        encoded.append((quote(unquote(key), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    forms = ["&".join(f"{k}={v}" for k, v in sorted(pairs)) for pairs in (encoded, raw)]
    return forms if forms[0] != forms[1] else forms[:1]


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 dot-segment removal with empty segments dropped, as botocore signs paths."""
    if not path:
        return "/"
    out: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if out:
                out.pop()
        elif segment and segment != ".":
            out.append(segment)
    first = "/" if path.startswith("/") else ""
    last = "/" if path.endswith("/") and out else ""
    return first + "/".join(out) + last
