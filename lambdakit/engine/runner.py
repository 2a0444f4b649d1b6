"""run() and start(): push records through a Lambda function in batches, concurrently."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from lambdakit.engine.cache import DEFAULT, Cache
from lambdakit.engine.handle import RunHandle
from lambdakit.engine.hedge import Hedge
from lambdakit.engine.invokers import (
    check_invoke_path,
    http_invoker,
    invoke_path_of,
    ladders,
    lambda_invoker,
    memory_ladder,
    worker_processes,
)
from lambdakit.engine.outage import DEFAULT_OUTAGE_TIMEOUT_S
from lambdakit.engine.progress import FINISHED, EventStream, ProgressBar, Tracker
from lambdakit.engine.retry import Retry
from lambdakit.errors import InvalidInput, LambdakitError
from lambdakit.records.batching import DEFAULT_MAX_BATCH_BYTES, Envelope, iter_batches
from lambdakit.records.datasets import is_s3_url
from lambdakit.records.encoding import Encoding
from lambdakit.records.sources import describe_source, source_length
from lambdakit.records.validation import Validator
from lambdakit.results.folders import check_folder

if TYPE_CHECKING:
    from lambdakit.results.result import RunResult

__all__ = ["RunHandle", "open_records", "run", "start"]

log = logging.getLogger("lambdakit.engine.runner")

DEFAULT_GRACE_S = 10.0
DEFAULT_RETRY = Retry()  # frozen, so one shared default is safe


def _tolerance(tolerated_failure: Any, records_total: int | None) -> Callable[[int, int], bool]:
    """A check (failed, read) -> still within tolerance, from a count or a fraction."""
    if tolerated_failure is None:
        return lambda failed, read: True
    if isinstance(tolerated_failure, bool) or not isinstance(tolerated_failure, (int, float)):
        raise InvalidInput(
            f"tolerated_failure must be a count or a fraction, got {tolerated_failure!r}"
        )
    if isinstance(tolerated_failure, int):
        if tolerated_failure < 0:
            raise InvalidInput(f"tolerated_failure must be >= 0, got {tolerated_failure}")
        return lambda failed, read: failed <= tolerated_failure
    if not 0.0 <= tolerated_failure <= 1.0:
        raise InvalidInput(
            f"tolerated_failure as a fraction must be within [0, 1], got {tolerated_failure}"
        )
    # A fraction of every record when the total is known, else of the records read so far.
    if records_total is not None:
        allowed = tolerated_failure * records_total
        return lambda failed, read: failed <= allowed
    return lambda failed, read: failed <= tolerated_failure * read


# The keywords run() passes through to start(), beyond the ones it names itself.
_ENGINE_OPTIONS = frozenset({"invoker", "sleep", "clock", "grace_s", "output_dir"})


def _unknown_keywords(names: list[str]) -> str:
    """Name unknown keywords of run(), with the closest real one when there is one."""
    import difflib
    import inspect

    known = [*_ENGINE_OPTIONS, *inspect.signature(run).parameters]
    parts = []
    for name in names:
        close = difflib.get_close_matches(name, known, n=1)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return f"run() got unknown keyword arguments: {', '.join(parts)}"


def _outage_timeout(value: Any) -> float | None:
    """Seconds an outage may last before the run stops (None: wait for ever)."""
    if value is None:
        return None
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not 0 < value < float("inf"):
        raise InvalidInput(f"outage_timeout must be seconds > 0 or None, got {value!r}")
    return float(value)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{name} must be an int >= 1, got {value!r}")
    return value


def _records_of_run(stream: Any, records_total: int | None) -> int:
    """The run's `records`: the source's length when known, so that records never read
    count as not run; what was read when it is unknown or the source was read to its end."""
    read = stream.records
    if stream.exhausted or records_total is None:
        if records_total is not None and records_total != read:
            log.warning("the source gave %d records; its length said %d", read, records_total)
        return read
    return max(records_total, read)


def _outputs(outputs: Any, invoker: Any) -> str:
    """How the run reads replies: `outputs=`, else the custom invoker's own, else per_record."""
    from lambdakit.aws.reply import PER_RECORD, check_outputs

    if invoker is None:
        return check_outputs(PER_RECORD if outputs is None else outputs)
    own = getattr(invoker, "outputs", None)
    if outputs is not None and check_outputs(outputs) != (own or PER_RECORD):
        raise InvalidInput(
            f"outputs={outputs!r} does not go with a custom invoker, which reads replies "
            f"itself (outputs={own or PER_RECORD!r}): give outputs= to the invoker"
        )
    return check_outputs(own) if own is not None else PER_RECORD


def _cache_view(target: Any, outputs: str) -> Any:
    """The target as the cache sees it: each token also names how replies were read.

    The same reply reads as different outputs per record, per batch or raw, so an entry is
    valid only for runs that read it the same way. Entries made before the contract was
    strict (a short list given to every record) have tokens without it, and are ignored.
    """
    tokens = {v: f"{token}|outputs={outputs}" for v, token in target.cache_tokens.items()}
    return dataclasses.replace(target, cache_tokens=tokens)


def _code_sha256(target: Any) -> str | dict[str, str] | None:
    """The code the run invokes: one CodeSha256, or {version: sha} for a canary alias."""
    shas = dict(getattr(target, "code_sha256", None) or {})
    if not shas:  # a custom invoker's Target may not know it
        for token in target.cache_tokens.values():
            if token.startswith("$LATEST@"):
                return token.split("@", 1)[1].split(":", 1)[0]
        return None
    return next(iter(shas.values())) if len(set(shas.values())) == 1 else shas


def _layers(target: Any) -> list[str] | dict[str, list[str]]:
    """The layers the run's function uses: its ARNs, or {version: ARNs} where versions differ."""
    per_version = {v: list(arns) for v, arns in (getattr(target, "layers", None) or {}).items()}
    distinct = {tuple(arns) for arns in per_version.values()}
    if len(distinct) <= 1:
        return list(next(iter(distinct), ()))
    return per_version


def start(
    function: str | None = None,
    records: Any = None,
    *,
    qualifier: str | None = None,
    batch_size: int = 100,
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    concurrency: int = 16,
    timeout: float | None = None,
    retry: Retry | Mapping[str, Any] | int | bool | None = DEFAULT_RETRY,
    cache: Any = DEFAULT,
    validate: Any = None,
    payload: Callable[[list[Any]], Any] | None = None,
    batch_input: dict[str, Any] | None = None,
    id_field: str | None = None,
    decimal: str = "number",
    nan: str = "reject",
    outputs: str | None = None,
    tolerated_failure: int | float | None = None,
    outage_timeout: float | None = DEFAULT_OUTAGE_TIMEOUT_S,
    endpoint_url: str | None = None,
    region: str | None = None,
    profile: str | None = None,
    client: Any = None,
    invoke_path: str | None = None,
    processes: int = 1,
    progress: bool = True,
    columns: list[str] | None = None,
    csv_types: str = "exact",
    s3_endpoint_url: str | None = None,
    invoker: Any = None,
    sleep: Callable[[float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    grace_s: float = DEFAULT_GRACE_S,
    output_dir: str | None = None,
    events: bool = True,
    url: str | None = None,
    auth: Any = None,
    headers: Mapping[str, str] | None = None,
    cache_namespace: str | None = None,
    on_oom: Any = None,
    on_timeout: Any = None,
    hedge: Any = None,
) -> RunHandle:
    """Start a run in the background and return its RunHandle (arguments as for `run`).

    `events=False` keeps no ProgressEvents (`handle.events` stays empty): run() passes it,
    since nobody can read the events of a run that has no handle, and building two per
    invocation was ~5% of a small-batch run's throughput.

    The function is resolved first, so a missing function or alias raises FunctionNotFound
    here, before any batch is read or sent.

    `url=` runs over HTTP instead (see `run`): `start(records, url=...)` needs no function.
    `invoke_path`: see `run`.
    """
    from lambdakit.engine.record import RunRecord
    from lambdakit.engine.scheduler import Engine, Plan
    from lambdakit.results.outputs import OutputStore

    if url is not None and records is None:
        function, records = None, function  # start(records, url=...): no function needed
    ladder = None
    if url is None and (auth is not None or headers is not None or cache_namespace is not None):
        raise InvalidInput("auth=, headers= and cache_namespace= go with url=")
    concurrency = _positive_int("concurrency", concurrency)
    retry_policy = Retry.coerce(retry)
    cache_store = Cache.coerce(cache)
    validator = Validator.coerce(validate)
    if records is None:
        raise InvalidInput("records is required: a DataFrame, an iterable or a file path")
    if grace_s < 0:
        raise InvalidInput(f"grace_s must be >= 0, got {grace_s!r}")
    if id_field is not None and not isinstance(id_field, str):
        raise InvalidInput(f"id_field must be the name of a record field (a str), got {id_field!r}")
    outage_timeout = _outage_timeout(outage_timeout)
    oom_ladder, timeout_ladder = ladders(on_oom, on_timeout)
    hedging = Hedge.coerce(hedge)
    if (oom_ladder or timeout_ladder) and (url is not None or invoker is not None):
        raise InvalidInput(
            "on_oom= / on_timeout= publish versions of a Lambda function: they need a "
            "function run, not url= or a custom invoker"
        )
    reading = _outputs(outputs, invoker)
    custom_invoker = invoker
    check_invoke_path(invoke_path, url, invoker)
    processes = worker_processes(
        _positive_int("processes", processes), invoke_path, url, invoker, client
    )
    # Folders first: one that cannot be written must stop the run before anything is paid
    # for, not after the last batch (the cache is written as batches succeed).
    # One AWS session for Lambda and S3 on AWS (one profile, one credential chain, looked up
    # once). A local Lambda endpoint's session leaves out the instance-role providers, so
    # S3 then gets a session of its own.
    session = None
    touches_s3 = is_s3_url(records) or is_s3_url(output_dir)
    if touches_s3 and client is None and invoker is None and url is None and not endpoint_url:
        from lambdakit.aws.connection import make_session

        session = make_session(region=region, profile=profile)
    s3_where = {
        "endpoint_url": s3_endpoint_url, "region": region, "profile": profile, "session": session,
    }  # fmt: skip
    output_url = None  # outputs go to S3: written locally, uploaded when the run ends
    if is_s3_url(output_dir):
        from lambdakit.results.remote import check_destination

        check_destination(output_dir, "output_dir", **s3_where)
        output_url, output_dir = output_dir, None
    elif output_dir is not None:
        check_folder(output_dir, "output_dir")
    if cache_store is not None:
        cache_store.check()
    # Files (a path, folder, glob or s3:// URL) are listed once, here: the run reads, counts,
    # fingerprints and describes the same objects.
    records = open_records(
        records, columns=columns, csv_types=csv_types, region=region, profile=profile,
        s3_endpoint_url=s3_endpoint_url, session=session,
    )  # fmt: skip
    encoding = Encoding(decimal=decimal, nan=nan)
    envelope = Envelope(payload=payload, batch_input=batch_input, encoding=encoding)
    record = RunRecord(OutputStore(output_dir))
    # The ids the function reports failures by (a custom invoker may have its own): no batch
    # may hold one twice, or a failure it reports would fail every record sharing it.
    ids_by = id_field if invoker is None else getattr(invoker, "id_field", None)
    # Made (and so checked) before the function is looked up; nothing is read yet.
    stream = iter_batches(
        records,
        batch_size=_positive_int("batch_size", batch_size),
        max_batch_bytes=max_batch_bytes,
        payload=payload,
        batch_input=batch_input,
        validator=validator,
        on_reject=record.on_reject,
        id_field=ids_by if isinstance(ids_by, str) else None,
        encoding=encoding,
    )
    # Counted once the source is known to be readable: a file's records are counted here
    # (see source_length), so that totals, tolerance and progress know the whole.
    records_total = source_length(records)
    tolerated = _tolerance(tolerated_failure, records_total)
    # From here a ProcessInvoker's workers may be running: a setup step that fails after
    # they start (a ladder that cannot apply, say) must stop them, not leave them behind.
    try:
        if invoker is None and url is not None:
            invoker, target = http_invoker(
                url, function, qualifier, auth, headers, cache_namespace, concurrency, timeout,
                id_field, reading, endpoint_url, region, profile, client,
            )  # fmt: skip
        elif invoker is None:
            invoker, target, rungs = lambda_invoker(
                function, qualifier, concurrency, timeout, id_field, reading, endpoint_url, region,
                profile, client, invoke_path, session, processes,
            )  # fmt: skip
            if oom_ladder or timeout_ladder:
                ladder = memory_ladder(target, oom_ladder, timeout_ladder, *rungs)
        else:
            # A custom Invoker (HTTP, or a fake in scheduling tests) says what it targets.
            target = getattr(invoker, "target", None)
            if target is None:
                raise InvalidInput("a custom invoker must have a .target (discovery.Target)")
            if id_field is not None:
                raise InvalidInput(
                    "id_field configures the Lambda invoker: give it to your invoker"
                )

        run_id = uuid.uuid4().hex
        tracker = Tracker(
            records_total=records_total,
            batch_size=batch_size,
            in_flight_limit=concurrency,
            clock=clock,
            events=EventStream() if events else None,
            bar=ProgressBar(bool(progress), records_total, target.function_name),
        )
        plan = Plan(
            target=_cache_view(target, reading),
            envelope=envelope,
            concurrency=concurrency,
            retry=retry_policy,
            cache=cache_store,
            run_id=run_id,
            tolerated=tolerated,
            sleep=sleep,
            clock=clock,
            grace_s=float(grace_s),
            outage_timeout=outage_timeout,
            # The invoker's own way to ask whether the endpoint answers (optional: without one,
            # a single trial invocation tells after a pause).
            probe=getattr(invoker, "probe", None),
            ladder=ladder,
            hedge=hedging,
            gate=_gate(target),
        )
        engine = Engine(stream, invoker, record, tracker, plan)
        started_at = _dt.datetime.now(_dt.timezone.utc)
        t0 = time.monotonic()
        path = invoke_path_of(invoker)  # "lean", "boto3", or None for a URL or custom invoker
        params = {
            "batch_size": batch_size,
            "max_batch_bytes": max_batch_bytes,
            "concurrency": concurrency,
            "timeout": timeout,
            "retry": dataclasses.asdict(retry_policy),
            "cache": str(cache_store.directory) if cache_store is not None else None,
            "validate": repr(validator) if validator is not None else None,
            "payload": getattr(payload, "__name__", repr(payload)) if payload else None,
            "batch_input": batch_input,
            "id_field": id_field,
            "decimal": encoding.decimal,
            "nan": encoding.nan,
            "csv_types": getattr(records, "csv_types", None),
            "outputs": reading,
            "tolerated_failure": tolerated_failure,
            "outage_timeout": outage_timeout,
            # Which Invoke path carried the run: "lean", "boto3", or None (url=, a custom invoker).
            "invoke_path": path,
            "processes": getattr(invoker, "processes", 1) if path else None,
            "on_oom": list(oom_ladder.sizes) if oom_ladder else None,
            "on_timeout": list(timeout_ladder.sizes) if timeout_ladder else None,
            "hedge": dataclasses.asdict(hedging) if hedging else None,
        }
        if url is not None:
            # What reached the URL, never the secrets: no query string, no header values.
            params["url"] = getattr(invoker, "safe_url", None)
            params["auth"] = auth if auth in (None, "aws_iam") else "callable"
            params["headers"] = sorted(headers or {})
            params["cache_namespace"] = cache_namespace

        # Worker processes (processes=N) are the run's own: stopped when it ends.
        made_here = invoker if custom_invoker is None else None

        def finish(state: str) -> RunResult:
            from lambdakit import __version__

            close = getattr(made_here, "close", None)
            if close is not None:
                close()

            ended_at = _dt.datetime.now(_dt.timezone.utc)
            meta = {
                "run_id": run_id,
                "function": target.function_name,
                "function_arn": target.function_arn,
                "qualifier": target.qualifier,
                "executed_versions": sorted(record.executed_versions),
                "code_sha256": _code_sha256(target),
                "layers": _layers(target),
                "params": params,
                "dataset_fingerprint": stream.fingerprint,
                "lambdakit_version": __version__,
                "started_at": started_at.isoformat(),
                "ended_at": ended_at.isoformat(),
                "elapsed_s": time.monotonic() - t0,
                "cancelled": state != FINISHED or engine.stop_reason is not None,
                "stop_reason": engine.stop_reason,
                "outages": engine.breaker.trips,  # times the endpoint stopped answering
                # Speculative backups (hedge=): sent, won (replied first), disagreed (outputs).
                "hedge": engine.hedge.summary() if engine.hedge is not None else None,
                # Ids seen twice within what would have been one batch (split apart: see
                # BatchStream).
                "repeated_ids": list(stream.repeated_ids),
                "repeated_id_records": stream.repeated_id_records,
                # What was read: the source (a file's path, or the type of in-memory data), its
                # length when known, and how many of its records were read.
                "source": _described(records, records_total, stream),
                "records_read": stream.records,
            }
            result = record.build(
                records=_records_of_run(stream, records_total), meta=meta, source=records
            )
            if output_url is not None:
                _upload_outputs(result, output_url, s3_where)
            return result
    except BaseException:
        if custom_invoker is None:
            _close_invoker(invoker)
        raise
    return RunHandle(engine, finish, run_id)


def open_records(
    records: Any,
    *,
    columns: list[str] | None = None,
    csv_types: str = "exact",
    region: str | None = None,
    profile: str | None = None,
    s3_endpoint_url: str | None = None,
    session: Any = None,
) -> Any:
    """The Dataset that files name (a path, folder, glob or s3:// URL), else `records` as given.

    S3 objects are listed with a client of the same profile and region as the run's Lambda
    client (`session`: the run's, shared with it), pointed at `s3_endpoint_url` or
    $AWS_ENDPOINT_URL_S3 when set. `csv_types`: how CSV cells become values (see Dataset).
    """
    from lambdakit.records.datasets import Dataset, local_dataset
    from lambdakit.records.formats import check_csv_types

    check_csv_types(csv_types)
    if isinstance(records, Dataset):
        if columns is not None:
            raise InvalidInput("columns= goes with a path or URL; this Dataset has its own")
        if csv_types not in ("exact", records.csv_types):
            raise InvalidInput(
                f"csv_types= goes with a path or URL; this Dataset has its own "
                f"(csv_types={records.csv_types!r})"
            )
        return records
    if is_s3_url(records):
        from lambdakit.aws.s3 import open_dataset

        return open_dataset(
            records, columns=columns, csv_types=csv_types, region=region, profile=profile,
            endpoint_url=s3_endpoint_url, session=session,
        )  # fmt: skip
    if isinstance(records, (str, os.PathLike)):
        return local_dataset(records, columns=columns, csv_types=csv_types)
    if columns is not None:
        raise InvalidInput(
            "columns= selects the Parquet columns of files: pass a path or URL (select a "
            "DataFrame's columns with df[columns])"
        )
    if csv_types != "exact":
        raise InvalidInput(
            f"csv_types={csv_types!r} types the cells of CSV files: pass a path or URL "
            f"(these records are a {type(records).__name__}, already typed)"
        )
    return records


def _upload_outputs(result: RunResult, url: str, where: dict[str, Any]) -> None:
    """The run's outputs under `url` (an OutputStore folder), whatever ended the run.

    A failed upload must not lose the result the run paid for: it is logged and named in
    meta["output_dir_error"], and the outputs stay in the result.
    """
    from lambdakit.results.remote import staged

    result.meta["output_dir"] = url
    try:
        with staged(url, **where) as folder:
            result.store.save(folder)
    except LambdakitError as exc:
        log.error("the outputs could not be written to %s: %s", url, exc)
        result.meta["output_dir_error"] = str(exc)


def _described(records: Any, records_total: int | None, stream: Any) -> dict[str, Any]:
    """meta's `source`: what was read, its length when known, and, for files, each object
    read with its version, first record, record count and line breaks (the provenance)."""
    described = {**describe_source(records), "records": records_total}
    objects = stream.provenance.table(stream.records)
    if objects:
        described["objects_read"] = objects
    return described


def _gate(target: Any) -> Any:
    """The caps lambdakit.limits() set for the target's function, shared with other runs."""
    from lambdakit.engine.limits import gate_for

    return gate_for(target.function_name) or gate_for(target.function_arn)


def _close_invoker(invoker: Any) -> None:
    """Close an invoker the run made itself (its connections, its worker processes)."""
    close = getattr(invoker, "close", None)
    if close is not None:
        close()


def run(
    function: str | None = None,
    records: Any = None,
    *,
    qualifier: str | None = None,
    batch_size: int = 100,
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    concurrency: int = 16,
    timeout: float | None = None,
    retry: Retry | Mapping[str, Any] | int | bool | None = DEFAULT_RETRY,
    cache: Any = DEFAULT,
    validate: Any = None,
    payload: Callable[[list[Any]], Any] | None = None,
    batch_input: dict[str, Any] | None = None,
    id_field: str | None = None,
    decimal: str = "number",
    nan: str = "reject",
    outputs: str | None = None,
    tolerated_failure: int | float | None = None,
    outage_timeout: float | None = DEFAULT_OUTAGE_TIMEOUT_S,
    endpoint_url: str | None = None,
    region: str | None = None,
    profile: str | None = None,
    client: Any = None,
    invoke_path: str | None = None,
    processes: int = 1,
    progress: bool = True,
    columns: list[str] | None = None,
    csv_types: str = "exact",
    s3_endpoint_url: str | None = None,
    url: str | None = None,
    auth: Any = None,
    headers: Mapping[str, str] | None = None,
    cache_namespace: str | None = None,
    on_oom: Any = None,
    on_timeout: Any = None,
    hedge: Any = None,
    **engine_options: Any,
) -> RunResult:
    """Push `records` through `function` in batches and return the complete RunResult.

    `records`: a DataFrame, an iterable of JSON-able values, or files, streamed: a path, a
    folder or a glob, or `s3://bucket/key`, `s3://bucket/prefix/` or an S3 glob (.jsonl,
    .ndjson, .csv, .parquet, .json arrays; .gz/.bz2/.zst). `columns`: the Parquet columns to
    read. `csv_types`: how CSV cells become values: "exact" (the default: an empty cell is
    None, a cell is a number only when that number writes back as the cell, "42", "0.1",
    "19.90" as a Decimal; "007", "+5", "NA" stay text), "text" (every cell a string) or
    "pandas" (read_csv's inference; floats may round). S3 is reached with the same profile
    and region, at `s3_endpoint_url` or $AWS_ENDPOINT_URL_S3 when set (`endpoint_url` is
    Lambda's).
    `retry`: a Retry, an int (attempts), False, or a dict. `cache`: DEFAULT, a
    folder, a Cache, or False. `validate`: a JSON Schema or a callable that raises.
    `decimal`: how Decimal values are sent, "number" (a JSON number with their exact digits,
    the default) or "string" (their text, for functions that parse numbers as floats).
    `nan`: a record holding NaN or an infinity (float, numpy or Decimal) is rejected,
    naming the field ("reject", the default), or those values are sent as null ("null").
    `outputs`: how replies are read. "per_record" (the default): a reply is one output per
    record (a list as long as the batch, or a batchItemFailures/statusCode dict); anything
    else fails the attempt. "per_batch": a dict or scalar reply is one output for the whole
    batch, given to each of its records. "raw": the reply's text is every record's output,
    uninterpreted (custom runtimes). A reply that breaks the contract is never cached.
    `tolerated_failure`: a count or a fraction of records that may fail before the run stops
    with ToleranceExceeded. When the endpoint stops answering (connection errors, or read
    timeouts far beyond the usual latency, for most of what is in flight) the run pauses and
    probes it with backoff, resuming when it answers; attempts lost to the outage do not
    count against max_attempts. After `outage_timeout` seconds (default 300; None waits for
    ever) it stops: the batches not done are "not_run" ("endpoint unreachable"), never
    failed. A KeyboardInterrupt (Jupyter's stop button) stops submitting,
    lets in-flight batches finish for a short grace and returns the partial result; its
    completed batches are cached, so a rerun invokes only what is missing; a second one stops
    waiting for in-flight batches and still returns; only a third raises. Further keywords
    (invoker, sleep, clock, grace_s, output_dir) go to `start`.

    `url=`: POST each batch to an HTTP endpoint instead (a function URL, an API Gateway
    route, a proxy), with the same engine, cache and results; `run(records, url=...)` needs
    no function. `auth`: None, "aws_iam" (SigV4) or a callable(HttpRequest) -> headers;
    `headers`: sent with every request, never recorded. The cache is keyed by the function
    version behind a lambdakit local or AWS function URL when it can be found (the function
    may be named with `function=`), else by the URL and `cache_namespace`.

    `invoke_path`: how Invoke is sent. None (the default): the lean path (LeanLambdaInvoker:
    the same requests as boto3's, a fraction of its client CPU) when lambdakit makes the
    client, boto3's `client.invoke` for a `client=` you pass; "lean" or "boto3" force one.
    Whatever the lean path cannot honour (a custom signer, event handler or HTTP session,
    botocore retries) falls back to boto3 with a warning saying why. Kept in
    params["invoke_path"]. `processes`: with N > 1 the Invokes go through N worker processes,
    each with its own lean client (the engine stays here; a batch travels as its body): for
    many cores, small batches and high concurrency, when one core's CPU is the ceiling. It
    costs a second or so to start them, and pays nothing with 1-2 cores or large batches.

    `hedge`: a Hedge (or True): an attempt running longer than `factor` x the run's `after`
    latency quantile (default 2 x p95) is sent again, and the first good reply wins; the
    other is recorded as `superseded`. At most `max_share` (5%) of invocations are backups,
    none uses an attempt of `max_attempts`. Only for idempotent, deterministic functions: a
    backup runs the batch twice, and differing outputs are a warning. meta["hedge"] counts.

    `on_oom`: a MemoryLadder (or a list of MB sizes): a batch that ran out of memory
    (`Runtime.OutOfMemory`) goes again on a version with the next size up, which lambdakit
    publishes from the same code with only MemorySize changed and reuses later (never the
    user's alias; `$LATEST` is set back at once). `on_timeout`: the same for the function's
    own timeouts (True: on_oom's ladder). Climbing uses no attempt of `max_attempts`.
    `batches["memory_mb"]` says where a batch finished; without the permissions to publish,
    the OOM fails as before with a hint naming them.

    >>> result = lambdakit.run("my-fn", df, batch_size=50)  # doctest: +SKIP
    >>> result.summary()["failed_records"]  # doctest: +SKIP
    0
    """
    unknown = sorted(set(engine_options) - _ENGINE_OPTIONS)
    if unknown:
        raise InvalidInput(_unknown_keywords(unknown))
    handle = start(
        function,
        records,
        qualifier=qualifier,
        batch_size=batch_size,
        max_batch_bytes=max_batch_bytes,
        concurrency=concurrency,
        timeout=timeout,
        retry=retry,
        cache=cache,
        validate=validate,
        payload=payload,
        batch_input=batch_input,
        id_field=id_field,
        decimal=decimal,
        nan=nan,
        outputs=outputs,
        tolerated_failure=tolerated_failure,
        outage_timeout=outage_timeout,
        endpoint_url=endpoint_url,
        region=region,
        profile=profile,
        client=client,
        invoke_path=invoke_path,
        processes=processes,
        progress=progress,
        columns=columns,
        csv_types=csv_types,
        s3_endpoint_url=s3_endpoint_url,
        **engine_options,
        events=False,
        url=url,
        auth=auth,
        headers=headers,
        cache_namespace=cache_namespace,
        on_oom=on_oom,
        on_timeout=on_timeout,
        hedge=hedge,
    )

    def interrupted(count: int) -> None:
        if count == 1:
            log.warning("interrupted: stopping run %s after in-flight batches", handle.run_id)
        else:
            log.warning("interrupted again: run %s stops waiting for in-flight batches "
                        "(interrupt once more to abort)", handle.run_id)  # fmt: skip

    return handle.wait_through_interrupts(interrupted)
