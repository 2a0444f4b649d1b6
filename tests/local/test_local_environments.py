"""Execution environments and the Runtime API.

Behaviours a user sees go through the real REST API with boto3 (the session's LocalLambda).
Manager-level ones (capacity waiting, reaping, init timeouts, close) drive an
EnvironmentManager through a small aiohttp app on a loop in a thread. Real awslambdaric
processes and real bash/curl bootstraps run in both.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import os
import re
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

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
    stored = harness.manager.read_logs(spec.function_name)
    starts = [line for line in stored if " START RequestId: " in line]
    assert [line.split("RequestId: ")[1].split()[0] for line in starts] == [
        first.request_id, second.request_id, changed.request_id,
    ]  # fmt: skip
    assert harness.manager.read_logs(spec.function_name, tail=1)[0].endswith(
        report_of(changed).string
    )


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


def test_python_environment_starts_with_a_clean_process(harness, root):
    spec = make_spec(root, "import os\ndef handler(e, c):\n    return os.getpid()\n")
    pid = json.loads(harness.invoke(spec).payload)
    proc = psutil.Process(pid)
    assert proc.cmdline()[1:] == ["-m", "awslambdaric", "app.handler"]
    assert Path(proc.cmdline()[0]).resolve() == Path(sys.executable).resolve()
    assert os.getpgid(pid) == os.getpgid(0)  # stops with the server's process group


# -- through the real REST API with boto3 (engineer A's LocalLambda and fixtures) -------------


def invoke_tail(client: Any, name: str, event: Any = None) -> tuple[dict[str, Any], Any, str]:
    """Invoke with LogType=Tail: (response, decoded payload, log tail)."""
    response = client.invoke(
        FunctionName=name, Payload=json.dumps(event if event is not None else {}), LogType="Tail"
    )
    payload = json.loads(response["Payload"].read() or b"null")
    return response, payload, base64.b64decode(response["LogResult"]).decode()


def tail_report(tail: str, request_id: str) -> re.Match[str]:
    lines = tail.splitlines()
    assert lines[-2] == f"END RequestId: {request_id}", lines[-3:]
    match = REPORT_RE.match(lines[-1])
    assert match and match["id"] == request_id, lines[-1]
    return match


COUNTER = """
import time
COUNT = 0

def handler(event, context):
    global COUNT
    COUNT += 1
    time.sleep(event.get("sleep", 0))
    return COUNT
"""


def test_boto3_warm_reuse_cold_start_and_timeout(lambda_client, make_function):
    name = make_function(COUNTER, Timeout=1)
    first, count, tail = invoke_tail(lambda_client, name)
    rid = first["ResponseMetadata"]["RequestId"]
    assert count == 1 and "FunctionError" not in first
    assert "\tInit Duration: " in tail_report(tail, rid).string
    _, count, tail = invoke_tail(lambda_client, name)
    assert count == 2
    assert "Init Duration" not in tail
    timed_out, body, tail = invoke_tail(lambda_client, name, {"sleep": 30})
    rid = timed_out["ResponseMetadata"]["RequestId"]
    assert timed_out["FunctionError"] == "Unhandled"
    assert body == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": f"RequestId: {rid} Error: Task timed out after 1.00 seconds",
    }
    assert tail_report(tail, rid)["status"] == "timeout"
    _, count, tail = invoke_tail(lambda_client, name)
    assert count == 1  # the environment was thrown away: module globals reset
    assert "\tInit Duration: " in tail


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
def test_boto3_going_over_memory_size_is_out_of_memory(lambda_client, make_function, keep):
    name = make_function(MEMORY_HOG, MemorySize=128, Timeout=30)
    response, body, tail = invoke_tail(lambda_client, name, {"mb": 300, "keep": keep})
    rid = response["ResponseMetadata"]["RequestId"]
    assert response["FunctionError"] == "Unhandled"
    assert body == {
        "errorType": "Runtime.OutOfMemory",
        "errorMessage": f"RequestId: {rid} Error: Runtime exited with error: signal: killed",
    }
    report = tail_report(tail, rid)
    assert (report["status"], report["etype"]) == ("error", "Runtime.OutOfMemory")
    assert int(report["used"]) > 128
    ok, size, tail = invoke_tail(lambda_client, name, {"mb": 1, "keep": False})
    assert size == 1024 * 1024
    assert int(tail_report(tail, ok["ResponseMetadata"]["RequestId"])["used"]) < 128


def test_boto3_runtime_that_exits(lambda_client, make_function):
    name = make_function("import os\ndef handler(event, context):\n    os._exit(event)\n")
    response, body, tail = invoke_tail(lambda_client, name, 7)
    rid = response["ResponseMetadata"]["RequestId"]
    assert response["FunctionError"] == "Unhandled"
    assert body == {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {rid} Error: Runtime exited with error: exit status 7",
    }
    assert tail_report(tail, rid)["etype"] == "Runtime.ExitError"


@pytest.mark.parametrize(
    ("source", "handler", "error_type", "message"),
    [
        ("import missing\n", "app.handler", "Runtime.ImportModuleError",
         "Unable to import module 'app': No module named 'missing'"),
        ("def other(e, c): pass\n", "app.handler", "Runtime.HandlerNotFound",
         "Handler 'handler' missing on module 'app'"),
        ("def handler(e, c)\n", "app.handler", "Runtime.UserCodeSyntaxError",
         "Syntax error in module 'app'"),
    ],
)  # fmt: skip
def test_boto3_init_errors(lambda_client, make_function, source, handler, error_type, message):
    name = make_function(source, handler=handler)
    for _ in range(2):  # every invoke tries the init again, as Lambda does
        response, body, tail = invoke_tail(lambda_client, name)
        rid = response["ResponseMetadata"]["RequestId"]
        assert response["StatusCode"] == 200
        assert response["FunctionError"] == "Unhandled"
        assert body["errorType"] == error_type
        assert body["errorMessage"].startswith(message)
        assert body["requestId"] == ""
        # What awslambdaric posts: no frames for a missing module or handler, the line for
        # a syntax error.
        if error_type == "Runtime.UserCodeSyntaxError":
            [frame] = body["stackTrace"]
            assert re.fullmatch(r'  File ".*/app\.py" Line 1\n    def handler\(e, c\)\n', frame)
        else:
            assert body["stackTrace"] == []
        report = tail_report(tail, rid)
        assert (report["status"], report["etype"]) == ("error", error_type)


BASH_BOOTSTRAP = r"""#!/bin/bash
set -euo pipefail
echo "bootstrap starting for $_HANDLER"
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  HEADERS="$(mktemp)"
  EVENT=$(curl -sS -D "$HEADERS" "$API/invocation/next")
  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  echo "bash got $EVENT" >&2
  if [ "$EVENT" = '"fail"' ]; then
    curl -sS -o /dev/null -X POST "$API/invocation/$REQUEST_ID/error" \
      -H "Lambda-Runtime-Function-Error-Type: Bash.Failure" \
      -d '{"errorType": "Bash.Failure", "errorMessage": "asked to fail"}'
  else
    curl -sS -o /dev/null -X POST "$API/invocation/$REQUEST_ID/response" \
      -d "{\"echo\": $EVENT, \"handler\": \"$_HANDLER\"}"
  fi
done
"""


def test_boto3_bash_bootstrap_custom_runtime_with_curl(lambda_client, make_function):
    assert Path("/usr/bin/curl").exists()
    name = make_function(BASH_BOOTSTRAP, handler="function.handler", runtime="provided.al2023")
    response, body, tail = invoke_tail(lambda_client, name, {"n": 5})
    assert "FunctionError" not in response
    assert body == {"echo": {"n": 5}, "handler": "function.handler"}
    assert 'bash got {"n": 5}' in tail
    failed, body, tail = invoke_tail(lambda_client, name, "fail")
    assert failed["FunctionError"] == "Unhandled"
    assert body == {"errorType": "Bash.Failure", "errorMessage": "asked to fail"}
    assert "Init Duration" not in tail  # the same bash loop served both
    # A custom runtime's init error arrives through POST /runtime/init/error.
    broken = make_function(
        '#!/bin/bash\ncurl -sS -X POST -H "Lambda-Runtime-Function-Error-Type: Bash.Init" '
        '"http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime/init/error" '
        '-d \'{"errorType": "Bash.Init", "errorMessage": "no config"}\'\nexit 1\n',
        runtime="provided.al2023",
    )
    response, body, tail = invoke_tail(lambda_client, broken)
    assert response["FunctionError"] == "Unhandled"
    assert body == {"errorType": "Bash.Init", "errorMessage": "no config"}


POWERTOOLS_HANDLER = """
import boto3
import aws_lambda_powertools
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor, EventType, process_partial_response,
)

logger = Logger(service="orders")
processor = BatchProcessor(event_type=EventType.SQS)
lambda_client = boto3.client("lambda")  # reaches lambdakit local via AWS_ENDPOINT_URL_LAMBDA

def record_handler(record):
    if record.body == "bad":
        raise ValueError("bad record")
    logger.info("processed", extra={"body": record.body})

@logger.inject_lambda_context
def handler(event, context):
    result = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    me = lambda_client.get_function(FunctionName=context.function_name)
    result["my_handler"] = me["Configuration"]["Handler"]
    result["powertools_file"] = aws_lambda_powertools.__file__
    return result
"""


def _sqs_record(message_id: str, body: str) -> dict[str, Any]:
    return {
        "messageId": message_id, "receiptHandle": "h", "body": body, "attributes": {},
        "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1",
    }  # fmt: skip


def test_boto3_powertools_logger_and_batch_processor_unmodified(lambda_client, make_function):
    # Found, not imported: importing Powertools registers a botocore handler in every later
    # session of this process (its user agent), which sends lambdakit's runs to boto3.
    spec = importlib.util.find_spec("aws_lambda_powertools")
    assert spec is not None and spec.origin is not None
    package = Path(spec.origin).parent
    files: dict[str, str | bytes] = {
        f"aws_lambda_powertools/{path.relative_to(package)}": path.read_bytes()
        for path in package.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    files["app.py"] = POWERTOOLS_HANDLER
    name = make_function(files, Timeout=30)
    event = {"Records": [_sqs_record("m1", "good"), _sqs_record("m2", "bad"),
                         _sqs_record("m3", "fine")]}  # fmt: skip
    response, body, tail = invoke_tail(lambda_client, name, event)
    rid = response["ResponseMetadata"]["RequestId"]
    assert "FunctionError" not in response, body
    assert body["batchItemFailures"] == [{"itemIdentifier": "m2"}]
    assert body["my_handler"] == "app.handler"  # boto3 inside the handler reached the service
    assert "/code/" in body["powertools_file"]  # the bundled copy, not the venv's
    logged = [json.loads(line) for line in tail.splitlines() if line.startswith("{")]
    processed = [entry for entry in logged if entry.get("message") == "processed"]
    assert [entry["body"] for entry in processed] == ["good", "fine"]
    assert {entry["function_request_id"] for entry in processed} == {rid}
    assert {entry["function_name"] for entry in processed} == {name}


def test_boto3_output_is_attributed_to_its_invocation(lambda_client, make_function):
    name = make_function(
        "import sys, time\n"
        "def handler(event, context):\n"
        "    for i in range(5):\n"
        "        print(f'out {event} {i}')\n"
        "        print(f'err {event} {i}', file=sys.stderr)\n"
        "        time.sleep(0.01)\n"
        "    return event\n"
    )
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda tag: invoke_tail(lambda_client, name, tag), "ABCD"))
    for response, tag, tail in results:
        rid = response["ResponseMetadata"]["RequestId"]
        lines = tail.splitlines()
        start = lines.index(f"START RequestId: {rid} Version: $LATEST")
        expected = [line for i in range(5) for line in (f"out {tag} {i}", f"err {tag} {i}")]
        assert lines[start + 1 : -2] == expected
        tail_report(tail, rid)


def test_boto3_handler_printing_megabytes(lambda_client, make_function, local_lambda):
    name = make_function(
        "import sys\n"
        "def handler(event, context):\n"
        "    line = 'y' * 1023 + '\\n'\n"
        "    for _ in range(event):\n"
        "        sys.stdout.write(line)\n"
        "    print('LAST LINE')\n"
        "    return 'ok'\n",
        Timeout=60,
    )
    response, body, tail = invoke_tail(lambda_client, name, 20 * 1024)  # 20 MB
    rid = response["ResponseMetadata"]["RequestId"]
    assert body == "ok"
    assert tail.splitlines()[-3] == "LAST LINE"
    tail_report(tail, rid)
    group = Path(local_lambda.state_dir) / "logs" / name
    stored = sum(path.stat().st_size for path in group.iterdir())
    assert stored < 400 * 1024
    assert invoke_tail(lambda_client, name, 0)[1] == "ok"  # the environment still serves


def test_boto3_handler_printing_without_end_times_out(lambda_client, make_function):
    name = make_function(
        "def handler(event, context):\n    while True:\n        print('spam' * 200)\n", Timeout=1
    )
    response, body, tail = invoke_tail(lambda_client, name)
    assert body["errorType"] == "Sandbox.Timedout"
    assert tail_report(tail, response["ResponseMetadata"]["RequestId"])["status"] == "timeout"
    assert len(tail) <= 4096


def test_boto3_response_over_6_mb_is_response_size_too_large(lambda_client, make_function):
    name = make_function("def handler(event, context):\n    return 'x' * event\n")
    response, body, _ = invoke_tail(lambda_client, name, 7 * 1024 * 1024)
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Function.ResponseSizeTooLarge"
    assert "6291556 bytes" in body["errorMessage"]
    assert invoke_tail(lambda_client, name, 3)[1] == "xxx"  # the environment is kept


def test_a_cancelled_invocation_retires_its_environment(harness, root):
    spec = make_spec(
        root,
        "import os, time\n"
        "def handler(event, context):\n"
        "    if event:\n"
        "        open(event, 'w').close()\n"
        "        time.sleep(60)\n"
        "    return os.getpid()\n",
    )
    marker = root / "running"
    pending = asyncio.run_coroutine_threadsafe(harness.ainvoke(spec, str(marker)), harness.loop)
    wait_for(marker.exists, "the handler to start")
    pending.cancel()
    # The busy runtime is never handed a second invocation: a new environment answers.
    result = harness.invoke(spec, "")
    assert result.function_error is None
    assert result.init_duration_ms is not None
