"""Credential scrubbing for everything a run writes: manifests, saved results and reports."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["REDACTED", "scrub"]

REDACTED = "***redacted***"
_SECRET_KEY = re.compile(
    r"(secret|token|password|passwd|credential|access[_-]?key|session|private[_-]?key|auth)",
    re.IGNORECASE,
)
_ACCESS_KEY_ID = re.compile(r"\b(AKIA|ASIA|AROA|AIDA)[A-Z0-9]{16}\b")
_SECRET_VALUE = re.compile(r"^[A-Za-z0-9/+]{40}$")
_LONG_TOKEN = re.compile(r"^[A-Za-z0-9/+=]{100,}$")
# Not RFC userinfo: a pasted secret key may hold a raw "/", so take everything up to "@".
_URL_USERINFO = re.compile(r"(://)[^@\s]+@")


def _secret_looking(text: str) -> bool:
    # A 40-character secret key mixes cases and digits; hex digests and words do not.
    if _SECRET_VALUE.match(text):
        return bool(re.search(r"[a-z]", text) and re.search(r"[A-Z]", text))
    return bool(_LONG_TOKEN.match(text))


def scrub(value: Any) -> Any:
    """A copy of `value` with anything that looks like an AWS credential redacted.

    Keys naming a secret, token, password, session or access key lose their value; access
    key ids, 40-character secret keys, session tokens and passwords in URLs are replaced
    wherever they appear.
    """
    if isinstance(value, dict):
        return {
            k: REDACTED if _SECRET_KEY.search(str(k)) and v not in (None, "") else scrub(v)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return type(value)(scrub(v) for v in value)
    if isinstance(value, str):
        if _secret_looking(value):
            return REDACTED
        value = _URL_USERINFO.sub(rf"\g<1>{REDACTED}@", value)
        return _ACCESS_KEY_ID.sub(REDACTED, value)
    return value
