"""The command lines: the AWS CLI against `lambdakit local`, and lambdakit's own commands."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import psutil
import pytest

from lambdakit.cli.main import main
from tests.conftest import build_zip

ROLE = "arn:aws:iam::123456789012:role/lambdakit-test"  # AWS checks the pattern

PID = "import os\ndef handler(event, context):\n    return os.getpid()\n"
ECHO = "def handler(event, context):\n    print('cli saw', event)\n    return {'got': event}\n"


def test_aws_cli_covers_the_function_lifecycle(aws_cli, tmp_path):
    package = tmp_path / "fn.zip"
    package.write_bytes(build_zip(ECHO))
    name = "aws-cli-function"
    created = aws_cli(
        "lambda", "create-function", "--function-name", name, "--runtime", "python3.11",
        "--role", "arn:aws:iam::123456789012:role/r", "--handler", "app.handler",
        "--zip-file", f"fileb://{package}", "--timeout", "9",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["State"] == "Pending"
    try:
        waited = aws_cli("lambda", "wait", "function-active-v2", "--function-name", name)
        assert waited.returncode == 0, waited.stderr
        got = json.loads(aws_cli("lambda", "get-function", "--function-name", name).stdout)
        assert got["Configuration"]["Timeout"] == 9
        listed = json.loads(aws_cli("lambda", "list-functions").stdout)
        assert name in [f["FunctionName"] for f in listed["Functions"]]

        out = tmp_path / "out.json"
        invoked = aws_cli(
            "lambda", "invoke", "--function-name", name, "--payload", '{"k": 1}',
            "--log-type", "Tail", str(out),
        )  # fmt: skip
        assert invoked.returncode == 0, invoked.stderr
        meta = json.loads(invoked.stdout)
        assert (meta["StatusCode"], meta["ExecutedVersion"]) == (200, "$LATEST")
        assert json.loads(out.read_text()) == {"got": {"k": 1}}

        version = json.loads(aws_cli("lambda", "publish-version", "--function-name", name).stdout)
        assert version["Version"] == "1"
        alias = aws_cli(
            "lambda", "create-alias", "--function-name", name, "--name", "live",
            "--function-version", "1",
        )  # fmt: skip
        assert alias.returncode == 0, alias.stderr
        invoked = aws_cli(
            "lambda", "invoke", "--function-name", name, "--qualifier", "live", str(out)
        )
        assert json.loads(invoked.stdout)["ExecutedVersion"] == "1"
        concurrency = aws_cli(
            "lambda", "put-function-concurrency", "--function-name", name,
            "--reserved-concurrent-executions", "2",
        )  # fmt: skip
        assert json.loads(concurrency.stdout) == {"ReservedConcurrentExecutions": 2}
        aliases = json.loads(aws_cli("lambda", "list-aliases", "--function-name", name).stdout)
        assert [a["Name"] for a in aliases["Aliases"]] == ["live"]
    finally:
        deleted = aws_cli("lambda", "delete-function", "--function-name", name)
        assert deleted.returncode == 0, deleted.stderr


def test_aws_cli_covers_updates_aliases_concurrency_and_errors(
    aws_cli, make_function, wait_updated, tmp_path
):
    name = make_function(ECHO)

    def run(*args: str) -> dict:
        done = aws_cli("lambda", *args)
        assert done.returncode == 0, (args, done.stderr)
        return json.loads(done.stdout) if done.stdout.strip() else {}

    def fails(*args: str) -> str:
        done = aws_cli("lambda", *args)
        assert done.returncode != 0, args
        return done.stderr

    package = tmp_path / "v2.zip"
    package.write_bytes(build_zip(ECHO.replace("'got'", "'v2'")))
    assert run("update-function-code", "--function-name", name, "--zip-file",
               f"fileb://{package}")["LastUpdateStatus"] == "InProgress"  # fmt: skip
    wait_updated(name)
    run("update-function-configuration", "--function-name", name, "--memory-size", "256",
        "--environment", "Variables={STAGE=test}")  # fmt: skip
    wait_updated(name)
    config = run("get-function-configuration", "--function-name", name)
    assert (config["MemorySize"], config["Environment"]) == (256, {"Variables": {"STAGE": "test"}})
    versions = run("list-versions-by-function", "--function-name", name)["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST"]
    run("create-alias", "--function-name", name, "--name", "live", "--function-version", "$LATEST")
    run("update-alias", "--function-name", name, "--name", "live", "--description", "blue")
    assert run("get-alias", "--function-name", name, "--name", "live")["Description"] == "blue"
    run("delete-alias", "--function-name", name, "--name", "live")

    out = str(tmp_path / "out.json")
    event = run("invoke", "--function-name", name, "--invocation-type", "Event", out)
    assert event["StatusCode"] == 202
    dry = run("invoke", "--function-name", name, "--invocation-type", "DryRun", out)
    assert dry["StatusCode"] == 204
    assert "InvalidRequestContentException" in fails(
        "invoke", "--function-name", name, "--payload", "not json", out
    )
    run("put-function-concurrency", "--function-name", name,
        "--reserved-concurrent-executions", "0")  # fmt: skip
    assert run("get-function-concurrency", "--function-name", name) == {
        "ReservedConcurrentExecutions": 0
    }
    assert "TooManyRequestsException" in fails("invoke", "--function-name", name, out)
    run("delete-function-concurrency", "--function-name", name)
    assert run("get-function-concurrency", "--function-name", name) == {}


def test_aws_cli_reports_service_errors(aws_cli):
    missing = aws_cli("lambda", "get-function", "--function-name", "aws-cli-missing")
    assert missing.returncode != 0
    assert "ResourceNotFoundException" in missing.stderr
    assert "Function not found: arn:aws:lambda:us-east-1:123456789012:function:aws-cli-missing" in (
        missing.stderr
    )


def test_lambdakit_local_starts_prints_its_url_and_stops_on_sigterm(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "lambdakit", "local", "--port", "0", "--state-dir",
         str(tmp_path / "state")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = process.stdout.readline()
        assert line.startswith("lambdakit local listening on http://127.0.0.1:"), line
        url = line.split()[4]
        import boto3

        client = boto3.client(
            "lambda", endpoint_url=url, region_name="us-east-1",
            aws_access_key_id="x", aws_secret_access_key="x",
        )  # fmt: skip
        assert client.list_functions()["Functions"] == []
        client.create_function(
            FunctionName="pid", Runtime="python3.11", Role=ROLE, Handler="app.handler",
            Code={"ZipFile": build_zip(PID)},
        )  # fmt: skip
        while client.get_function(FunctionName="pid")["Configuration"]["State"] != "Active":
            time.sleep(0.02)
        environment_pid = json.loads(client.invoke(FunctionName="pid")["Payload"].read())
        assert psutil.pid_exists(environment_pid)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        # Stopping the service stops the environments it started.
        deadline = time.monotonic() + 30
        while psutil.pid_exists(environment_pid) and psutil.Process(environment_pid).status() != (
            psutil.STATUS_ZOMBIE
        ):
            assert time.monotonic() < deadline, "environment outlived the server"
            time.sleep(0.02)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_lambdakit_local_warns_when_not_loopback(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "lambdakit", "local", "--host", "0.0.0.0", "--port", "0",
         "--state-dir", str(tmp_path / "state"), "--insecure-http",
         "--access-key", "AKIDCLITEST:secret"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout.readline().startswith("lambdakit local listening on ")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        assert "not loopback" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_bad_arguments_exit_with_usage(capsys):
    with pytest.raises(SystemExit) as exc_info:
        main(["local", "faults", "fn", "--throttle-rate", "2"])
    assert exc_info.value.code == 2
    assert "between 0 and 1" in capsys.readouterr().err


def test_local_logs_prints_the_tail(lambda_client, make_function, local_lambda, capsys):
    name = make_function(ECHO)
    lambda_client.invoke(FunctionName=name, Payload=b'{"n": 5}')
    deadline = time.monotonic() + 60
    while True:
        assert main(["local", "logs", name, "--tail", "4", "--state-dir",
                     str(local_lambda.state_dir)]) == 0  # fmt: skip
        lines = capsys.readouterr().out.splitlines()
        if lines and "REPORT RequestId:" in lines[-1]:
            break
        assert time.monotonic() < deadline, lines
        time.sleep(0.05)
    assert len(lines) == 4
    assert "cli saw {'n': 5}" in lines[1]
    assert "END RequestId:" in lines[2]


def test_local_logs_of_an_unknown_function(local_lambda, capsys):
    code = main(["local", "logs", "nobody-here", "--state-dir", str(local_lambda.state_dir)])
    assert code == 1
    assert "no function 'nobody-here'" in capsys.readouterr().err


def test_local_faults_command(lambda_client, make_function, local_lambda, capsys):
    name = make_function(ECHO)
    url = local_lambda.endpoint_url
    code = main(["local", "faults", name, "--throttle-rate", "1", "--latency-ms", "1",
                 "--endpoint-url", url])  # fmt: skip
    assert code == 0
    assert json.loads(capsys.readouterr().out)["throttle_rate"] == 1.0
    with pytest.raises(lambda_client.exceptions.TooManyRequestsException):
        lambda_client.invoke(FunctionName=name)
    assert main(["local", "faults", name, "--endpoint-url", url]) == 0
    assert json.loads(capsys.readouterr().out)["latency_ms"] == 1.0
    assert main(["local", "faults", name, "--clear", "--endpoint-url", url]) == 0
    assert "cleared" in capsys.readouterr().out
    assert lambda_client.invoke(FunctionName=name)["StatusCode"] == 200
    assert main(["local", "faults", "nobody-here", "--error-rate", "0.5",
                 "--endpoint-url", url]) == 1  # fmt: skip
    assert "404" in capsys.readouterr().err
