"""Resource-based policies: AddPermission, RemovePermission and GetPolicy, and what they allow.

Statements are stored in the function's record per qualifier ("" for the unqualified
function, else an alias or version) and shown as AWS shows them. The local service has no
IAM: a statement matters where AWS would consult it without an identity, that is for a
function URL with AuthType NONE, which answers 403 until a statement allows
`lambda:InvokeFunctionUrl` to Principal `*` (`allows_public_url`). Calls signed with a key the
service knows act as the account itself, which needs no resource policy.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from aiohttp import web

from lambdakit.local.api import SERVICE
from lambdakit.local.checks import (
    ApiError,
    bad_content,
    check_revision,
    conflict,
    invalid,
    not_found,
    optional,
)
from lambdakit.local.protocol import parse_function_name, read_json
from lambdakit.local.state import LATEST, Store

__all__ = [
    "URL_ACTION",
    "add_policy_routes",
    "add_statement",
    "allows_public_url",
    "remove_statement",
]

URL_ACTION = "lambda:InvokeFunctionUrl"
_SID_RE = re.compile(r"^[a-zA-Z0-9_-]{1,100}$")
_ACTION_RE = re.compile(r"^(lambda:[*]|lambda:[a-zA-Z]+|[*])$")
_ACCOUNT_RE = re.compile(r"^\d{12}$")
_AUTH_TYPES = ("NONE", "AWS_IAM")
_MAX_POLICY_BYTES = 20_480  # AWS's limit on a function's policy document


def _policies(store: Store, name: str) -> dict[str, dict[str, Any]]:
    """The function's policies by qualifier; deleting an alias or version drops its own."""
    return store.record(name).setdefault("policies", {})


def _check_qualifier(store: Store, name: str, qualifier: str | None) -> str:
    """The policy key of a qualifier ("" unqualified); 404 when the version/alias is missing."""
    if qualifier in (None, ""):
        store.record(name)
        return ""
    if qualifier == LATEST:
        raise invalid("$LATEST has no policy of its own: omit the Qualifier.")
    store.config(name, qualifier)
    return qualifier


def _principal(value: str) -> str | dict[str, str]:
    if value == "*":
        return "*"
    if _ACCOUNT_RE.match(value):
        return {"AWS": f"arn:aws:iam::{value}:root"}
    if value.startswith("arn:"):
        return {"AWS": value}
    if value.endswith(".amazonaws.com") or value.endswith(".amazonaws.com.cn"):
        return {"Service": value}
    raise invalid(
        f"The provided principal {value[:200]!r} was invalid: use '*', an account id, an ARN "
        "or a service principal (name.amazonaws.com)."
    )


def add_statement(
    store: Store, name: str, qualifier: str | None, body: dict[str, Any]
) -> dict[str, Any]:
    """Validate AddPermission's body, store the statement and return it."""
    key = _check_qualifier(store, name, qualifier)
    sid = optional(body, "StatementId", str)
    action = optional(body, "Action", str)
    principal = optional(body, "Principal", str)
    for field, value in (("StatementId", sid), ("Action", action), ("Principal", principal)):
        if not value:
            raise invalid(f"{field} is required.")
    assert sid is not None and action is not None and principal is not None
    if not _SID_RE.match(sid):
        raise invalid(f"Invalid StatementId {sid[:120]!r}: 1-100 of [a-zA-Z0-9-_].")
    if not _ACTION_RE.match(action):
        raise invalid(f"Invalid Action {action[:120]!r}: lambda:<Operation>, lambda:* or *.")
    condition: dict[str, dict[str, str]] = {}
    auth_type = optional(body, "FunctionUrlAuthType", str)
    if auth_type is not None:
        if auth_type not in _AUTH_TYPES:
            raise invalid(f"FunctionUrlAuthType must be NONE or AWS_IAM, got {auth_type!r}.")
        condition.setdefault("StringEquals", {})["lambda:FunctionUrlAuthType"] = auth_type
    source_account = optional(body, "SourceAccount", str)
    if source_account is not None:
        condition.setdefault("StringEquals", {})["AWS:SourceAccount"] = source_account
    org = optional(body, "PrincipalOrgID", str)
    if org is not None:
        condition.setdefault("StringEquals", {})["aws:PrincipalOrgID"] = org
    source_arn = optional(body, "SourceArn", str)
    if source_arn is not None:
        condition["ArnLike"] = {"AWS:SourceArn": source_arn}
    if optional(body, "InvokedViaFunctionUrl", bool):
        condition["Bool"] = {"lambda:InvokedViaFunctionUrl": "true"}
    token = optional(body, "EventSourceToken", str)
    if token is not None:
        condition.setdefault("StringEquals", {})["lambda:EventSourceToken"] = token
    check_revision(store.config(name, key or None), optional(body, "RevisionId", str))
    policy = _policies(store, name).setdefault(key, {"Statement": []})
    if any(s["Sid"] == sid for s in policy["Statement"]):
        raise conflict(
            f"The statement id ({sid}) provided already exists. Please provide a new statement "
            "id, or remove the existing statement."
        )
    statement: dict[str, Any] = {
        "Sid": sid,
        "Effect": "Allow",
        "Principal": _principal(principal),
        "Action": action,
        "Resource": store.arn(name, key or None),
    }
    if condition:
        statement["Condition"] = condition
    if len(json.dumps(_document(name, [*policy["Statement"], statement]))) > _MAX_POLICY_BYTES:
        raise ApiError(
            400,
            "PolicyLengthExceededException",
            f"The final policy size is bigger than the limit ({_MAX_POLICY_BYTES} bytes).",
        )
    policy["Statement"].append(statement)
    policy["RevisionId"] = str(uuid.uuid4())
    store.save(name)
    return statement


def remove_statement(
    store: Store, name: str, qualifier: str | None, sid: str, revision_id: str | None
) -> None:
    """Delete one statement; 404 when the policy has no statement with that id."""
    key = _check_qualifier(store, name, qualifier)
    policy = _policies(store, name).get(key)
    kept = [s for s in (policy or {}).get("Statement", []) if s["Sid"] != sid]
    if policy is None or len(kept) == len(policy["Statement"]):
        raise not_found(f"Statement {sid} is not found in resource policy.")
    if revision_id is not None and revision_id != policy.get("RevisionId"):
        raise ApiError(
            412,
            "PreconditionFailedException",
            "The Revision Id provided does not match the latest Revision Id. "
            "Call the GetPolicy API to retrieve the latest Revision Id",
        )
    policy["Statement"] = kept
    policy["RevisionId"] = str(uuid.uuid4())
    store.save(name)


def allows_public_url(store: Store, name: str, qualifier: str | None) -> bool:
    """True when a statement lets anyone call the URL of (name, qualifier) with AuthType NONE.

    As on AWS: Effect Allow, Principal "*", Action lambda:InvokeFunctionUrl (or lambda:*, *),
    and no condition an anonymous caller cannot meet; a FunctionUrlAuthType condition must say
    NONE.
    """
    key = "" if qualifier in (None, LATEST) else qualifier
    policy = _policies(store, name).get(key, {})
    for statement in policy.get("Statement", []):
        if statement.get("Effect") != "Allow" or statement.get("Principal") != "*":
            continue
        if statement.get("Action") not in (URL_ACTION, "lambda:*", "*"):
            continue
        condition = statement.get("Condition", {})
        equals = dict(condition.get("StringEquals", {}))
        auth = equals.pop("lambda:FunctionUrlAuthType", "NONE")
        if auth == "NONE" and not equals and set(condition) <= {"StringEquals"}:
            return True
    return False


def _document(name: str, statements: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Id": "default", "Statement": statements}


def _target(request: web.Request) -> tuple[Store, str, str | None]:
    name, qualifier = parse_function_name(
        request.match_info["name"], request.query.get("Qualifier")
    )
    return request.app[SERVICE].store, name, qualifier


async def add_permission(request: web.Request) -> web.Response:
    """AddPermission: 201 with the statement as a JSON string."""
    store, name, qualifier = _target(request)
    body = await read_json(request)
    if "Qualifier" in body:
        raise bad_content("Qualifier goes in the query string, not the body.")
    statement = add_statement(store, name, qualifier, body)
    return web.json_response({"Statement": json.dumps(statement)}, status=201)


async def remove_permission(request: web.Request) -> web.Response:
    """RemovePermission (204)."""
    store, name, qualifier = _target(request)
    remove_statement(
        store, name, qualifier, request.match_info["sid"], request.query.get("RevisionId")
    )
    return web.Response(status=204)


async def get_policy(request: web.Request) -> web.Response:
    """GetPolicy: the policy document as a JSON string; 404 when it has no statement."""
    store, name, qualifier = _target(request)
    key = _check_qualifier(store, name, qualifier)
    policy = _policies(store, name).get(key)
    if not policy or not policy["Statement"]:
        raise not_found("The resource you requested does not exist.")
    document = _document(name, policy["Statement"])
    return web.json_response({"Policy": json.dumps(document), "RevisionId": policy["RevisionId"]})


def add_policy_routes(app: web.Application) -> None:
    """Mount AddPermission, RemovePermission and GetPolicy at their botocore paths."""
    fn = "/2015-03-31/functions/{name}/policy"
    app.router.add_post(fn, add_permission)
    app.router.add_get(fn, get_policy)
    app.router.add_delete(fn + "/{sid}", remove_permission)
