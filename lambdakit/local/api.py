"""The management half of the local Lambda REST API (paths per botocore's 2015-03-31 model).

Functions, versions, aliases and concurrency. Invoke lives in `invocations.py`; both share
the `Service` stored on the aiohttp app, and the wire details in `protocol.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from lambdakit.local.checks import (
    ApiError,
    check_architectures,
    check_tags,
    invalid,
    optional,
    refused,
    validate_config,
)
from lambdakit.local.codezip import (
    MAX_CODE_REQUEST_BYTES,
    MAX_UNZIPPED_BYTES,
    MAX_ZIPPED_BYTES,
    CodeInfo,
    check_handler,
    check_zip,
    store_zip,
    unpack,
    zip_field,
)
from lambdakit.local.environments import EnvironmentManager
from lambdakit.local.events import EventQueue
from lambdakit.local.faults import FaultInjector
from lambdakit.local.layers import merge_layers
from lambdakit.local.protocol import page, parse_function_name, public, read_json
from lambdakit.local.schedules import ScheduleStore
from lambdakit.local.state import LATEST, Store

__all__ = ["SERVICE", "Service", "add_management_routes"]

log = logging.getLogger("lambdakit.local.api")

# UpdateFunctionCode's members lambdakit local serves (S3 code, images, PublishTo: refused).
_UPDATE_CODE_MEMBERS = frozenset({"ZipFile", "Architectures", "Publish", "DryRun", "RevisionId"})


@dataclass
class Service:
    """Everything the request handlers share: state, environments, faults, the event queue,
    and the scheduler's schedules."""

    store: Store
    environments: EnvironmentManager
    faults: FaultInjector
    rng: random.Random = field(default_factory=random.Random)
    events: EventQueue | None = None  # set once the app is built (it needs the service)
    # (function, version) -> FunctionSpec, rebuilt whenever its revision or concurrency changes.
    specs: dict[tuple[str, str], Any] = field(default_factory=dict)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    schedules: ScheduleStore | None = None  # set once the app is built
    scheduler: Any = None  # the firing loop (scheduler.Scheduler), once the app is built
    rates: Any = None  # rates.RateRules: the 10 x concurrency requests/s rule (None: none)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a background job, keeping a reference so it is not garbage-collected."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def finish_update(self, name: str, sha_hex: str | None) -> None:
        """Unpack new code off the event loop, then make the function Active/Successful."""
        error = None
        loop = asyncio.get_running_loop()
        if sha_hex is not None:
            try:
                await loop.run_in_executor(None, unpack, self.store.code_root, sha_hex)
            except Exception as exc:  # a corrupt member only shows when it is read
                log.error("unpacking code of %s failed: %s", name, exc)
                error = f"Could not unpack the uploaded zip: {exc}"
        with contextlib.suppress(ApiError):  # deleted meanwhile: finish_update ignores it
            hexes = self.store.record(name)["latest"].get("_LayerHexes")
            if error is None and hexes:
                try:
                    await loop.run_in_executor(
                        None, merge_layers, self.store.code_root, self.store.layers.opt_root, hexes
                    )
                except Exception as exc:
                    log.error("merging the layers of %s failed: %s", name, exc)
                    error = f"Could not merge the function's layers: {exc}"
        self.store.finish_update(name, error)
        if error is None:
            # Warm environments of the old revision are never reused; stop them now.
            await self.environments.retire(name, LATEST)


SERVICE: web.AppKey[Service] = web.AppKey("lambdakit_service", Service)


def _target(request: web.Request) -> tuple[Service, str, str | None]:
    service = request.app[SERVICE]
    name, qualifier = parse_function_name(
        request.match_info["name"], request.query.get("Qualifier"), **service.store.home
    )
    return service, name, qualifier


def _checked_zip(data: bytes, cfg: dict[str, Any]) -> CodeInfo:
    """check_zip, plus the handler's module, unless layers may bring it."""
    info = check_zip(data)
    if not cfg.get("Layers"):
        check_handler(info, cfg.get("Handler"), cfg.get("Runtime"))
    return info


async def _store_code(service: Service, data: bytes, cfg: dict[str, Any]) -> CodeInfo:
    """Check, then store and pin a zip; nothing is written when the check refuses it.

    `cfg` is the function's configuration (or CreateFunction's body): its Handler and
    Runtime say which module or bootstrap the zip must hold.
    """
    loop = asyncio.get_running_loop()
    info = await loop.run_in_executor(None, _checked_zip, data, cfg)
    service.store.pin(info.sha_hex)  # the caller unpins once a record refers to it
    try:
        await loop.run_in_executor(None, store_zip, service.store.code_root, data, info)
    except BaseException:
        service.store.unpin(info.sha_hex)
        raise
    return info


async def create_function(request: web.Request) -> web.Response:
    """CreateFunction: 201 with State Pending; Active once the zip is unpacked."""
    service = request.app[SERVICE]
    body = await read_json(request, limit=MAX_CODE_REQUEST_BYTES)
    validate_config(body, creating=True)  # refuse bad settings before any code is written
    name = body["FunctionName"]
    if name in service.store.names():
        raise ApiError(409, "ResourceConflictException", f"Function already exist: {name}")
    optional(body, "Publish", bool)
    check_tags(optional(body, "Tags", dict) or {})
    data = zip_field(optional(body, "Code", dict) or {}, "ZipFile")
    info = await _store_code(service, data, body)
    try:
        cfg = service.store.create_function(body, info)
    finally:
        service.store.unpin(info.sha_hex)
    service.spawn(service.finish_update(name, info.sha_hex))
    return web.json_response(public(cfg), status=201)


async def get_function(request: web.Request) -> web.Response:
    """GetFunction: configuration, code location, tags and reserved concurrency."""
    service, name, qualifier = _target(request)
    cfg = service.store.config(name, qualifier)
    record = service.store.record(name)
    arn = service.store.arn(name, qualifier) if qualifier else cfg["FunctionArn"]
    location = f"{request.scheme}://{request.host}/_lambdakit/code/{cfg['_CodeHex']}.zip"
    out: dict[str, Any] = {
        "Configuration": public(cfg, FunctionArn=arn),
        "Code": {"RepositoryType": "S3", "Location": location},
        "Tags": record["tags"],
    }
    if record["concurrency"] is not None:
        out["Concurrency"] = {"ReservedConcurrentExecutions": record["concurrency"]}
    return web.json_response(out)


async def get_code_zip(request: web.Request) -> web.StreamResponse:
    """The stored zip behind GetFunction's Code.Location."""
    service = request.app[SERVICE]
    sha_hex = request.match_info["sha"]
    path = service.store.code_root / f"{sha_hex}.zip"
    if not re.fullmatch(r"[0-9a-f]{64}", sha_hex) or not path.is_file():
        raise ApiError(404, "ResourceNotFoundException", f"No stored code with digest {sha_hex}")
    return web.FileResponse(path, headers={"Content-Type": "application/zip"})


async def get_configuration(request: web.Request) -> web.Response:
    """GetFunctionConfiguration."""
    service, name, qualifier = _target(request)
    cfg = service.store.config(name, qualifier)
    arn = service.store.arn(name, qualifier) if qualifier else cfg["FunctionArn"]
    return web.json_response(public(cfg, FunctionArn=arn))


async def list_functions(request: web.Request) -> web.Response:
    """ListFunctions; FunctionVersion=ALL adds every published version."""
    store = request.app[SERVICE].store
    every = request.query.get("FunctionVersion")
    if every not in (None, "ALL"):
        raise invalid(f"FunctionVersion must be ALL when given, got {every!r}.")
    items = []
    for name in store.names():
        versions = store.list_versions(name) if every else [store.record(name)["latest"]]
        items += [dict(v, _Key=f"{name}:{v['Version']}") for v in versions]
    return page(request, items, "_Key", "Functions")


async def update_code(request: web.Request) -> web.Response:
    """UpdateFunctionCode: LastUpdateStatus InProgress until the new zip is unpacked."""
    service, name, _ = _target(request)
    body = await read_json(request, limit=MAX_CODE_REQUEST_BYTES)
    service.store.check_updatable(name, optional(body, "RevisionId", str))  # before writing
    publish = bool(optional(body, "Publish", bool))
    for member in body:
        if member not in _UPDATE_CODE_MEMBERS:
            raise refused(member, "UpdateFunctionCode")
    architectures = check_architectures(body)
    data = zip_field(body, "ZipFile")
    current = service.store.config(name)
    if optional(body, "DryRun", bool):
        loop = asyncio.get_running_loop()
        info = await loop.run_in_executor(None, _checked_zip, data, current)
        return web.json_response(public(current, CodeSha256=info.sha256))
    info = await _store_code(service, data, current)
    try:
        cfg = service.store.update_code(
            name, info, body.get("RevisionId"), publish=publish, architectures=architectures
        )
    finally:
        service.store.unpin(info.sha_hex)
    service.spawn(service.finish_update(name, info.sha_hex))
    return web.json_response(public(cfg))


async def update_configuration(request: web.Request) -> web.Response:
    """UpdateFunctionConfiguration: Handler, Timeout, MemorySize, Environment, ..."""
    service, name, _ = _target(request)
    body = await read_json(request)
    optional(body, "RevisionId", str)
    cfg = service.store.update_config(name, body)
    service.spawn(service.finish_update(name, None))
    return web.json_response(public(cfg))


async def delete_function(request: web.Request) -> web.Response:
    """DeleteFunction (204); with a version Qualifier, deletes only that version."""
    service, name, qualifier = _target(request)
    service.store.delete_function(name, qualifier)
    if not qualifier:
        service.faults.clear(name)  # a new function of the same name starts without faults
    for key in [k for k in service.specs if k[0] == name]:
        del service.specs[key]
    service.spawn(service.environments.retire(name, qualifier))
    return web.Response(status=204)


async def publish_version(request: web.Request) -> web.Response:
    """PublishVersion: an immutable copy of $LATEST (201)."""
    service, name, _ = _target(request)
    body = await read_json(request)
    for key in ("CodeSha256", "Description", "RevisionId"):
        optional(body, key, str)
    cfg = service.store.publish_version(name, body)
    return web.json_response(public(cfg), status=201)


async def list_versions(request: web.Request) -> web.Response:
    """ListVersionsByFunction: $LATEST then every published version."""
    service, name, _ = _target(request)
    return page(request, service.store.list_versions(name), "Version", "Versions")


async def create_alias(request: web.Request) -> web.Response:
    """CreateAlias (201), with optional RoutingConfig.AdditionalVersionWeights."""
    service, name, _ = _target(request)
    body = await read_json(request)
    alias_name = optional(body, "Name", str)
    if alias_name is None:
        raise invalid("Name is required for CreateAlias.")
    alias = service.store.put_alias(name, alias_name, body, create=True)
    return web.json_response(alias, status=201)


async def get_alias(request: web.Request) -> web.Response:
    """GetAlias."""
    service, name, _ = _target(request)
    return web.json_response(service.store.alias(name, request.match_info["alias"]))


async def update_alias(request: web.Request) -> web.Response:
    """UpdateAlias: version, description and routing weights."""
    service, name, _ = _target(request)
    body = await read_json(request)
    alias = service.store.put_alias(name, request.match_info["alias"], body, create=False)
    return web.json_response(alias)


async def delete_alias(request: web.Request) -> web.Response:
    """DeleteAlias (204)."""
    service, name, _ = _target(request)
    service.store.delete_alias(name, request.match_info["alias"])
    return web.Response(status=204)


async def list_aliases(request: web.Request) -> web.Response:
    """ListAliases, optionally only those pointing at FunctionVersion."""
    service, name, _ = _target(request)
    aliases = service.store.aliases(name, request.query.get("FunctionVersion"))
    return page(request, aliases, "Name", "Aliases")


async def put_concurrency(request: web.Request) -> web.Response:
    """PutFunctionConcurrency."""
    service, name, _ = _target(request)
    body = await read_json(request)
    if "ReservedConcurrentExecutions" not in body:
        raise invalid("ReservedConcurrentExecutions is required.")
    value = service.store.put_concurrency(name, body["ReservedConcurrentExecutions"])
    return web.json_response({"ReservedConcurrentExecutions": value})


async def get_concurrency(request: web.Request) -> web.Response:
    """GetFunctionConcurrency: {} when the function shares the account pool."""
    service, name, _ = _target(request)
    value = service.store.concurrency(name)
    return web.json_response({} if value is None else {"ReservedConcurrentExecutions": value})


async def delete_concurrency(request: web.Request) -> web.Response:
    """DeleteFunctionConcurrency (204)."""
    service, name, _ = _target(request)
    service.store.delete_concurrency(name)
    return web.Response(status=204)


def _tagged(request: web.Request) -> tuple[Service, str]:
    service = request.app[SERVICE]
    name, qualifier = parse_function_name(request.match_info["arn"], **service.store.home)
    if qualifier:
        raise invalid(
            "Tags apply to a function, not to a version or alias: use its unqualified ARN."
        )
    service.store.record(name)  # 404 when missing
    return service, name


async def tag_resource(request: web.Request) -> web.Response:
    """TagResource (204): add or overwrite tags."""
    service, name = _tagged(request)
    tags = check_tags((await read_json(request)).get("Tags", {}))
    merged = service.store.record(name)["tags"] | tags
    service.store.set_tags(name, check_tags(merged))
    return web.Response(status=204)


async def untag_resource(request: web.Request) -> web.Response:
    """UntagResource (204): remove the tags named by ?tagKeys=."""
    service, name = _tagged(request)
    drop = set(request.query.getall("tagKeys", []))
    tags = service.store.record(name)["tags"]
    service.store.set_tags(name, {k: v for k, v in tags.items() if k not in drop})
    return web.Response(status=204)


async def list_tags(request: web.Request) -> web.Response:
    """ListTags."""
    service, name = _tagged(request)
    return web.json_response({"Tags": service.store.record(name)["tags"]})


async def get_account_settings(request: web.Request) -> web.Response:
    """GetAccountSettings: the concurrency a client may plan for, and code storage use."""
    store = request.app[SERVICE].store
    reserved = sum(store.concurrency(name) or 0 for name in store.names())
    stored = sum(p.stat().st_size for p in store.code_root.glob("*.zip"))
    limit = {
        "TotalCodeSize": 80 * 1024**3,
        "CodeSizeUnzipped": MAX_UNZIPPED_BYTES,
        "CodeSizeZipped": MAX_ZIPPED_BYTES,
        "ConcurrentExecutions": store.account_concurrency,
        "UnreservedConcurrentExecutions": store.account_concurrency - reserved,
    }
    usage = {"TotalCodeSize": stored, "FunctionCount": len(store.names())}
    return web.json_response({"AccountLimit": limit, "AccountUsage": usage})


def add_management_routes(app: web.Application) -> None:
    """Mount every management operation at its botocore path."""
    fn = "/2015-03-31/functions/{name}"
    app.router.add_post("/2015-03-31/functions", create_function)
    app.router.add_post("/2015-03-31/functions/", create_function)
    app.router.add_get("/2015-03-31/functions", list_functions)
    app.router.add_get("/2015-03-31/functions/", list_functions)
    app.router.add_get(fn, get_function)
    app.router.add_delete(fn, delete_function)
    app.router.add_get(fn + "/configuration", get_configuration)
    app.router.add_put(fn + "/configuration", update_configuration)
    app.router.add_put(fn + "/code", update_code)
    app.router.add_post(fn + "/versions", publish_version)
    app.router.add_get(fn + "/versions", list_versions)
    app.router.add_post(fn + "/aliases", create_alias)
    app.router.add_get(fn + "/aliases", list_aliases)
    app.router.add_get(fn + "/aliases/{alias}", get_alias)
    app.router.add_put(fn + "/aliases/{alias}", update_alias)
    app.router.add_delete(fn + "/aliases/{alias}", delete_alias)
    app.router.add_put("/2017-10-31/functions/{name}/concurrency", put_concurrency)
    app.router.add_delete("/2017-10-31/functions/{name}/concurrency", delete_concurrency)
    app.router.add_get("/2019-09-30/functions/{name}/concurrency", get_concurrency)
    app.router.add_post("/2017-03-31/tags/{arn}", tag_resource)
    app.router.add_delete("/2017-03-31/tags/{arn}", untag_resource)
    app.router.add_get("/2017-03-31/tags/{arn}", list_tags)
    app.router.add_get("/2016-08-19/account-settings", get_account_settings)
    app.router.add_get("/2016-08-19/account-settings/", get_account_settings)
    app.router.add_get("/_lambdakit/code/{sha}.zip", get_code_zip)
