"""The EventBridge Scheduler REST API (botocore's 2021-06-30 paths), on the service's port.

    boto3.client("scheduler", endpoint_url=local.endpoint_url).create_schedule(...)

Schedules (Create/Get/Update/Delete/ListSchedules), schedule groups (Create/Get/Delete/
ListScheduleGroups) and their tags (TagResource, UntagResource, ListTagsForResource). The
records live in `schedules.ScheduleStore`; each change tells the scheduler, which fires them.

lambdakit's own endpoints beside them:

    GET  /_lambdakit/clock                              {"Now": epoch, "Manual": bool}
    POST /_lambdakit/clock {"AdvanceSeconds": S} | {"Now": epoch}   move a test clock
    GET  /_lambdakit/schedules/{group}/{name}/history   {"Firings": [...]} (firings.py)
"""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web

from lambdakit.local.api import SERVICE, Service
from lambdakit.local.checks import ApiError
from lambdakit.local.firings import read_history
from lambdakit.local.protocol import read_json
from lambdakit.local.schedules import ScheduleStore, page, tag_list, validation

__all__ = ["add_scheduler_routes"]

# A schedule's Target.Input may be up to Lambda's 1 MB Event payload, and JSON around it.
_MAX_BODY = 1_100_000


def _store(request: web.Request) -> tuple[Service, ScheduleStore]:
    service = request.app[SERVICE]
    assert service.schedules is not None  # set by server.build_app before serving
    return service, service.schedules


def _changed(service: Service) -> None:
    if service.scheduler is not None:
        service.scheduler.changed()


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        return await read_json(request, limit=_MAX_BODY)
    except ApiError as exc:
        if exc.status == 413:
            raise
        raise validation(exc.message) from None


async def create_schedule(request: web.Request) -> web.Response:
    """CreateSchedule."""
    service, store = _store(request)
    record = store.put_schedule(request.match_info["name"], await _body(request), create=True)
    _changed(service)
    return web.json_response({"ScheduleArn": record["Arn"]})


async def update_schedule(request: web.Request) -> web.Response:
    """UpdateSchedule: every setting is replaced, as on AWS (what is left out is reset)."""
    service, store = _store(request)
    record = store.put_schedule(request.match_info["name"], await _body(request), create=False)
    _changed(service)
    return web.json_response({"ScheduleArn": record["Arn"]})


async def get_schedule(request: web.Request) -> web.Response:
    """GetSchedule."""
    _, store = _store(request)
    record = store.schedule(request.query.get("groupName"), request.match_info["name"])
    return web.json_response(store.public(record))


async def delete_schedule(request: web.Request) -> web.Response:
    """DeleteSchedule."""
    service, store = _store(request)
    store.delete_schedule(request.query.get("groupName"), request.match_info["name"])
    _changed(service)
    return web.json_response({})


async def list_schedules(request: web.Request) -> web.Response:
    """ListSchedules, by ScheduleGroup, NamePrefix and State, MaxResults at a time."""
    _, store = _store(request)
    query = request.query
    items = store.schedules()
    group = query.get("ScheduleGroup")
    if group is not None:
        store.group(group)
        items = [s for s in items if s["GroupName"] == group]
    prefix = query.get("NamePrefix")
    if prefix is not None:
        items = [s for s in items if s["Name"].startswith(prefix)]
    state = query.get("State")
    if state is not None:
        if state not in ("ENABLED", "DISABLED"):
            raise validation(f"State must be ENABLED or DISABLED, got {state!r}.")
        items = [s for s in items if s["State"] == state]
    chunk, token = page(items, lambda s: f"{s['GroupName']}/{s['Name']}", query)
    out: dict[str, Any] = {"Schedules": [store.summary(s) for s in chunk]}
    if token:
        out["NextToken"] = token
    return web.json_response(out)


def _group_view(store: ScheduleStore, record: dict[str, Any]) -> dict[str, Any]:
    view = store.public(record)
    view.pop("Tags", None)
    return view


async def create_group(request: web.Request) -> web.Response:
    """CreateScheduleGroup."""
    _, store = _store(request)
    record = store.create_group(request.match_info["name"], await _body(request))
    return web.json_response({"ScheduleGroupArn": record["Arn"]})


async def get_group(request: web.Request) -> web.Response:
    """GetScheduleGroup."""
    _, store = _store(request)
    return web.json_response(_group_view(store, store.group(request.match_info["name"])))


async def delete_group(request: web.Request) -> web.Response:
    """DeleteScheduleGroup: the group and its schedules (never `default`)."""
    service, store = _store(request)
    store.delete_group(request.match_info["name"])
    _changed(service)
    return web.json_response({})


async def list_groups(request: web.Request) -> web.Response:
    """ListScheduleGroups, by NamePrefix."""
    _, store = _store(request)
    items = store.groups(request.query.get("NamePrefix"))
    chunk, token = page(items, lambda g: str(g["Name"]), request.query)
    out: dict[str, Any] = {"ScheduleGroups": [_group_view(store, g) for g in chunk]}
    if token:
        out["NextToken"] = token
    return web.json_response(out)


async def tag_resource(request: web.Request) -> web.Response:
    """TagResource: add or overwrite a schedule group's tags."""
    _, store = _store(request)
    group = store.tagged(request.match_info["arn"])
    body = await _body(request)
    if body.get("Tags") is None:
        raise validation("Tags is required.")
    store.set_tags(group, {**group["Tags"], **tag_list(body["Tags"])})
    return web.json_response({})


async def untag_resource(request: web.Request) -> web.Response:
    """UntagResource: remove the tags named by ?TagKeys=."""
    _, store = _store(request)
    group = store.tagged(request.match_info["arn"])
    drop = set(request.query.getall("TagKeys", []))
    store.set_tags(group, {k: v for k, v in group["Tags"].items() if k not in drop})
    return web.json_response({})


async def list_tags(request: web.Request) -> web.Response:
    """ListTagsForResource."""
    _, store = _store(request)
    group = store.tagged(request.match_info["arn"])
    tags = [{"Key": k, "Value": v} for k, v in sorted(group["Tags"].items())]
    return web.json_response({"Tags": tags})


async def get_clock(request: web.Request) -> web.Response:
    """The scheduler's time, and whether it is a test clock."""
    clock = request.app[SERVICE].scheduler.clock
    return web.json_response({"Now": clock.now(), "Manual": clock.manual})


async def move_clock(request: web.Request) -> web.Response:
    """Move the test clock; answered once everything due on the way has fired."""
    scheduler = request.app[SERVICE].scheduler
    if not scheduler.clock.manual:
        raise validation(
            "The scheduler runs on the system clock: start lambdakit local with --test-clock "
            "(LocalLambda(test_clock=...)) to move time."
        )
    body = await _body(request)
    step, when = body.get("AdvanceSeconds"), body.get("Now")
    for key, value in (("AdvanceSeconds", step), ("Now", when)):
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise validation(f"{key} must be a number of seconds, got {value!r}.")
    if (step is None) == (when is None):
        raise validation("Give one of AdvanceSeconds (seconds forward) or Now (epoch seconds).")
    target = scheduler.clock.now() + step if step is not None else when
    if step is not None and step < 0:
        raise validation("AdvanceSeconds must be >= 0: the test clock only moves forward.")
    try:
        steps = scheduler.advance_to(float(target))
    except ValueError as exc:
        raise validation(str(exc)) from None
    return web.json_response({"Now": scheduler.clock.now(), "Steps": steps})


async def get_history(request: web.Request) -> web.Response:
    """A schedule's firings (kept after it is deleted)."""
    service, store = _store(request)
    group, name = request.match_info["group"], request.match_info["name"]
    rows = read_history(service.scheduler.history.state_dir, name, group)
    if not rows:
        store.schedule(group, name)  # 404 for a schedule that never existed
    return web.json_response({"Firings": rows})


def add_scheduler_routes(app: web.Application) -> None:
    """Mount every Scheduler operation at its botocore path."""
    app.router.add_get("/schedules", list_schedules)
    app.router.add_post("/schedules/{name}", create_schedule)
    app.router.add_get("/schedules/{name}", get_schedule)
    app.router.add_put("/schedules/{name}", update_schedule)
    app.router.add_delete("/schedules/{name}", delete_schedule)
    app.router.add_get("/schedule-groups", list_groups)
    app.router.add_post("/schedule-groups/{name}", create_group)
    app.router.add_get("/schedule-groups/{name}", get_group)
    app.router.add_delete("/schedule-groups/{name}", delete_group)
    # A group's ARN holds a '/', which botocore sends as %2F.
    app.router.add_post("/tags/{arn:.+}", tag_resource)
    app.router.add_delete("/tags/{arn:.+}", untag_resource)
    app.router.add_get("/tags/{arn:.+}", list_tags)
    app.router.add_get("/_lambdakit/clock", get_clock)
    app.router.add_post("/_lambdakit/clock", move_clock)
    app.router.add_get("/_lambdakit/schedules/{group}/{name}/history", get_history)
