"""The `lambdakit run`, `deploy`, `demo` and `lab` commands (cli/main.py lists them).

    lambdakit run FUNCTION INPUT [--qualifier Q] [--batch-size N] [--concurrency N]
                  [--timeout S] [--max-attempts N] [--item-attempts N] [--id-field F]
                  [--decimal number|string] [--nan reject|null]
                  [--csv-types exact|text|pandas]
                  [--outputs per_record|per_batch|raw] [--invoke-path lean|boto3]
                  [--processes N] [--hedge [SPEC]] [--on-oom [MB,...]]
                  [--on-timeout [MB,...]] [--limits SPEC] [--endpoint-url URL]
                  [--region R] [--profile P] [--no-cache | --cache-dir DIR]
                  [--report DIR|s3://bucket/prefix/] [--s3-endpoint-url URL]
                  [--grace S] [--outage-timeout S | --wait-for-ever] [--shared-files]
                  [--no-progress]
    lambdakit run --url URL INPUT [--auth aws_iam] [--header 'Name: value' ...]
                  [--cache-namespace NS] [...the options above]
    lambdakit deploy NAME FOLDER [--handler H] [--runtime R] [--memory MB] [--timeout S]
                  [--env K=V ...] [--role ARN] [--description D] [--publish] [--alias A]
                  [--url NONE|AWS_IAM] [--endpoint-url URL] [--region R] [--profile P] [--json]
    lambdakit demo [--runs-dir runs] [--n-records N] [--batch-size N] [--concurrency N]
    lambdakit lab [--port 9001] [--state-dir runs/lab-local-state] [-- JUPYTER LAB ARGS]

`run` and `deploy` use $LAMBDAKIT_ENDPOINT_URL when --endpoint-url is not given, as the
notebooks do (and say so on stderr). `run` checks the report folder (and the cache and
output folders) before the first invocation. It exits 0 when every record succeeded, 1 when
some failed or were rejected, the input held no records, or the endpoint stayed unreachable
past --outage-timeout (the report says which), 2 on bad input or when the run could not
start (one line on stderr), 130 when interrupted by Ctrl-C and 143 by SIGTERM (the
partial report is still written). The first Ctrl-C or SIGTERM stops
submitting and lets in-flight batches finish for --grace seconds; a second stops waiting for
them; only a third aborts at once, without a report.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import math
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lambdakit.aws.reply import OUTPUT_MODES, PER_RECORD
from lambdakit.cli.demo import ENDPOINT_ENV
from lambdakit.records.datasets import is_s3_url as is_remote
from lambdakit.records.formats import CSV_TYPES
from lambdakit.results.folders import PRIVATE_FILE

__all__ = [
    "EXIT_BAD_INPUT",
    "add_demo_command",
    "add_deploy_command",
    "add_lab_command",
    "add_run_command",
    "endpoint_from_env",
    "format_summary",
    "print_error",
    "write_outputs",
]

EXIT_BAD_INPUT = 2  # bad arguments, or a LambdakitError: nothing (more) was invoked
_EXIT_FAILED_RECORDS = 1
_EXIT_BY_SIGNAL = {signal.SIGINT: 128 + signal.SIGINT, signal.SIGTERM: 128 + signal.SIGTERM}


def print_error(command: str, message: object) -> int:
    """Print `lambdakit <command>: <message>` as one line on stderr; return exit code 2."""
    text = " ".join(str(message).split())  # a message with a log tail in it stays one line
    print(f"lambdakit {command}: {text}", file=sys.stderr)
    return EXIT_BAD_INPUT


def endpoint_from_env() -> str | None:
    """$LAMBDAKIT_ENDPOINT_URL, the running service the notebooks use too (None if unset)."""
    return os.environ.get(ENDPOINT_ENV, "").strip() or None


def _endpoint(command: str, given: str | None) -> str | None:
    """--endpoint-url, else $LAMBDAKIT_ENDPOINT_URL (said on stderr: it is easy to forget)."""
    if given:
        return given
    from_env = endpoint_from_env()
    if from_env:
        print(f"lambdakit {command}: using {ENDPOINT_ENV}={from_env}", file=sys.stderr)
    return from_env


class _Terminated(KeyboardInterrupt):
    """SIGTERM (timeout, a CI cancel, docker stop), raised where Ctrl-C would be: it drains."""


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r}")
    return value


def _grace(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}")
    return value


def _pairs(text: str, keys: dict[str, Any], bare: str | None) -> dict[str, Any]:
    """KEY=VALUE[,KEY=VALUE...] into keyword arguments, each value read by keys[KEY]; a bare
    first item is the `bare` key's value (Hedge's `after`)."""
    found: dict[str, Any] = {}
    for index, item in enumerate(part.strip() for part in text.split(",")):
        key, sep, value = item.partition("=")
        if not sep and index == 0 and bare is not None:
            key, value = bare, item
        elif not sep or key.strip() not in keys:
            raise argparse.ArgumentTypeError(
                f"expected KEY=VALUE items with KEY one of {', '.join(keys)}, got {item!r}"
            )
        key = key.strip()
        if key in found:
            raise argparse.ArgumentTypeError(f"{key} is given twice in {text!r}")
        try:
            found[key] = keys[key](value.strip())
        except ValueError:
            kind = "a whole number" if keys[key] is int else "a number"
            raise argparse.ArgumentTypeError(f"{key} must be {kind}, got {value!r}") from None
    return found


def _quantile_or_seconds(text: str) -> str | float:
    try:
        return float(text)
    except ValueError:
        return text  # "p95": Hedge checks it


def _hedge(text: str) -> Any:
    """--hedge's value: Hedge's fields as [AFTER][,factor=F][,max_share=S][,min_samples=N]."""
    from lambdakit.engine.hedge import Hedge
    from lambdakit.errors import InvalidInput

    keys = {"after": _quantile_or_seconds, "factor": float, "max_share": float,
            "min_samples": int}  # fmt: skip
    try:
        return Hedge(**_pairs(text, keys, bare="after"))
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _ladder(text: str) -> Any:
    """--on-oom's and --on-timeout's value: memory sizes in MB, ascending, e.g. 1024,2048."""
    from lambdakit.engine.ladder import MemoryLadder
    from lambdakit.errors import InvalidInput

    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected memory sizes in MB such as 1024,2048,4096, got {text!r}"
        ) from None
    try:
        return MemoryLadder(sizes)
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _limits(text: str) -> dict[str, Any]:
    """--limits' value: lambdakit.limits()'s keywords, max_concurrency=N,max_rps=R,scope=S,
    lock_dir=DIR; at least one cap."""
    from lambdakit.engine.limits import Limits
    from lambdakit.errors import InvalidInput

    keys = {"max_concurrency": int, "max_rps": float, "scope": str, "lock_dir": str}
    found = _pairs(text, keys, bare=None)
    if found.get("max_concurrency") is None and found.get("max_rps") is None:
        raise argparse.ArgumentTypeError(f"give max_concurrency=N or max_rps=R, got {text!r}")
    try:
        Limits("FUNCTION", **found)  # its checks, before anything runs
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return found


def add_run_command(subparsers: Any) -> None:
    """`lambdakit run FUNCTION INPUT`: a headless batch run with a report folder."""
    run = subparsers.add_parser(
        "run",
        help="push files (a path, folder, glob or s3:// URL) through a function",
        description="Push INPUT through FUNCTION in batches, print a summary table and write "
        "a report folder (PNGs, tables, manifest.json, outputs.jsonl).",
    )
    run.add_argument(
        "function", nargs="?", help="function name or ARN (name:alias works too); not with --url"
    )
    run.add_argument(
        "input", nargs="?",
        help="a .jsonl/.ndjson/.csv/.parquet/.json file (.gz/.bz2/.zst too), a folder, a glob, "
        "or s3://bucket/key, s3://bucket/prefix/ or an S3 glob",
    )  # fmt: skip
    run.add_argument("--url", help="POST batches to this HTTP endpoint (a function URL, ...)")
    run.add_argument("--auth", choices=["aws_iam"], help="with --url: sign requests with SigV4")
    run.add_argument(
        "--header", action="append", default=[], metavar="'NAME: VALUE'",
        help="with --url: a header for every request (repeatable); values are never recorded",
    )  # fmt: skip
    run.add_argument("--cache-namespace", help="with --url: part of the cache key (a release)")
    run.add_argument("--qualifier", help="alias or version (default $LATEST)")
    run.add_argument("--batch-size", type=_positive, default=100)
    run.add_argument("--concurrency", type=_positive, default=16)
    run.add_argument("--timeout", type=_seconds, help="client timeout per invocation (s)")
    run.add_argument("--max-attempts", type=_positive, default=3)
    run.add_argument(
        "--item-attempts", type=_positive, default=1,
        help="tries of a record the function reports as failed (default 1: its verdict stands; "
        "a failure marked \"retryable\": true is retried within --max-attempts)",
    )  # fmt: skip
    run.add_argument("--id-field", help="record field the function reports failures by")
    run.add_argument(
        "--decimal", choices=["number", "string"], default="number",
        help="Decimal values as JSON numbers with their digits (default) or as strings",
    )  # fmt: skip
    run.add_argument(
        "--nan", choices=["reject", "null"], default="reject",
        help="a record holding NaN or an infinity is rejected (default), or they are sent as null",
    )  # fmt: skip
    run.add_argument(
        "--csv-types", choices=list(CSV_TYPES), default="exact",
        help="CSV cells: numbers only where exact, else their text (default); every cell as "
        "text; or as pandas infers them (007 becomes 7, long numbers lose digits)",
    )  # fmt: skip
    run.add_argument(
        "--outputs", choices=OUTPUT_MODES, default=PER_RECORD,
        help="how replies are read: one output per record (default, strict), one output for "
        "the whole batch (a dict or scalar reply), or raw text (custom runtimes)",
    )  # fmt: skip
    run.add_argument(
        "--invoke-path", choices=["lean", "boto3"], default=None,
        help="how Invoke is sent: the lean path (the default; the same requests as boto3's, "
        "a fraction of its CPU) or boto3's own",
    )  # fmt: skip
    run.add_argument(
        "--processes", type=_positive, default=1,
        help="worker processes carrying the Invokes, each with its own lean client "
        "(default 1; pays with many cores, small batches and high concurrency)",
    )  # fmt: skip
    run.add_argument(
        "--hedge", type=_hedge, nargs="?", const=True, metavar="SPEC",
        help="send a straggling batch again (idempotent functions only): alone, Hedge's "
        "defaults (p95,factor=2,max_share=0.05,min_samples=20); or e.g. p99,factor=3 or 2.5 "
        "(seconds)",
    )  # fmt: skip
    run.add_argument(
        "--on-oom", type=_ladder, nargs="?", const=True, metavar="MB,...",
        help="retry a batch that ran out of memory on a version with the next size up: "
        "alone, 1024,2048,4096; or the sizes in MB (needs UpdateFunctionConfiguration and "
        "PublishVersion)",
    )  # fmt: skip
    run.add_argument(
        "--on-timeout", type=_ladder, nargs="?", const=True, metavar="MB,...",
        help="the same for the function's own timeouts: alone, --on-oom's sizes (else "
        "1024,2048,4096); or the sizes in MB",
    )  # fmt: skip
    run.add_argument(
        "--limits", type=_limits, metavar="SPEC",
        help="caps this run shares with every other run of FUNCTION (lambdakit.limits()): "
        "max_concurrency=N,max_rps=R[,scope=kernel|machine][,lock_dir=DIR]; scope=machine "
        "shares them with other processes here (notebooks, other runs)",
    )  # fmt: skip
    run.add_argument("--endpoint-url", help="e.g. http://127.0.0.1:9001 for lambdakit local "
                     f"(default ${ENDPOINT_ENV}, else AWS)")  # fmt: skip
    run.add_argument("--region")
    run.add_argument("--profile", help="an AWS profile from ~/.aws/config")
    cache = run.add_mutually_exclusive_group()
    cache.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    cache.add_argument("--cache-dir", type=Path, help="cache folder (default: user cache dir)")
    run.add_argument(
        "--report",
        help="report folder or s3://bucket/prefix/ (default runs/run-<fn>-<time>)",
    )
    run.add_argument(
        "--s3-endpoint-url", help="S3's endpoint (a local S3), default $AWS_ENDPOINT_URL_S3"
    )
    run.add_argument(
        "--grace",
        type=_grace,
        default=10.0,
        help="seconds an interrupt lets in-flight batches finish (default 10)",
    )
    outage = run.add_mutually_exclusive_group()
    outage.add_argument(
        "--outage-timeout",
        type=_seconds,
        default=300.0,
        help="seconds the endpoint may stay unreachable before the run stops (default 300)",
    )
    outage.add_argument(
        "--wait-for-ever",
        action="store_true",
        help="wait for an unreachable endpoint however long it takes",
    )
    run.add_argument(
        "--shared-files",
        action="store_true",
        help="create the report and cache folders with the umask's modes (default: 0700/0600)",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    run.set_defaults(func=_run)


def format_summary(summary: dict[str, Any]) -> str:
    """A two-column text table of a run's summary (or of any flat dict); rates in percent."""
    from lambdakit.results.metrics import percent

    width = max((len(str(key)) for key in summary), default=0)
    lines = []
    for key, value in summary.items():
        if str(key).endswith("_rate") and isinstance(value, (int, float)):
            text = percent(float(value))
        elif isinstance(value, float):
            text = "n/a" if not math.isfinite(value) else f"{value:,.4g}"
        else:
            text = f"{value:,}" if isinstance(value, int) else str(value)
        lines.append(f"{key:<{width}}  {text:>12}")
    return "\n".join(lines)


def _headline(summary: dict[str, Any]) -> str:
    """The run's headline: the record-level failure rate (failed records / records)."""
    from lambdakit.results.metrics import share_text

    return f"failed records: {share_text(summary['failed_records'], summary['records'])}"


def write_outputs(result: Any, path: Path, *, shared: bool = False) -> Path:
    """Write one JSON line per input record: {"record": i, "output": ...} (None if failed).

    The file is 0600 unless `shared` (outputs are the user's data). Every digit of a
    number is kept (an int beyond 64 bits, a JsonNumber), as the run read it."""
    import orjson

    from lambdakit.records.encoding import dumps_exact

    with path.open("w", encoding="utf-8") as out:
        if not shared:
            os.chmod(path, PRIVATE_FILE)
        for index, output in enumerate(result.outputs()):
            line = {"record": index, "output": output}
            out.write(dumps_exact(line, option=orjson.OPT_NON_STR_KEYS).decode() + "\n")
    return path


def _input_may_exist(source: str) -> bool:
    """Whether INPUT can name records: an s3:// URL or a glob (checked as the run lists
    them), a folder, or a file."""
    import glob

    return is_remote(source) or glob.has_magic(source) or Path(source).exists()


def _inside(report: Path | str, name: str) -> Path | str:
    return f"{str(report).rstrip('/')}/{name}" if is_remote(report) else Path(report) / name


def _write_report(result: Any, report: Path | str, shared: bool, s3_where: dict[str, Any]) -> None:
    """The report folder plus outputs.jsonl, on disk or (the same layout) under an S3 URL."""
    if not is_remote(report):
        result.save_report(report, shared=shared)
        write_outputs(result, Path(report) / "outputs.jsonl", shared=shared)
        return
    from lambdakit.results.remote import staged
    from lambdakit.results.report import save_report

    with staged(str(report), **s3_where) as folder:
        save_report(result, folder, shared=shared)
        write_outputs(result, folder / "outputs.jsonl", shared=shared)


def _default_report(function: str) -> Path:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in function.split(":")[-1])
    return Path("runs") / f"run-{safe}-{stamp}"


def _url_name(url: str) -> str:
    """A report folder name for a URL run: its function segment, else its host."""
    from lambdakit.aws.function_urls import parse_function_url, safe_url

    shape = parse_function_url(url)
    if shape.function:
        return shape.function
    return safe_url(url).split("://", 1)[-1].split("/", 1)[0] or "url"


def _run(args: argparse.Namespace) -> int:
    from lambdakit.engine.cache import DEFAULT, Cache
    from lambdakit.results.folders import check_folder

    if args.url is not None and args.input is None and args.function is not None:
        args.function, args.input = None, args.function  # run --url URL INPUT
    if args.input is None or (args.function is None and args.url is None):
        return print_error("run", "give FUNCTION INPUT, or --url URL INPUT")
    headers = {}
    for header in args.header:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            # Not quoted: without its ':' the whole text (a key's value too) would show.
            what = "no NAME before ':'" if sep else f"{len(header)} characters without ':'"
            return print_error(
                "run", f"--header takes 'NAME: VALUE', got {what} (not shown: values are secret)"
            )
        headers[name.strip()] = value.strip()
    if args.url is None and (headers or args.auth or args.cache_namespace):
        return print_error("run", "--auth, --header and --cache-namespace go with --url")
    if args.url is not None and args.limits is not None:
        return print_error("run", "--limits caps the runs of FUNCTION: give FUNCTION, not --url")
    if not _input_may_exist(args.input):
        return print_error("run", f"input file {str(args.input)!r} does not exist")
    # Before anything is invoked: a report that cannot be written would lose the whole run.
    s3_where = {"endpoint_url": args.s3_endpoint_url, "region": args.region,
                "profile": args.profile}  # fmt: skip
    report: Any = args.report or _default_report(args.function or _url_name(args.url))
    if is_remote(report):
        from lambdakit.results.remote import check_destination

        check_destination(report, "report folder", **s3_where)
    else:
        report = Path(report)
        check_folder(report, "report folder")
    endpoint_url = _endpoint("run", args.endpoint_url)
    cache: Any = False if args.no_cache else (args.cache_dir or DEFAULT)
    if cache is not False and args.shared_files:
        cache = Cache(args.cache_dir, shared=True)
    if args.limits is not None:
        from lambdakit.engine.limits import limits

        limits(args.function, **args.limits)
    try:
        return _run_and_report(args, report, cache, endpoint_url, headers, s3_where)
    finally:
        if args.limits is not None:
            limits(args.function)  # this process's registry: no caps left behind (main())


def _run_and_report(
    args: argparse.Namespace,
    report: Any,
    cache: Any,
    endpoint_url: str | None,
    headers: dict[str, str],
    s3_where: dict[str, Any],
) -> int:
    from lambdakit.engine.retry import Retry
    from lambdakit.engine.runner import start
    from lambdakit.errors import SourceError, StorageError

    signals: list[int] = []  # the interrupts received, in order

    def interrupted(count: int) -> None:
        what = "SIGTERM" if signals and signals[-1] == signal.SIGTERM else "interrupted"
        if count == 1:
            print(f"lambdakit run: {what}, finishing in-flight batches", file=sys.stderr)
        else:
            print(
                f"lambdakit run: {what} again, no longer waiting for in-flight batches "
                "(once more aborts without a report)",
                file=sys.stderr,
            )

    handle = start(
        args.function,
        str(args.input),
        qualifier=args.qualifier,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        timeout=args.timeout,
        retry=Retry(max_attempts=args.max_attempts, item_attempts=args.item_attempts),
        cache=cache,
        id_field=args.id_field,
        decimal=args.decimal,
        nan=args.nan,
        csv_types=args.csv_types,
        outputs=args.outputs,
        invoke_path=args.invoke_path,
        processes=args.processes,
        hedge=args.hedge,
        on_oom=args.on_oom,
        on_timeout=args.on_timeout,
        endpoint_url=endpoint_url,
        region=args.region,
        profile=args.profile,
        s3_endpoint_url=args.s3_endpoint_url,
        progress=not args.no_progress,
        grace_s=args.grace,
        outage_timeout=None if args.wait_for_ever else args.outage_timeout,
        **(
            {"url": args.url, "auth": args.auth, "headers": headers or None,
             "cache_namespace": args.cache_namespace}
            if args.url is not None else {}
        ),
    )  # fmt: skip
    stopped: Any = None  # the SourceError that ended the run, if one did
    with _interrupts_counted(signals):
        try:
            result = handle.wait_through_interrupts(interrupted)
        except SourceError as exc:  # the input broke mid-run: what was done is still reported
            if exc.result is None:
                raise
            stopped, result = exc, exc.result

    try:
        _write_report(result, report, args.shared_files, s3_where)
    except (OSError, StorageError) as exc:  # checked before the run; something changed since
        return print_error("run", f"cannot write the report folder {report}: {exc}")
    if stopped is not None:
        print(repr(result))
        return print_error("run", f"{stopped} (partial report: {report})")
    summary = result.summary()
    print(repr(result))
    print(format_summary(summary))
    print(f"report: {report}")
    if signals:
        return _EXIT_BY_SIGNAL[signals[0]]
    if summary["records"] == 0:
        print(f"lambdakit run: warning: {args.input} holds no records; nothing was invoked",
              file=sys.stderr)  # fmt: skip
        return _EXIT_FAILED_RECORDS
    if result.meta.get("stop_reason") == "outage":
        print(
            f"lambdakit run: the endpoint stayed unreachable for {args.outage_timeout:g} s; "
            f"the batches not done are not run (not failed); rerun to finish them",
            file=sys.stderr,
        )
        return _EXIT_FAILED_RECORDS
    if summary["failed_records"] or summary["rejected_records"]:
        print(
            f"lambdakit run: {summary['failed_records']} records failed and "
            f"{summary['rejected_records']} were rejected; see {_inside(report, 'errors.csv')}",
            file=sys.stderr,
        )
        return _EXIT_FAILED_RECORDS
    return 0


@contextlib.contextmanager
def _interrupts_counted(signals: list[int]) -> Iterator[None]:
    """While the run goes on: note each Ctrl-C and SIGTERM, and raise both as interrupts."""

    def on_signal(signum: int, frame: Any) -> None:
        signals.append(signum)
        raise _Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    # Never quoted: a value without its NAME= (or with another separator) may be a secret.
    if not sep:
        raise argparse.ArgumentTypeError(
            f"expected NAME=VALUE, got {len(text)} characters without '=' (not shown: they "
            "may hold a secret)"
        )
    if not key.strip():
        raise argparse.ArgumentTypeError(
            "expected NAME=VALUE, got no NAME before '=' (the value is not shown: it may hold "
            "a secret)"
        )
    return key.strip(), value


def add_deploy_command(subparsers: Any) -> None:
    """`lambdakit deploy NAME FOLDER`: lambdakit.deploy() from the shell."""
    deploy = subparsers.add_parser(
        "deploy",
        help="zip a handler folder and create or update a function",
        description="Zip FOLDER and create or update function NAME so it is exactly as "
        "described (no --env clears its environment), wait until it can be invoked, and "
        "print its ARN, version and CodeSha256. --alias publishes a version and points the "
        "alias at it.",
    )
    deploy.add_argument("name", help="the function name")
    deploy.add_argument("folder", type=Path, help="the handler folder (app.py, bootstrap, ...)")
    deploy.add_argument("--handler", default="app.handler", help="module.function")
    deploy.add_argument("--runtime", default="python3.11")
    deploy.add_argument("--memory", type=_positive, default=128, metavar="MB")
    deploy.add_argument("--timeout", type=_positive, default=30, metavar="S",
                        help="the function's timeout in seconds")  # fmt: skip
    deploy.add_argument(
        "--env", type=_env_pair, action="append", default=[], metavar="NAME=VALUE",
        help="an environment variable (repeatable)",
    )  # fmt: skip
    deploy.add_argument("--role", help="execution role ARN (needed on AWS)")
    deploy.add_argument("--description")
    deploy.add_argument("--publish", action="store_true", help="publish a version")
    deploy.add_argument("--alias", help="publish, and create or move this alias to it")
    deploy.add_argument("--url", choices=["NONE", "AWS_IAM"], help="also give it a function URL")
    deploy.add_argument("--layer", action="append", default=[], metavar="LAYER_VERSION_ARN",
                        help="a layer, in merge order (repeatable, at most 5)")  # fmt: skip
    deploy.add_argument("--endpoint-url", help=f"e.g. lambdakit local (default ${ENDPOINT_ENV})")
    deploy.add_argument("--region")
    deploy.add_argument("--profile", help="an AWS profile from ~/.aws/config")
    deploy.add_argument("--json", action="store_true", help="print the result as one JSON object")
    deploy.set_defaults(func=_deploy)


def _deploy(args: argparse.Namespace) -> int:
    import dataclasses

    from lambdakit.aws.connection import make_client
    from lambdakit.aws.deploy import PLACEHOLDER_ROLE, deploy

    environment: dict[str, str] = {}
    for key, value in args.env:
        if key in environment:  # which one was meant? say so rather than keep the last
            return print_error("deploy", f"--env {key} given twice")
        environment[key] = value
    client = make_client(
        endpoint_url=_endpoint("deploy", args.endpoint_url), region=args.region,
        profile=args.profile,
    )  # fmt: skip
    deployed = deploy(
        client, args.name, args.folder, handler=args.handler, runtime=args.runtime,
        memory_mb=args.memory, timeout_s=args.timeout, environment=environment,
        role=args.role or PLACEHOLDER_ROLE, publish=args.publish, alias=args.alias,
        description=args.description, url=args.url, layers=args.layer,
    )  # fmt: skip
    fields = dataclasses.asdict(deployed)
    if args.json:
        print(json.dumps({**fields, "qualified_arn": deployed.qualified_arn}))
        return 0
    print(f"{deployed.action}: {deployed.qualified_arn}")
    width = max(len(key) for key in fields)
    for key, value in fields.items():
        if isinstance(value, (list, tuple)):
            value = ", ".join(value) or None
        if value is not None:
            print(f"{key:<{width}}  {value}")
    return 0


def add_demo_command(subparsers: Any) -> None:
    """`lambdakit demo`: the papermill batch notebook against a fresh local service."""
    demo = subparsers.add_parser(
        "demo",
        help="run the example batch notebook on lambdakit local",
        description="Start lambdakit local, deploy the enrich_orders example, run "
        "notebooks/02_batch_run.ipynb through papermill into RUNS_DIR/demo-<time>/.",
    )
    demo.add_argument("--runs-dir", type=Path, default=Path("runs"))
    demo.add_argument("--n-records", type=_positive, default=300)
    demo.add_argument("--batch-size", type=_positive, default=25)
    demo.add_argument("--concurrency", type=_positive, default=4)
    demo.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from lambdakit.cli.demo import run_demo

    print("lambdakit demo: starting lambdakit local and running 02_batch_run.ipynb ...")
    demo = run_demo(
        args.runs_dir,
        n_records=args.n_records,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
    )
    print(f"function {demo.manifest.get('function')}, batch size {args.batch_size}")
    print(_headline(demo.summary))
    print(format_summary(demo.summary))
    print(f"run folder: {demo.folder}")
    print(f"executed notebook: {demo.notebook}")
    print("plots:")
    for path in demo.plots:
        print(f"  {path}")
    return 0


def add_lab_command(subparsers: Any) -> None:
    """`lambdakit lab`: lambdakit local plus JupyterLab pointed at it."""
    lab = subparsers.add_parser(
        "lab",
        help="start lambdakit local and JupyterLab on the example notebooks",
        description="Start lambdakit local, then JupyterLab on notebooks/ with "
        "LAMBDAKIT_ENDPOINT_URL set, so the notebooks use that service. Extra arguments "
        "after -- go to jupyter lab.",
    )
    lab.add_argument("--port", type=int, default=9001, help="port of lambdakit local")
    lab.add_argument("--state-dir", type=Path, default=Path("runs/lab-local-state"))
    lab.add_argument("lab_args", nargs=argparse.REMAINDER, help="arguments for jupyter lab")
    lab.set_defaults(func=_lab)


def _lab(args: argparse.Namespace) -> int:
    from lambdakit.cli.demo import run_lab

    extra = [a for a in args.lab_args if a != "--"]
    # A SIGTERM becomes SystemExit, so that JupyterLab and the local service are stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    return run_lab(port=args.port, state_dir=args.state_dir, lab_args=tuple(extra))
