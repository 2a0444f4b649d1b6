"""EnvironmentManager and the Runtime API, driven through a small aiohttp app in a thread.

Each test deploys its own function folder (unique name) into one shared manager, unless it
needs other manager settings. Real awslambdaric processes and real bash/curl bootstraps run.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import aws_lambda_powertools
import psutil
import pytest
from aiohttp import web

from lambdakit.local.environments import (
    CapacityExceeded,
    EnvironmentManager,
    FunctionSpec,
    InvokeResult,
)

REPORT_RE = re.compile(
    r"^REPORT RequestId: (?P<id>[\w-]+)\tDuration: \d+\.\d\d ms\tBilled Duration: \d+ ms\t"
    r"Memory Size: (?P<size>\d+) MB\tMax Memory Used: (?P<used>\d+) MB\t"
    r"(?:Init Duration: \d+\.\d\d ms\t)?"
    r"(?:Status: (?P<status>\w+)\t(?:Error Type: (?P<etype>[\w.]+)\t)?)?$"
)


class Harness:
    """An aiohttp app serving the Runtime API for one EnvironmentManager, on its own loop."""

    def __init__(self, state_dir: Path, **settings: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.manager: EnvironmentManager = self.run(self._start(state_dir, settings))

    async def _start(self, state_dir: Path, settings: dict[str, Any]) -> EnvironmentManager:
        manager = EnvironmentManager(runtime_api="", state_dir=state_dir, **settings)
        app = web.Application()
        manager.register(app)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        manager.runtime_api = f"127.0.0.1:{port}"
        return manager

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def invoke(self, spec: FunctionSpec, event: Any = None, **kwargs: Any) -> InvokeResult:
        return self.run(self.ainvoke(spec, event, **kwargs))

    async def ainvoke(self, spec: FunctionSpec, event: Any = None, **kwargs: Any) -> InvokeResult:
        return await self.manager.invoke(
            spec,
            json.dumps(event if event is not None else {}).encode(),
            request_id=str(uuid.uuid4()),
            invoked_arn=spec.function_arn,
            **kwargs,
        )

    def close(self) -> None:
        self.run(self._runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


def make_spec(root: Path, source: str | None = None, **overrides: Any) -> FunctionSpec:
    """A python3.11 function whose app.py is `source`, in a fresh folder under `root`."""
    name = overrides.pop("function_name", f"fn-{uuid.uuid4().hex[:8]}")
    code_dir = root / name / overrides.pop("folder", "code")
    code_dir.mkdir(parents=True)
    if source is not None:
        (code_dir / "app.py").write_text(textwrap.dedent(source))
    fields: dict[str, Any] = {
        "function_name": name,
        "version": "$LATEST",
        "function_arn": f"arn:aws:lambda:us-east-1:123456789012:function:{name}",
        "code_dir": code_dir,
        "handler": "app.handler",
        "runtime": "python3.11",
        "timeout_s": 30.0,
        "memory_mb": 256,
        "environment": {},
        "revision": "r1",
        "reserved_concurrency": None,
    }
    fields.update(overrides)
    return FunctionSpec(**fields)


def write_bootstrap(spec: FunctionSpec, script: str) -> None:
    path = spec.code_dir / "bootstrap"
    path.write_text(textwrap.dedent(script).lstrip())
    path.chmod(0o755)


def report_of(result: InvokeResult) -> re.Match[str]:
    lines = result.log.splitlines()
    assert lines[0].startswith(f"START RequestId: {result.request_id} Version: ")
    assert lines[-2] == f"END RequestId: {result.request_id}"
    match = REPORT_RE.match(lines[-1])
    assert match, lines[-1]
    assert match["id"] == result.request_id
    return match


def wait_for(predicate: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory):
    h = Harness(tmp_path_factory.mktemp("state"))
    yield h
    h.close()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path


ECHO = """
import os, json
COUNT = 0

def handler(event, context):
    global COUNT
    COUNT += 1
    print("event", json.dumps(event))
    return {
        "count": COUNT,
        "event": event,
        "request_id": context.aws_request_id,
        "arn": context.invoked_function_arn,
        "name": context.function_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "client_context": context.client_context.custom if context.client_context else None,
        "env": dict(os.environ),
        "cwd": os.getcwd(),
    }
"""


def test_invoke_runs_the_handler_with_lambdas_environment(harness, root):
    spec = make_spec(root, ECHO, environment={"GREETING": "hi", "AWS_REGION": "mars-1"})
    client_context = "eyJjdXN0b20iOiB7ImsiOiAidiJ9fQ=="  # base64 of {"custom": {"k": "v"}}
    result = harness.invoke(spec, {"x": 1}, client_context=client_context)
    assert result.function_error is None
    body = json.loads(result.payload)
    env = body["env"]
    assert body["event"] == {"x": 1}
    assert body["request_id"] == result.request_id
    assert body["arn"] == spec.function_arn
    assert body["name"] == spec.function_name
    assert body["client_context"] == {"k": "v"}
    assert 0 < body["remaining_ms"] <= 30_000
    assert body["cwd"] == str(spec.code_dir)
    assert env["GREETING"] == "hi"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-east-1"  # Lambda's win
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == spec.function_name
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == f"/aws/lambda/{spec.function_name}"
    assert re.fullmatch(
        r"\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}", env["AWS_LAMBDA_LOG_STREAM_NAME"]
    )
    assert env["_HANDLER"] == "app.handler"
    assert env["LAMBDA_TASK_ROOT"] == env["PYTHONPATH"] == str(spec.code_dir)
    assert env["TZ"] == ":UTC"
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.11"
    assert env["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
    assert env["AWS_LAMBDA_RUNTIME_API"].startswith(harness.manager.runtime_api + "/env/")
    assert env["AWS_ENDPOINT_URL_LAMBDA"] == f"http://{harness.manager.runtime_api}"
    assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SECRET_ACCESS_KEY"] and env["AWS_SESSION_TOKEN"]
    assert "AWS_LAMBDA_MAX_CONCURRENCY" not in env
    assert 'event {"x": 1}' in result.log.splitlines()


def test_warm_environment_is_reused_and_cold_start_reports_init(harness, root):
    spec = make_spec(root, ECHO)
    first = harness.invoke(spec)
    second = harness.invoke(spec)
    assert json.loads(first.payload)["count"] == 1
    assert json.loads(second.payload)["count"] == 2  # same process: module globals kept
    assert first.init_duration_ms is not None and first.init_duration_ms > 0
    assert second.init_duration_ms is None
    assert "\tInit Duration: " in first.log.splitlines()[-1]
    assert "Init Duration" not in second.log
    report = report_of(second)
    assert report["size"] == "256" and report["status"] is None
    assert int(report["used"]) > 5  # a real RSS: a Python process is bigger than 5 MB
    # A new revision (code or config changed) never reuses the warm environment.
    changed = harness.invoke(FunctionSpec(**{**spec.__dict__, "revision": "r2"}))
    assert json.loads(changed.payload)["count"] == 1
    assert changed.init_duration_ms is not None


def test_reserved_concurrency_caps_concurrent_invocations(harness, root):
    spec = make_spec(
        root,
        """
        import os, time
        def handler(event, context):
            open(event["started"], "w").close()
            while not os.path.exists(event["release"]):
                time.sleep(0.01)
            return "done"
        """,
        reserved_concurrency=1,
    )
    started, release = root / "started", root / "release"
    event = {"started": str(started), "release": str(release)}
    first = asyncio.run_coroutine_threadsafe(harness.ainvoke(spec, event), harness.loop)
    wait_for(started.exists, "the first invocation to start")
    with pytest.raises(CapacityExceeded) as exc_info:
        harness.invoke(spec, event)
    assert exc_info.value.reason == "ReservedFunctionConcurrentInvocationLimitExceeded"
    waiting = asyncio.run_coroutine_threadsafe(
        harness.ainvoke(spec, event, wait_for_capacity=True), harness.loop
    )
    time.sleep(0.2)  # not waiting for an event: giving the waiter a chance to (wrongly) run
    assert not waiting.done()
    release.touch()
    assert json.loads(first.result(30).payload) == "done"
    assert json.loads(waiting.result(30).payload) == "done"
    zero = FunctionSpec(**{**spec.__dict__, "reserved_concurrency": 0})
    with pytest.raises(CapacityExceeded):
        harness.invoke(zero, event)


def test_account_concurrency_limit(tmp_path):
    harness = Harness(tmp_path / "state", account_concurrency=1)
    try:
        spec = make_spec(tmp_path, "import time\ndef handler(e, c):\n    time.sleep(e)\n")
        slow = asyncio.run_coroutine_threadsafe(harness.ainvoke(spec, 1.0), harness.loop)
        wait_for(lambda: harness.manager.environments == 1, "the first environment")
        other = make_spec(tmp_path, "def handler(e, c):\n    return 1\n")
        with pytest.raises(CapacityExceeded) as exc_info:
            harness.invoke(other)
        assert exc_info.value.reason == "ConcurrentInvocationLimitExceeded"
        slow.result(30)
        # The idle environment of the first function makes room for the second's.
        assert json.loads(harness.invoke(other).payload) == 1
        assert harness.manager.environments == 1
    finally:
        harness.close()


def test_timeout_kills_the_environment_and_resets_globals(harness, root):
    spec = make_spec(
        root,
        """
        import time
        COUNT = 0
        def handler(event, context):
            global COUNT
            COUNT += 1
            time.sleep(event)
            return COUNT
        """,
        timeout_s=1.0,
    )
    result = harness.invoke(spec, 30)
    assert result.function_error == "Unhandled"
    assert json.loads(result.payload) == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": f"RequestId: {result.request_id} Error: Task timed out after 1.00 seconds",
    }
    assert report_of(result)["status"] == "timeout"
    assert f"{result.request_id} Task timed out after 1.00 seconds" in result.log
    again = harness.invoke(spec, 0)
    assert json.loads(again.payload) == 1  # a fresh environment
    assert again.init_duration_ms is not None


MEMORY_HOG = """
import time
KEEP = []
def handler(event, context):
    block = b"x" * (event["mb"] * 1024 * 1024)
    if event["keep"]:
        KEEP.append(block)
        time.sleep(5)
    return len(block)
"""


@pytest.mark.parametrize("keep", [True, False], ids=["held", "freed-before-return"])
def test_going_over_memory_size_is_out_of_memory(harness, root, keep):
    spec = make_spec(root, MEMORY_HOG, memory_mb=128)
    result = harness.invoke(spec, {"mb": 300, "keep": keep})
    assert result.function_error == "Unhandled"
    assert json.loads(result.payload) == {
        "errorType": "Runtime.OutOfMemory",
        "errorMessage": f"RequestId: {result.request_id} Error: Runtime exited with error: "
        "signal: killed",
    }
    report = report_of(result)
    assert (report["status"], report["etype"]) == ("error", "Runtime.OutOfMemory")
    assert int(report["used"]) > 128
    ok = harness.invoke(spec, {"mb": 1, "keep": False})
    assert json.loads(ok.payload) == 1024 * 1024
    assert int(report_of(ok)["used"]) < 128


def test_runtime_that_exits_mid_invocation(harness, root):
    spec = make_spec(root, "import os\ndef handler(event, context):\n    os._exit(event)\n")
    result = harness.invoke(spec, 7)
    assert result.function_error == "Unhandled"
    assert json.loads(result.payload) == {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {result.request_id} Error: Runtime exited with error: "
        "exit status 7",
    }
    assert report_of(result)["etype"] == "Runtime.ExitError"
    assert harness.manager.environments == 0 or all(
        env.spec.function_name != spec.function_name for env in harness.manager._envs.values()
    )


@pytest.mark.parametrize(
    ("source", "handler", "error_type", "message"),
    [
        ("", "missing.handler", "Runtime.ImportModuleError", "Unable to import module 'missing'"),
        (
            "def other(e, c): pass\n",
            "app.handler",
            "Runtime.HandlerNotFound",
            "Handler 'handler' missing on module 'app'",
        ),
        ("def handler(e, c)\n", "app.handler", "Runtime.UserCodeSyntaxError", "Syntax error"),
    ],
)
def test_init_errors_are_answered_as_lambda_does(
    harness, root, source, handler, error_type, message
):
    spec = make_spec(root, source, handler=handler)
    for _ in range(2):  # every invoke retries the init, as Lambda does
        result = harness.invoke(spec)
        assert result.function_error == "Unhandled"
        body = json.loads(result.payload)
        assert body["errorType"] == error_type
        assert message in body["errorMessage"]
        report = report_of(result)
        assert (report["status"], report["etype"]) == ("error", error_type)
        assert result.init_duration_ms is not None


def test_bash_bootstrap_custom_runtime_with_curl(harness, root):
    spec = make_spec(root, runtime="provided.al2023", handler="function.handler")
    write_bootstrap(
        spec,
        """
        #!/bin/bash
        set -euo pipefail
        echo "bootstrap starting for $_HANDLER"
        API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
        while true; do
          HEADERS="$(mktemp)"
          EVENT=$(curl -sS -D "$HEADERS" "$API/invocation/next")
          REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" \\
            | tr -d '[:space:]' | cut -d: -f2)
          echo "bash got $EVENT" >&2
          if [ "$EVENT" = '"fail"' ]; then
            curl -sS -o /dev/null -X POST "$API/invocation/$REQUEST_ID/error" \\
              -H "Lambda-Runtime-Function-Error-Type: Bash.Failure" \\
              -d '{"errorType": "Bash.Failure", "errorMessage": "asked to fail"}'
          else
            curl -sS -o /dev/null -X POST "$API/invocation/$REQUEST_ID/response" \\
              -d "{\\"echo\\": $EVENT, \\"handler\\": \\"$_HANDLER\\"}"
          fi
        done
        """,
    )
    result = harness.invoke(spec, {"n": 5})
    assert result.function_error is None
    assert json.loads(result.payload) == {"echo": {"n": 5}, "handler": "function.handler"}
    assert 'bash got {"n": 5}' in result.log
    failed = harness.invoke(spec, "fail")
    assert failed.function_error == "Unhandled"
    assert json.loads(failed.payload)["errorType"] == "Bash.Failure"
    assert failed.init_duration_ms is None  # the same bash loop served both


def test_runtime_api_next_sends_every_header(harness, root):
    spec = make_spec(root, runtime="provided.al2", handler="x", timeout_s=12.0)
    write_bootstrap(
        spec,
        f"""
        #!{sys.executable}
        import json, os, urllib.request
        api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime"
        while True:
            with urllib.request.urlopen(api + "/invocation/next") as reply:
                headers, body = dict(reply.headers), reply.read().decode()
            answer = json.dumps({{"headers": headers, "body": body}}).encode()
            rid = headers["Lambda-Runtime-Aws-Request-Id"]
            urllib.request.urlopen(api + "/invocation/" + rid + "/response", answer).read()
        """,
    )
    before_ms = time.time() * 1000
    result = harness.invoke(spec, {"k": "v"})
    answer = json.loads(result.payload)
    headers = answer["headers"]
    assert answer["body"] == '{"k": "v"}'
    assert headers["Content-Type"] == "application/json"
    assert headers["Lambda-Runtime-Aws-Request-Id"] == result.request_id
    assert headers["Lambda-Runtime-Invoked-Function-Arn"] == spec.function_arn
    assert headers["Lambda-Runtime-Trace-Id"].startswith("Root=1-")
    assert before_ms + 11_000 < int(headers["Lambda-Runtime-Deadline-Ms"]) < before_ms + 60_000
    assert "Lambda-Runtime-Client-Context" in headers
    assert "Lambda-Runtime-Cognito-Identity" in headers


def test_runtime_that_never_calls_next_fails_instead_of_hanging(tmp_path):
    harness = Harness(tmp_path / "state", init_timeout_s=1.0)
    try:
        spec = make_spec(tmp_path, runtime="provided.al2023", handler="x")
        write_bootstrap(spec, "#!/bin/bash\necho never polling\nexec sleep 600\n")
        result = harness.invoke(spec)
        assert result.function_error == "Unhandled"
        body = json.loads(result.payload)
        assert body["errorType"] == "Sandbox.Timedout"
        assert "never polling" in result.log
        assert report_of(result)["status"] == "timeout"
        wait_for(lambda: harness.manager.environments == 0, "the stuck environment to go")
        # A bootstrap that cannot even start is Runtime.InvalidEntrypoint.
        (spec.code_dir / "bootstrap").chmod(0o644)
        broken = harness.invoke(spec)
        assert json.loads(broken.payload)["errorType"] == "Runtime.InvalidEntrypoint"
        assert "permission denied" in json.loads(broken.payload)["errorMessage"]
    finally:
        harness.close()


def test_powertools_logger_and_batch_processor_run_unmodified(harness, root):
    spec = make_spec(
        root,
        """
        import aws_lambda_powertools
        from aws_lambda_powertools import Logger
        from aws_lambda_powertools.utilities.batch import (
            BatchProcessor, EventType, process_partial_response,
        )

        logger = Logger(service="orders")
        processor = BatchProcessor(event_type=EventType.SQS)

        def record_handler(record):
            if record.body == "bad":
                raise ValueError("bad record")
            logger.info("processed", extra={"body": record.body})

        @logger.inject_lambda_context
        def handler(event, context):
            result = process_partial_response(
                event=event, record_handler=record_handler, processor=processor, context=context
            )
            result["powertools_file"] = aws_lambda_powertools.__file__
            return result
        """,
    )
    site_copy = Path(aws_lambda_powertools.__file__).parent
    shutil.copytree(site_copy, spec.code_dir / "aws_lambda_powertools")

    def record(message_id: str, body: str) -> dict[str, Any]:
        return {
            "messageId": message_id, "receiptHandle": "h", "body": body,
            "attributes": {}, "messageAttributes": {}, "md5OfBody": "",
            "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:1:q",
            "awsRegion": "us-east-1",
        }  # fmt: skip

    event = {"Records": [record("m1", "good"), record("m2", "bad"), record("m3", "fine")]}
    result = harness.invoke(spec, event)
    assert result.function_error is None, result.payload
    body = json.loads(result.payload)
    assert body["batchItemFailures"] == [{"itemIdentifier": "m2"}]
    assert body["powertools_file"].startswith(str(spec.code_dir))  # the bundled copy ran
    logged = [json.loads(line) for line in result.log.splitlines() if line.startswith("{")]
    processed = [entry for entry in logged if entry.get("message") == "processed"]
    assert [entry["body"] for entry in processed] == ["good", "fine"]
    assert all(entry["function_request_id"] == result.request_id for entry in processed)
    assert all(entry["function_name"] == spec.function_name for entry in processed)


def test_idle_environments_are_reaped_and_retire_stops_them(tmp_path):
    harness = Harness(tmp_path / "state", idle_timeout_s=0.2)
    try:
        spec = make_spec(tmp_path, ECHO)
        harness.invoke(spec)
        wait_for(lambda: harness.manager.environments == 0, "the idle environment to be reaped")
        harness.invoke(spec)
        assert harness.manager.environments == 1
        pid = next(iter(harness.manager._envs.values())).pid
        harness.run(harness.manager.retire(spec.function_name))
        assert harness.manager.environments == 0
        wait_for(lambda: not psutil.pid_exists(pid), "the retired process to exit")
        assert harness.invoke(spec).init_duration_ms is not None
    finally:
        harness.close()


def test_close_ends_invocations_in_flight(tmp_path):
    harness = Harness(tmp_path / "state")
    spec = make_spec(tmp_path, "import time\ndef handler(e, c):\n    time.sleep(60)\n")
    slow = asyncio.run_coroutine_threadsafe(harness.ainvoke(spec), harness.loop)
    pids: list[int] = []

    def started() -> bool:
        # Read from the test thread while the loop thread runs: copy, then look.
        pids[:] = [env.pid for env in list(harness.manager._envs.values()) if env.pid]
        return bool(pids)

    wait_for(started, "the environment to start")
    pid = pids[0]
    harness.close()
    result = slow.result(10)
    assert json.loads(result.payload)["errorType"] == "Runtime.ExitError"
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie", "exit")


def test_output_is_attributed_to_its_invocation(harness, root):
    spec = make_spec(
        root,
        """
        import sys, time
        def handler(event, context):
            for i in range(5):
                print(f"out {event} {i}")
                print(f"err {event} {i}", file=sys.stderr)
                time.sleep(0.01)
            return event
        """,
    )

    async def both() -> list[InvokeResult]:
        return await asyncio.gather(*(harness.ainvoke(spec, tag) for tag in ("A", "B", "C")))

    for result in harness.run(both()):
        tag = json.loads(result.payload)
        body = result.log.splitlines()[1:-2]
        assert body == [line for i in range(5) for line in (f"out {tag} {i}", f"err {tag} {i}")]
    logged = harness.manager.read_logs(spec.function_name)
    assert sum(1 for line in logged if " START RequestId: " in line) == 3
    assert sum(1 for line in logged if "\tMax Memory Used: " in line) == 3


def test_handler_printing_megabytes_is_bounded(harness, root):
    spec = make_spec(
        root,
        """
        import sys
        def handler(event, context):
            line = "y" * 1023 + "\\n"
            for _ in range(event):
                sys.stdout.write(line)
            print("LAST LINE")
            return "ok"
        """,
    )
    result = harness.invoke(spec, 20 * 1024)  # 20 MB of output
    assert json.loads(result.payload) == "ok"
    assert len(result.log) < 200 * 1024
    lines = result.log.splitlines()
    assert any("bytes of this invocation's output were not kept" in line for line in lines)
    assert lines[-3] == "LAST LINE"
    report_of(result)
    stream_bytes = sum(
        path.stat().st_size
        for path in (harness.manager.state_dir / "logs" / spec.function_name).iterdir()
    )
    assert stream_bytes < 400 * 1024
    assert json.loads(harness.invoke(spec, 0).payload) == "ok"


def test_python_environment_starts_with_a_clean_process(harness, root):
    spec = make_spec(root, "import os\ndef handler(e, c):\n    return os.getpid()\n")
    pid = json.loads(harness.invoke(spec).payload)
    proc = psutil.Process(pid)
    assert proc.cmdline()[1:] == ["-m", "awslambdaric", "app.handler"]
    assert Path(proc.cmdline()[0]).resolve() == Path(sys.executable).resolve()
    assert os.getpgid(pid) == os.getpgid(0)  # stops with the server's process group
