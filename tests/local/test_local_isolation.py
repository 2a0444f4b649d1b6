"""The Runtime API is the environments' alone, init errors are the user's, files are private.

The attacker tests play another process on the same machine: it reads what it can find (log
file names, log lines with request ids, listening ports) and tries to poll for payloads and
post forged results, on the public port and on the Runtime API's own listener.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest
from aiohttp import ClientSession, ClientTimeout, web

import lambdakit
from lambdakit.local.runtime import Invocation, RuntimeAPI, RuntimeChannel

SLOW_DOUBLER = """
import time

def handler(event, context):
    time.sleep(0.05)
    return [{"i": item["i"], "double": item["i"] * 2} for item in event["Items"]]
"""

ATTACKER = r"""
import json, os, re, sys, time, urllib.request, urllib.error
state_dir, ports, stop_file, out = sys.argv[1], sys.argv[2].split(","), sys.argv[3], sys.argv[4]
tried = {"next": 0, "response": 0, "init_error": 0}
won = []
def call(url, data=None):
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=0.3) as reply:
            won.append([url, reply.status, reply.read(200).decode("utf-8", "replace")])
    except urllib.error.HTTPError as exc:
        pass
    except OSError:
        pass
while not os.path.exists(stop_file):
    env_ids, request_ids = set(), set()
    for root, _, files in os.walk(os.path.join(state_dir, "logs")):
        for name in files:
            env_ids.update(re.findall(r"\]([0-9a-f]{32})", name))
            try:
                text = open(os.path.join(root, name), errors="replace").read()
            except OSError:
                continue
            request_ids.update(re.findall(r"START RequestId: ([0-9a-f-]{36})", text))
    for port in ports:
        for env_id in env_ids:
            base = f"http://127.0.0.1:{port}/env/{env_id}/2018-06-01/runtime"
            tried["next"] += 1
            call(base + "/invocation/next")
            tried["init_error"] += 1
            call(base + "/init/error", b'{"errorType": "Forged", "errorMessage": "x"}')
            for rid in list(request_ids)[-5:]:
                tried["response"] += 1
                call(base + f"/invocation/{rid}/response", b'[{"forged": true}]')
    time.sleep(0.01)
json.dump({"tried": tried, "won": won}, open(out, "w"))
"""


def listening_ports(pid: int) -> list[int]:
    """Every TCP port the process listens on (what `ss -ltnp` would show an attacker)."""
    process = psutil.Process(pid)
    return sorted(
        conn.laddr.port
        for conn in process.net_connections(kind="tcp")
        if conn.status == psutil.CONN_LISTEN
    )


def test_runtime_api_is_not_served_on_the_public_port(local_lambda, make_function, invoke_json):
    name = make_function("def handler(event, context):\n    return 1\n")
    invoke_json(name)
    log_dir = Path(local_lambda.state_dir) / "logs" / name
    env_id = re.search(r"\]([0-9a-f]{32})", next(log_dir.iterdir()).name).group(1)
    url = f"{local_lambda.endpoint_url}/env/{env_id}/2018-06-01/runtime/invocation/next"
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(url, timeout=10)
    assert caught.value.code == 404
    assert caught.value.headers["x-amzn-ErrorType"] == "UnknownOperationException"
    # The server listens on two ports: the public one and the Runtime API's, on loopback.
    pid = local_lambda._process.pid
    ports = listening_ports(pid)
    public = int(local_lambda.endpoint_url.rsplit(":", 1)[1])
    assert public in ports and len(ports) == 2
    runtime_port = next(p for p in ports if p != public)
    bound = {
        conn.laddr.ip
        for conn in psutil.Process(pid).net_connections(kind="tcp")
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == runtime_port
    }
    assert bound == {"127.0.0.1"}
    # Even there, the env id from the log file name opens nothing.
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(url.replace(str(public), str(runtime_port)), timeout=10)
    assert caught.value.code == 410


def test_attacker_process_steals_and_forges_nothing_during_a_cached_run(
    local_lambda, make_function, tmp_path
):
    name = make_function(SLOW_DOUBLER)
    ports = listening_ports(local_lambda._process.pid)
    stop_file, report = tmp_path / "stop", tmp_path / "attacker.json"
    attacker = subprocess.Popen(
        [sys.executable, "-c", ATTACKER, str(local_lambda.state_dir),
         ",".join(map(str, ports)), str(stop_file), str(report)],
    )  # fmt: skip
    records = [{"i": i} for i in range(300)]
    cache = tmp_path / "cache"
    try:
        first = lambdakit.run(
            name, records, batch_size=5, concurrency=4, cache=cache, progress=False,
            endpoint_url=local_lambda.endpoint_url,
        )  # fmt: skip
    finally:
        stop_file.touch()
        attacker.wait(60)
    seen = json.loads(report.read_text())
    assert seen["won"] == []
    assert seen["tried"]["next"] > 0 and seen["tried"]["response"] > 0
    expected = [{"i": i, "double": 2 * i} for i in range(300)]
    assert list(first.outputs()) == expected
    assert first.summary()["failed_records"] == 0
    # The rerun comes from the cache, and the cache holds exactly the real outputs.
    again = lambdakit.run(
        name, records, batch_size=5, concurrency=4, cache=cache, progress=False,
        endpoint_url=local_lambda.endpoint_url,
    )  # fmt: skip
    assert list(again.outputs()) == expected
    assert again.summary()["cached_batches"] == 60


class ChannelServer:
    """A RuntimeAPI over one channel with a known token, served on a free loopback port."""

    def __init__(self) -> None:
        self.channel = RuntimeChannel()
        self.token = uuid.uuid4().hex

    async def __aenter__(self) -> ChannelServer:
        app = web.Application()
        RuntimeAPI(lambda token: self.channel if token == self.token else None).register(app)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{port}/env/{self.token}/2018-06-01/runtime"
        self.session = ClientSession(timeout=ClientTimeout(total=10))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()
        self.channel.close(_closed())
        await self.runner.cleanup()


def _closed() -> Any:
    from lambdakit.local.runtime import Outcome

    return Outcome("closed")


def test_second_concurrent_poll_is_refused_and_never_takes_the_payload():
    async def scenario() -> None:
        async with ChannelServer() as server:
            first = asyncio.ensure_future(server.session.get(server.base + "/invocation/next"))
            while not server.channel.polling():
                await asyncio.sleep(0.01)
            second = await server.session.get(server.base + "/invocation/next")
            assert second.status == 409
            assert (await second.json())["errorType"] == "Runtime.ConcurrentPoll"
            invocation = Invocation("rid-1", b'{"secret": 1}', "arn", 5.0)
            server.channel.dispatch(invocation, delivery_timeout_s=5.0)
            reply = await first
            assert reply.headers["Lambda-Runtime-Aws-Request-Id"] == "rid-1"
            assert await reply.read() == b'{"secret": 1}'

    asyncio.run(scenario())


def test_a_dropped_poll_does_not_lock_the_runtime_out():
    async def scenario() -> None:
        async with ChannelServer() as server:
            dropped = asyncio.ensure_future(server.session.get(server.base + "/invocation/next"))
            while not server.channel.polling():
                await asyncio.sleep(0.01)
            old_poll = server.channel._waiter
            dropped.cancel()  # the connection closes under the pending poll
            async with ClientSession(timeout=ClientTimeout(total=10)) as again:
                poll = asyncio.ensure_future(again.get(server.base + "/invocation/next"))
                while server.channel._waiter is old_poll or not server.channel.polling():
                    assert not poll.done(), "the runtime's new poll was refused"
                    await asyncio.sleep(0.01)
                server.channel.dispatch(
                    Invocation("rid-2", b"{}", "arn", 5.0), delivery_timeout_s=5.0
                )
                assert (await poll).headers["Lambda-Runtime-Aws-Request-Id"] == "rid-2"

    asyncio.run(scenario())


def test_answers_for_request_ids_not_handed_out_are_refused():
    async def scenario() -> None:
        async with ChannelServer() as server:
            invocation = Invocation("rid-3", b"{}", "arn", 5.0)
            server.channel.dispatch(invocation, delivery_timeout_s=5.0)
            # Dispatched but not yet fetched by GET /next: nobody may answer it.
            early = await server.session.post(
                server.base + "/invocation/rid-3/response", data=b"[1]"
            )
            assert early.status == 400
            wrong = await server.session.post(
                server.base + "/invocation/other/response", data=b"[1]"
            )
            assert wrong.status == 400
            assert not invocation.done.done()
            poll = await server.session.get(server.base + "/invocation/next")
            assert poll.headers["Lambda-Runtime-Aws-Request-Id"] == "rid-3"
            ok = await server.session.post(server.base + "/invocation/rid-3/response", data=b"[2]")
            assert ok.status == 202
            assert (await invocation.done).body == b"[2]"
            # A guessed token is an unknown environment.
            guessed = server.base.replace(server.token, uuid.uuid4().hex)
            assert (await server.session.get(guessed + "/invocation/next")).status == 410

    asyncio.run(scenario())


def test_token_never_reaches_log_file_names_or_lines(local_lambda, make_function, invoke_json):
    name = make_function(
        "import os\nprint('api', os.environ['AWS_LAMBDA_RUNTIME_API'])\n"
        "def handler(event, context):\n    return os.environ['AWS_LAMBDA_RUNTIME_API']\n"
    )
    _, api = invoke_json(name)
    token = api.rsplit("/env/", 1)[1]
    assert len(token) >= 40
    log_dir = Path(local_lambda.state_dir) / "logs" / name
    for path in log_dir.iterdir():
        assert token not in path.name
        assert token not in path.read_text()
    assert any(
        "api 127.0.0.1:" in line and "/env/<token>" in line for line in local_lambda.logs(name)
    )
    assert token not in local_lambda.server_log.read_text()


BOOM = {
    "app.py": "import helper\n\ndef handler(event, context):\n    return 1\n",
    "helper.py": "def explode():\n    raise RuntimeError('boom at import')\n\nexplode()\n",
}


def test_import_time_exception_reaches_the_caller_as_aws_reports_it(
    lambda_client, make_function, local_lambda
):
    import base64

    name = make_function(BOOM)
    response = lambda_client.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
    body = json.loads(response["Payload"].read())
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "RuntimeError"
    assert body["errorMessage"] == "boom at import"
    assert body["requestId"] == ""
    assert body["stackTrace"][-1].endswith("in explode\n    raise RuntimeError('boom at import')\n")
    assert any('helper.py", line 4, in <module>' in frame for frame in body["stackTrace"])
    tail = base64.b64decode(response["LogResult"]).decode()
    assert "[ERROR] RuntimeError: boom at import" in tail
    assert "raise RuntimeError('boom at import')" in tail
    assert "InvalidURL" not in tail and "nonnumeric port" not in tail
    assert "Status: error\tError Type: RuntimeError" in tail


def test_import_time_exception_shows_in_run_errors(local_lambda, make_function, tmp_path):
    name = make_function(BOOM)
    result = lambdakit.run(
        name, [{"i": 1}, {"i": 2}], batch_size=2, retry=False, cache=False, progress=False,
        endpoint_url=local_lambda.endpoint_url,
    )  # fmt: skip
    errors = result.errors()
    assert list(errors["record"]) == [0, 1]
    assert set(errors["error_type"]) == {"RuntimeError"}
    assert set(errors["error_message"]) == {"boom at import"}


def test_printed_error_lines_without_the_runtime_failure_are_not_taken_for_an_init_error(
    lambda_client, make_function
):
    # A module that prints an [ERROR] line and exits is not awslambdaric reporting an init
    # error: the caller gets the exit, not a type made up by the printed text.
    name = make_function("import os\nprint('[ERROR] Forged.Type: trust me')\nos._exit(3)\n")
    response = lambda_client.invoke(FunctionName=name, Payload=b"{}")
    body = json.loads(response["Payload"].read())
    assert body["errorType"] == "Runtime.ExitError"
    assert "exit status 3" in body["errorMessage"]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_state_dir_and_logs_are_private(tmp_path, zip_code):
    from lambdakit.local import LocalLambda

    state = tmp_path / "fresh" / "state"
    with LocalLambda(state_dir=state) as local:
        client = local.client()
        client.create_function(
            FunctionName="private", Runtime="python3.11", Handler="app.handler",
            Role="arn:aws:iam::123456789012:role/x",
            Code={"ZipFile": zip_code("def handler(event, context):\n    return 1\n")},
        )  # fmt: skip
        client.get_waiter("function_active_v2").wait(FunctionName="private")
        client.invoke(FunctionName="private", Payload=b"{}", InvocationType="Event")
        client.invoke(FunctionName="private", Payload=b"{}")
        folders = [state, state / "logs", state / "logs" / "private", state / "functions",
                   state / "code", state / "events"]  # fmt: skip
        for folder in folders:
            assert _mode(folder) == 0o700, folder
        logs = list((state / "logs" / "private").iterdir())
        files = [local.server_log, state / "functions" / "private.json", *logs,
                 *(state / "code").glob("*.zip")]  # fmt: skip
        assert len(files) >= 4
        for path in files:
            assert _mode(path) & 0o077 == 0, (path, oct(_mode(path)))


def test_handlers_keep_the_umask_the_server_was_started_with(tmp_path, zip_code):
    from lambdakit.local import LocalLambda

    source = textwrap.dedent(
        """
        import os
        def handler(event, context):
            path = "/tmp/" + event["name"]
            open(path, "w").close()
            mode = os.stat(path).st_mode & 0o777
            os.unlink(path)
            return mode
        """
    )
    previous = os.umask(0o022)
    try:
        with LocalLambda(state_dir=tmp_path / "s") as local:
            client = local.client()
            client.create_function(
                FunctionName="umask", Runtime="python3.11", Handler="app.handler",
                Role="arn:aws:iam::123456789012:role/x", Code={"ZipFile": zip_code(source)},
            )  # fmt: skip
            client.get_waiter("function_active_v2").wait(FunctionName="umask")
            reply = client.invoke(
                FunctionName="umask", Payload=json.dumps({"name": uuid.uuid4().hex}).encode()
            )
            assert json.loads(reply["Payload"].read()) == 0o644
    finally:
        os.umask(previous)
