"""The `lambdakit` command line: `lambdakit local ...` (and the commands other modules add).

    lambdakit local [--host 127.0.0.1] [--port 9001] [--state-dir DIR]
                    [--tls-cert PEM --tls-key PEM | --insecure-http]
                    [--access-key ID:SECRET ...] [--keys-file FILE]
        (a --host off loopback needs TLS, or --insecure-http, and at least one signing key)
    lambdakit local logs FUNCTION [--tail N] [--state-dir DIR]
    lambdakit local schedules [--group G] [--state-dir DIR]
    lambdakit local schedules history NAME [--group G] [--tail N] [--state-dir DIR]
    lambdakit local dead-letters [QUEUE] [--tail N] [--state-dir DIR]
        (no QUEUE: every queue and how many records it holds; QUEUE: its records, JSON lines)
    lambdakit local faults [FUNCTION] [--throttle-rate R] [--throttle-reason REASON]
                                      [--error-rate R] [--latency-ms MS] [--max-rps N]
                                      [--seed N] [--clear] [--endpoint-url URL | --state-dir DIR]
                                      (no FUNCTION: show, or with --clear remove, them all)
    lambdakit run FUNCTION INPUT [...]     lambdakit deploy NAME FOLDER [...]
    lambdakit demo [...]                   lambdakit lab [...]      (see cli/commands.py)

`local logs` and `local faults` find the running service by its state file (local/running.py):
the one in --state-dir, else the pointer that `lambdakit local` writes for the service it
started last. `faults` takes --endpoint-url first, then that state dir's service, then
$LAMBDAKIT_ENDPOINT_URL, then the pointer, then http://127.0.0.1:9001.

Errors are one line on stderr: exit 2 for bad arguments and for every LambdakitError.

Each command is an `add_<name>_command(subparsers)` function that sets `func` on its parser;
a new command is one more such function listed in COMMANDS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from lambdakit.cli.commands import (
    EXIT_BAD_INPUT,
    add_demo_command,
    add_deploy_command,
    add_lab_command,
    add_run_command,
    endpoint_from_env,
    print_error,
)
from lambdakit.errors import LambdakitError

__all__ = ["COMMANDS", "OneLineErrorParser", "build_parser", "main"]

_DEFAULT_ENDPOINT = "http://127.0.0.1:9001"


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (exit 2), with no usage block."""

    def error(self, message: str) -> NoReturn:
        """Print `<prog>: <message> (see <prog> --help)` and exit 2."""
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _delays(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated seconds, got {text!r}"
        ) from None


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number between 0 and 1, got {text!r}"
        ) from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}")
    return value


def _instant(text: str) -> float:
    """--test-clock's value: an ISO 8601 time (UTC unless it says otherwise) or 'now'."""
    import datetime as dt
    import time

    if text == "now":
        return time.time()
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 time such as 2025-03-29T12:00:00Z, or now; got {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.timestamp()


def add_local_command(subparsers: Any) -> None:
    """`lambdakit local`: serve, plus the `logs` and `faults` subcommands."""
    local = subparsers.add_parser("local", help="run the embedded AWS Lambda service")
    local.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    local.add_argument("--port", type=int, default=9001, help="port (0 picks a free one)")
    local.add_argument("--state-dir", type=Path, help="where functions and logs are kept")
    local.add_argument("--region", default="us-east-1")
    local.add_argument("--account-concurrency", type=int, default=1000)
    local.add_argument(
        "--account-rps", type=float, help="requests/s of the account (default: 10 x concurrency)"
    )
    local.add_argument("--idle-timeout", type=float, default=300.0, help="seconds before reaping")
    local.add_argument("--seed", type=int, help="seed alias routing and injected faults")
    local.add_argument("--event-retry-delays", type=_delays, default=(1.0, 2.0), metavar="S,S")
    local.add_argument("--log-level", default="INFO", help="server log level (stderr)")
    local.add_argument("--tls-cert", type=Path, metavar="PEM", help="serve HTTPS with this chain")
    local.add_argument("--tls-key", type=Path, metavar="PEM", help="the certificate's key")
    local.add_argument(
        "--insecure-http", action="store_true", help="allow plain HTTP off loopback (warned)"
    )
    local.add_argument(
        "--access-key", action="append", default=[], metavar="ID:SECRET",
        help="an access key allowed to sign requests (repeatable); requests must then be "
        "SigV4-signed by one",
    )  # fmt: skip
    local.add_argument("--keys-file", type=Path, help="allowed keys: ID:SECRET lines or JSON")
    local.add_argument("--read-timeout", type=float, default=30.0, metavar="S",
                       help="longest wait for a request's headers, or in its body")  # fmt: skip
    local.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                       help="a Host name to answer besides the bound address")  # fmt: skip
    local.add_argument(
        "--test-clock", type=_instant, metavar="TIME",
        help="for tests: the scheduler's time starts at TIME (ISO 8601, or now) and moves "
        "only through POST /_lambdakit/clock",
    )  # fmt: skip
    local.add_argument("--exit-with-parent", type=int, metavar="PID", help=argparse.SUPPRESS)
    # With --exit-with-parent (LocalLambda), the pointer is written only when asked for.
    local.add_argument("--announce", action="store_true", help=argparse.SUPPRESS)
    local.set_defaults(func=_serve)
    actions = local.add_subparsers(
        dest="local_command", metavar="{logs,faults,schedules,dead-letters}"
    )

    logs = actions.add_parser("logs", help="print a function's logs from the state dir")
    logs.add_argument("function")
    logs.add_argument("--tail", type=int, help="only the last N lines")
    logs.add_argument("--state-dir", type=Path, dest="logs_state_dir",
                      help="the service's state dir (default: the running service's)")  # fmt: skip
    logs.set_defaults(func=_logs)

    faults = actions.add_parser("faults", help="show or set a function's injected faults")
    faults.add_argument("function", nargs="?", help="the function (default: every function)")
    faults.add_argument("--throttle-rate", type=_rate)
    faults.add_argument("--throttle-reason", help="the Reason injected 429s carry")
    faults.add_argument("--max-rps", type=float, help="429 (a rate Reason) beyond N requests/s")
    faults.add_argument("--error-rate", type=_rate)
    faults.add_argument("--latency-ms", type=float)
    faults.add_argument("--seed", type=int, dest="fault_seed")
    faults.add_argument("--clear", action="store_true", help="remove every fault")
    where = faults.add_mutually_exclusive_group()
    where.add_argument("--endpoint-url", help="the service (default: the running one's)")
    where.add_argument("--state-dir", type=Path, dest="faults_state_dir",
                       help="find the service running on this state dir")  # fmt: skip
    faults.set_defaults(func=_faults)

    schedules = actions.add_parser("schedules", help="list schedules, or one's firing history")
    schedules.add_argument("--group", metavar="GROUP", help="only this schedule group")
    schedules.add_argument("--state-dir", type=Path, dest="schedules_state_dir", metavar="DIR")
    schedules.set_defaults(func=_schedules)
    history = schedules.add_subparsers(dest="schedules_command", metavar="{history}")
    firings = history.add_parser("history", help="a schedule's firings, oldest first")
    firings.add_argument("name")
    firings.add_argument("--group", default="default", dest="history_group", metavar="GROUP")
    firings.add_argument("--tail", type=int, metavar="N", help="only the last N rows")
    firings.add_argument("--state-dir", type=Path, dest="history_state_dir", metavar="DIR")
    firings.set_defaults(func=_schedule_history)

    letters = actions.add_parser(
        "dead-letters", help="dead-letter queues (DeadLetterConfig, destinations), or one's records"
    )
    letters.add_argument("queue", nargs="?", help="the queue's name or ARN (default: list them)")
    letters.add_argument("--tail", type=int, metavar="N", help="only the last N records")
    letters.add_argument("--state-dir", type=Path, dest="letters_state_dir", metavar="DIR")
    letters.set_defaults(func=_dead_letters)


COMMANDS: list[Callable[[Any], None]] = [
    add_local_command,
    add_run_command,
    add_deploy_command,
    add_demo_command,
    add_lab_command,
]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (its subparsers inherit the one-line errors)."""
    parser = OneLineErrorParser(prog="lambdakit", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(subparsers)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from lambdakit.local.server import ServerConfig, default_state_dir, is_loopback, serve

    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )  # fmt: skip
    from lambdakit.local.auth import load_keys_file, parse_access_key

    try:
        keys = dict(parse_access_key(text) for text in args.access_key)
        if args.keys_file is not None:
            keys.update(load_keys_file(args.keys_file))
        config = ServerConfig(
            host=args.host, port=args.port, state_dir=args.state_dir, region=args.region,
            account_concurrency=args.account_concurrency, account_rps=args.account_rps,
            idle_timeout_s=args.idle_timeout,
            seed=args.seed, event_retry_delays=args.event_retry_delays,
            parent_pid=args.exit_with_parent, allowed_hosts=tuple(args.allowed_host),
            tls_cert=args.tls_cert, tls_key=args.tls_key, insecure_http=args.insecure_http,
            access_keys=tuple(keys.items()), read_timeout_s=args.read_timeout,
            test_clock=args.test_clock,
            announce=args.exit_with_parent is None or args.announce,
        )  # fmt: skip
    except (OSError, ValueError) as exc:
        print(f"lambdakit local: {exc}", file=sys.stderr)
        return 2
    if args.insecure_http and not is_loopback(config.host):
        print(
            f"lambdakit local: WARNING: plain HTTP on {config.host}, which is not loopback: "
            "anyone on the network path can read payloads and results.",
            file=sys.stderr,
        )

    def ready(url: str) -> None:
        # LocalLambda waits for exactly this line (the URL, then what was bound).
        state = config.state_dir or default_state_dir()
        port = url.rsplit(":", 1)[1]
        print(
            f"lambdakit local listening on {url} (bound {config.host}:{port}, state: {state})",
            flush=True,
        )

    try:
        asyncio.run(serve(config, ready))
    except OSError as exc:
        print(f"lambdakit local: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


def _logs(args: argparse.Namespace) -> int:
    from lambdakit.local.logs import read_logs

    if args.tail is not None and args.tail < 0:
        return print_error("local logs", "--tail must be >= 0")
    state_dir = _state_dir(args.logs_state_dir, args.state_dir)
    events = read_logs(Path(state_dir), args.function, tail=args.tail)
    if not events and not (Path(state_dir) / "functions" / f"{args.function}.json").exists():
        print(
            f"lambdakit local logs: no function {args.function!r} in {state_dir}", file=sys.stderr
        )
        return 1
    for event in events:
        print(event.format())
    return 0


def _state_dir(*candidates: Path | None) -> Path:
    """The first --state-dir given, else the running service's (its pointer), else the default."""
    from lambdakit.local.running import find_service
    from lambdakit.local.server import default_state_dir

    given = next((c for c in candidates if c is not None), None)
    if given is not None:
        return Path(given)
    running = find_service()  # a pointer left by a killed service: LocalServiceError
    return running.state_dir if running is not None else default_state_dir()


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _schedules(args: argparse.Namespace) -> int:
    import datetime as dt

    from lambdakit.errors import InvalidInput
    from lambdakit.local.schedules import ScheduleStore, read_schedules

    state_dir = _state_dir(args.schedules_state_dir, args.state_dir)
    records = [
        r for r in read_schedules(state_dir) if args.group is None or r["GroupName"] == args.group
    ]
    if not records:
        print(f"no schedules in {state_dir}" + (f" (group {args.group})" if args.group else ""))
        return 0
    rows = [["GROUP", "NAME", "STATE", "EXPRESSION", "TIMEZONE", "NEXT RUN", "TARGET"]]
    now = dt.datetime.now(dt.timezone.utc)
    for record in records:
        upcoming = "-"
        if record["State"] == "ENABLED":
            try:
                cursor = dt.datetime.fromtimestamp(record.get("_Cursor", 0), dt.timezone.utc)
                run = next(ScheduleStore.timetable(record).runs(max(now, cursor)), None)
                upcoming = run.isoformat() if run is not None else "none left"
            except InvalidInput as exc:
                upcoming = f"? ({exc})"
        rows.append([
            record["GroupName"], record["Name"], record["State"], record["ScheduleExpression"],
            record["ScheduleExpressionTimezone"], upcoming, record["Target"]["Arn"],
        ])  # fmt: skip
    print(_table(rows))
    return 0


def _dead_letters(args: argparse.Namespace) -> int:
    from lambdakit.local.firings import dead_letter_queues, read_dead_letters

    state_dir = _state_dir(args.letters_state_dir, args.state_dir)
    if args.tail is not None and args.tail < 0:
        print("lambdakit local dead-letters: --tail must be >= 0", file=sys.stderr)
        return 2
    if args.queue is None:
        queues = dead_letter_queues(state_dir)
        if not queues:
            print(f"no dead letters in {state_dir}")
            return 0
        rows = [["QUEUE", "RECORDS", "LAST"]]
        rows += [[q["QueueArn"], str(q["records"]), q["last"] or "-"] for q in queues]
        print(_table(rows))
        return 0
    records = read_dead_letters(state_dir, args.queue)
    if not records:
        print(f"no dead letters for {args.queue} in {state_dir}")
        return 0
    if args.tail is not None:
        records = records[-args.tail :] if args.tail else []
    for record in records:
        print(json.dumps(record, sort_keys=True))
    return 0


def _schedule_history(args: argparse.Namespace) -> int:
    from lambdakit.local.firings import read_history
    from lambdakit.local.schedules import read_schedules

    state_dir = _state_dir(args.history_state_dir, args.schedules_state_dir, args.state_dir)
    if args.tail is not None and args.tail < 0:
        print("lambdakit local schedules history: --tail must be >= 0", file=sys.stderr)
        return 2
    group = args.history_group
    firings = read_history(state_dir, args.name, group)
    if not firings:
        known = any(
            r["Name"] == args.name and r["GroupName"] == group for r in read_schedules(state_dir)
        )
        if not known:
            print(
                f"lambdakit local schedules history: no schedule {group}/{args.name} in "
                f"{state_dir}",
                file=sys.stderr,
            )
            return 1
        print(f"{group}/{args.name} has not fired yet")
        return 0
    if args.tail is not None:
        firings = firings[-args.tail :] if args.tail else []
    rows = [["SCHEDULED", "FIRED", "ATTEMPT", "OUTCOME", "FUNCTION", "REQUEST ID", "DETAIL"]]
    for row in firings:
        detail = row.get("error_code") or ""
        if row.get("error_message"):
            detail += f": {row['error_message']}"
        if row["outcome"] == "missed":
            detail = f"{row['count']} runs missed, until {row['last_scheduled_time']}"
        elif row["outcome"] == "deleted":
            detail = row.get("reason", "")
        elif row.get("next_attempt_at"):
            detail += f" (next attempt {row['next_attempt_at']})"
        rows.append([
            row.get("scheduled_time") or "-", row.get("time") or "-",
            str(row.get("attempt") or "-"), row["outcome"], row.get("function_outcome") or "-",
            row.get("request_id") or "-", detail,
        ])  # fmt: skip
    print(_table(rows))
    return 0


def _faults_endpoint(args: argparse.Namespace) -> tuple[str, str]:
    """The service to talk to, and where that came from (for the error messages)."""
    from lambdakit.errors import LocalServiceError
    from lambdakit.local.running import SERVICE_FILE, find_service

    if args.endpoint_url:
        return args.endpoint_url, "--endpoint-url"
    state_dir = args.faults_state_dir or args.state_dir
    if state_dir is not None:
        running = find_service(state_dir)
        if running is None:
            raise LocalServiceError(
                f"no lambdakit local is running on state dir {state_dir} (no {SERVICE_FILE})"
            )
        return running.endpoint_url, str(running.path)
    from_env = endpoint_from_env()
    if from_env:
        return from_env, "LAMBDAKIT_ENDPOINT_URL"
    running = find_service()
    if running is not None:
        return running.endpoint_url, str(running.path)
    return _DEFAULT_ENDPOINT, "the default (no running lambdakit local was found)"


def _faults(args: argparse.Namespace) -> int:
    endpoint, found_by = _faults_endpoint(args)
    url = f"{endpoint.rstrip('/')}/_lambdakit/faults"
    if args.function is not None:
        url += f"/{urllib.parse.quote(args.function, safe='')}"
    settings = {
        "throttle_rate": args.throttle_rate,
        "throttle_reason": args.throttle_reason,
        "max_rps": args.max_rps,
        "error_rate": args.error_rate,
        "latency_ms": args.latency_ms,
        "seed": args.fault_seed,
    }
    given = {k: v for k, v in settings.items() if v is not None}
    if given and args.function is None:
        return print_error("local faults", "name the FUNCTION to set faults on")
    if args.clear:
        request = urllib.request.Request(url, method="DELETE")
    elif given:
        data = json.dumps(given).encode()
        request = urllib.request.Request(url, data=data, method="PUT")
        request.add_header("Content-Type", "application/json")
    else:
        request = urllib.request.Request(url)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read().decode()
    except urllib.error.HTTPError as exc:
        detail = " ".join(exc.read().decode(errors="replace").split())
        print(f"lambdakit local faults: {exc.code} {detail}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"lambdakit local faults: cannot reach {endpoint} (from {found_by}): {reason}",
              file=sys.stderr)  # fmt: skip
        return 1
    if args.clear:
        print(f"faults of {args.function or 'every function'} cleared")
    else:
        print(text or "{}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `lambdakit` script and `python -m lambdakit`."""
    args = build_parser().parse_args(argv)
    name = args.command + (f" {args.local_command}" if getattr(args, "local_command", None) else "")
    try:
        return int(args.func(args) or 0)
    except LambdakitError as exc:  # a bad setting, a missing function, a folder not writable
        return print_error(name, exc)
