"""The Invoker a run gets: boto3's or the lean Invoke path, worker processes, a URL, ladder rungs.

The one place in the engine that knows the concrete invokers of lambdakit.aws; the rest of
the engine sees only the Invoker protocol (lambdakit.invocation).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from lambdakit.errors import InvalidInput, LambdakitError

log = logging.getLogger("lambdakit.engine.invokers")

_PROBE_TIMEOUT_S = 5.0  # connect and read timeout of an outage's probes

INVOKE_PATHS = ("lean", "boto3")


def check_invoke_path(invoke_path: Any, url: Any, invoker: Any) -> None:
    """invoke_path= is None, "lean" or "boto3", and only for a Lambda function's run."""
    if invoke_path is None:
        return
    if invoke_path not in INVOKE_PATHS:
        raise InvalidInput(f"invoke_path must be 'lean', 'boto3' or None, got {invoke_path!r}")
    if url is not None or invoker is not None:
        raise InvalidInput("invoke_path= chooses how Invoke is sent: it does not go with url= "
                           "or a custom invoker")  # fmt: skip


def worker_processes(processes: Any, invoke_path: Any, url: Any, invoker: Any, client: Any) -> int:
    """processes=N (an int >= 1): how many worker processes carry the Invokes (1: the
    kernel's own), refused where they cannot."""
    if processes > 1:
        if url is not None or invoker is not None:
            raise InvalidInput("processes= spreads Invoke over processes: it does not go with "
                               "url= or a custom invoker")  # fmt: skip
        if invoke_path == "boto3" or client is not None:
            raise InvalidInput(
                "processes= needs the lean path with clients lambdakit makes (each process "
                "builds its own): drop client= and invoke_path='boto3'"
            )
    return processes


def invoke_path_of(invoker: Any) -> str | None:
    """How `invoker` sends Invoke: "lean", "boto3", or None (a URL or a custom invoker)."""
    from lambdakit.aws.lambda_invoker import LambdaInvoker
    from lambdakit.aws.lean_invoker import LeanLambdaInvoker
    from lambdakit.aws.process_invoker import ProcessInvoker

    if isinstance(invoker, (LeanLambdaInvoker, ProcessInvoker)):
        return "lean"
    return "boto3" if isinstance(invoker, LambdaInvoker) else None


def ladders(on_oom: Any, on_timeout: Any) -> tuple[Any, Any]:
    """on_oom= and on_timeout= as MemoryLadders (on_timeout=True: climb on_oom's ladder)."""
    from lambdakit.engine.ladder import MemoryLadder

    oom = MemoryLadder.coerce(on_oom)
    if on_timeout is True and oom is not None:
        return oom, oom
    return oom, MemoryLadder.coerce(on_timeout)


def memory_ladder(target: Any, on_oom: Any, on_timeout: Any, lookup: Any, rung_invoker: Any) -> Any:
    """The run's memory ladder over its target, which must run one version."""
    from lambdakit.aws.memory_versions import memory_version
    from lambdakit.engine.ladder import Ladder

    if len(target.versions) != 1:
        raise InvalidInput(
            f"on_oom= / on_timeout= need a target that runs one version; {target.invoke_name} "
            f"routes to {sorted(target.versions)}"
        )
    base = next(iter(target.versions))
    code_sha256 = target.code_sha256.get(base)
    if not code_sha256:
        raise InvalidInput(f"the memory ladder cannot tell which code {target.invoke_name} runs")

    def publish(memory_mb: int) -> str:
        return memory_version(lookup, target.function_arn, code_sha256, memory_mb)

    return Ladder(on_oom, on_timeout, base_memory_mb=target.memory_mb, publish=publish,
                  make_invoker=rung_invoker)  # fmt: skip


def lambda_invoker(
    function: str | None,
    qualifier: str | None,
    concurrency: int,
    timeout: float | None,
    id_field: str | None,
    outputs: str,
    endpoint_url: str | None,
    region: str | None,
    profile: str | None,
    client: Any,
    invoke_path: str | None = None,
    session: Any = None,
    processes: int = 1,
) -> tuple[Any, Any, tuple[Any, Any]]:
    """The Invoke invoker (and what a memory ladder needs: the lookup client, an invoker
    maker for other versions): the lean path for clients lambdakit makes, boto3 for a `client=`.

    `session`: the run's boto3 session when S3 already made one (shared, not made again).

    invoke_path None: lean unless the user gave a client; "lean": lean, from the user's client
    too; "boto3": boto3's own invoke. The lean path falls back to boto3, with a warning that
    says why, for whatever it cannot honour (see `lean_invoker.lean_blockers`). processes > 1:
    a ProcessInvoker whose workers build their own lean clients (one process if they cannot).
    """
    from lambdakit.aws.connection import make_client, make_session
    from lambdakit.aws.discovery import resolve_target, split_function_name
    from lambdakit.aws.lambda_invoker import LambdaInvoker
    from lambdakit.aws.lean_invoker import LeanLambdaInvoker

    if function is None:
        raise InvalidInput("function is required: a Lambda function name or ARN")
    where = {"endpoint_url": endpoint_url, "region": region, "profile": profile}
    # One botocore session for both clients: loading the service model is most of the
    # ~0.1 s a client costs, and the second client from the same session takes a few ms.
    if session is None and client is None:
        session = make_session(**where)
    lookup = make_client(
        **where, concurrency=concurrency, read_timeout=timeout, client=client, session=session
    )
    target = resolve_target(lookup, function, qualifier)
    invoking = lookup
    if client is None:
        # The invoking client: its read timeout can now outlast the function's own, and
        # botocore's parameter check is skipped, since every Invoke request is built here.
        invoking = make_client(
            **where,
            concurrency=concurrency,
            read_timeout=timeout,
            function_timeout_s=target.timeout_s,
            session=session,
            parameter_validation=False,
        )
    # A plain name resolves in the client's own account and region, as it just did, so it is
    # sent as given: botocore percent-encodes and signs an ARN path at a cost (~6% per call
    # at batch_size=1). An ARN (possibly another account's) is sent as the ARN.
    name, _ = split_function_name(function)
    plain = None if ":" in name else name
    # In an outage the endpoint is probed with short timeouts: a hung service must not hold
    # the run for a whole invocation timeout per probe.
    probing = lookup
    if client is None:
        probing = make_client(
            **where, read_timeout=_PROBE_TIMEOUT_S, connect_timeout=_PROBE_TIMEOUT_S,
            session=session,
        )  # fmt: skip
    options = {
        "id_field": id_field, "function_name": plain, "probe_client": probing, "outputs": outputs,
    }  # fmt: skip
    lean = invoke_path == "lean" or (invoke_path is None and client is None)
    invoker: Any = None
    if lean:
        try:
            invoker = LeanLambdaInvoker(invoking, target, **options)
        except InvalidInput as exc:  # what the lean path cannot honour: boto3 can
            log.warning("%s; invoking with boto3 instead", exc)
    if invoker is None:
        invoker = LambdaInvoker(invoking, target, **options)
    kind = type(invoker)

    def rung_invoker(version: str) -> Any:
        """An invoker like the run's, for one version (a memory ladder rung, in this process)."""
        return kind(invoking, target, qualifier=version, **options)

    rungs = (lookup, rung_invoker)
    if processes != 1 and kind is LeanLambdaInvoker:
        return process_invoker(invoker, processes, concurrency, timeout, where), target, rungs
    return invoker, target, rungs


def process_invoker(
    single: Any, processes: int, concurrency: int, timeout: float | None, where: dict[str, Any]
) -> Any:
    """The run's worker processes, each with a lean client like `single`; else `single`."""
    from lambdakit.aws.process_invoker import ProcessInvoker, WorkerSpec

    spec = WorkerSpec(
        target=single.target, function_name=single.function_name, qualifier=single.qualifier,
        id_field=single.id_field, outputs=single.outputs,
        concurrency=math.ceil(concurrency / processes), read_timeout=timeout, **where,
    )  # fmt: skip
    try:
        return ProcessInvoker(spec, processes, probe=single.probe, fallback=single)
    except InvalidInput as exc:
        log.warning("%s; invoking from this process alone", exc)
        return single


def http_invoker(
    url: Any,
    function: str | None,
    qualifier: str | None,
    auth: Any,
    headers: Mapping[str, str] | None,
    cache_namespace: str | None,
    concurrency: int,
    timeout: float | None,
    id_field: str | None,
    outputs: str,
    endpoint_url: str | None,
    region: str | None,
    profile: str | None,
    client: Any,
) -> tuple[Any, Any]:
    """The HttpInvoker for run(url=...), keyed by the function behind the URL when it can be."""
    from lambdakit.aws.connection import DEFAULT_FUNCTION_TIMEOUT_S
    from lambdakit.aws.function_urls import parse_function_url, url_target
    from lambdakit.aws.http_invoker import HttpInvoker

    if not isinstance(url, str):
        raise InvalidInput(f"url must be an http(s) URL string, got {type(url).__name__}")
    if qualifier is not None:
        raise InvalidInput("qualifier= does not go with url=: the URL names what it invokes")
    if cache_namespace is not None and not isinstance(cache_namespace, str):
        raise InvalidInput(f"cache_namespace must be a str, got {cache_namespace!r}")
    namespace = cache_namespace or ""
    lookup = client
    if lookup is None:
        shape = parse_function_url(url)
        where = {"endpoint_url": endpoint_url, "region": region, "profile": profile}
        if shape.kind == "local":
            where["endpoint_url"] = endpoint_url or shape.endpoint_url
        if shape.kind == "aws":
            where["region"] = region or shape.region
        if shape.kind != "other":
            from lambdakit.aws.connection import make_client

            try:
                lookup = make_client(**where, concurrency=2)
            except LambdakitError as exc:  # no credentials: the URL still works, uncached by code
                log.info("no Lambda client to find the function behind the URL: %s", exc)
    target, executed = url_target(
        url, namespace=namespace, client=lookup, function=function,
        timeout_s=math.ceil(timeout) if timeout is not None else DEFAULT_FUNCTION_TIMEOUT_S,
    )  # fmt: skip
    # As for Invoke: outlast the function's own timeout (Lambda's maximum when unknown).
    read_timeout = float(timeout) if timeout is not None else target.timeout_s + 20.0
    invoker = HttpInvoker(
        url, headers=headers, timeout=read_timeout, concurrency=concurrency, id_field=id_field,
        auth=auth, region=region, profile=profile, target=target, executed_version=executed,
        outputs=outputs,
    )  # fmt: skip
    return invoker, target
