"""Shared fixtures: one `lambdakit local` per test session, and factories for functions in it.

    def test_something(lambda_client, make_function):
        name = make_function("def handler(event, context):\\n    return event\\n")
        response = lambda_client.invoke(FunctionName=name, Payload=b'{"a": 1}')

Fixtures:
- `local_lambda` (session): a running LocalLambda on a temporary state dir; Event retries
  are fast (0.2 s, 0.4 s) so async tests finish quickly.
- `lambda_client` (session): boto3 Lambda client for it, dummy credentials, us-east-1,
  botocore retries off, read_timeout 120 s, 32 pooled connections.
- `scheduler_client` (session): boto3 EventBridge Scheduler client for it, likewise.
- `make_function(source, handler="app.handler", runtime="python3.11", **config) -> name`:
  zips inline source (a str is `app.py`, or `bootstrap` for provided.* runtimes; a dict maps
  archive paths to str/bytes contents, `bootstrap` is made executable; a Path is a folder
  zipped whole with its permission bits, e.g. a handler plus bundled Powertools), creates a
  uniquely named function, waits until it is Active, deletes it after the test. `**config` goes to
  CreateFunction as is (Timeout=, MemorySize=, Environment={"Variables": {...}}, Publish=...);
  `name_prefix=` changes the start of the generated name.
- `zip_code(source, runtime="python3.11") -> bytes`: the same zip, for UpdateFunctionCode.
- `wait_updated(name)`: polls GetFunction until LastUpdateStatus is Successful.
- `invoke_json(name, payload=None, **invoke_kwargs) -> (response, decoded payload)`.
- `s3_server` (session): the endpoint URL of moto's S3 in server mode (ThreadedMotoServer on
  a free loopback port, in a child process so that moto's botocore hooks stay out of this
  one): a real S3 API over HTTP, for boto3 and lambdakit alike.
- `s3_client` (session): a boto3 S3 client for it (dummy credentials, us-east-1).
- `s3_bucket`: a fresh, empty bucket name per test.
- `aws_cli(*args) -> CompletedProcess`: runs `aws --endpoint-url ... lambda ...` style commands
  (pass everything after `aws`) with dummy credentials; `--endpoint-url` is added for you.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest

from lambdakit.local import LocalLambda

Source = str | dict[str, str | bytes] | Path
_DEADLINE_S = 60.0


def build_zip(source: Source, runtime: str = "python3.11") -> bytes:
    """A deployment package from inline source (see the module docstring)."""
    if isinstance(source, str):
        source = {"bootstrap" if runtime.startswith("provided") else "app.py": source}
    if isinstance(source, Path):
        return _zip_folder(source)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, content in sorted(source.items()):
            info = zipfile.ZipInfo(path, date_time=(2024, 1, 1, 0, 0, 0))
            executable = path == "bootstrap" or path.endswith(".sh")
            info.external_attr = (0o755 if executable else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            data = content.encode() if isinstance(content, str) else content
            archive.writestr(info, data)
    return buffer.getvalue()


def _zip_folder(folder: Path) -> bytes:
    """Every file under folder, with its permission bits (bundled libraries, bootstrap...)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), (2024, 1, 1, 0, 0, 0))
                info.external_attr = (path.stat().st_mode & 0o777) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def _poll_function(client: Any, name: str, done: Callable[[dict[str, Any]], bool]) -> dict:
    deadline = time.monotonic() + _DEADLINE_S
    while True:
        config = client.get_function(FunctionName=name)["Configuration"]
        if config.get("State") == "Failed" or config.get("LastUpdateStatus") == "Failed":
            raise AssertionError(f"{name} failed: {config}")
        if done(config):
            return config
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} not ready after {_DEADLINE_S} s: {config}")
        time.sleep(0.02)


@pytest.fixture(scope="session")
def local_lambda(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalLambda]:
    """The session's local Lambda service (temporary state dir)."""
    state_dir = tmp_path_factory.mktemp("lambdakit-local-state")
    with LocalLambda(state_dir=state_dir, event_retry_delays=(0.2, 0.4)) as local:
        yield local


# moto's server in a child process: importing moto registers its botocore stubber on every
# client of the importing process, which would change how the other tests' clients behave.
_MOTO_SERVER = """
import logging, sys
from moto.server import ThreadedMotoServer
logging.getLogger("werkzeug").setLevel(logging.WARNING)
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print("%s:%s" % server.get_host_and_port(), flush=True)
sys.stdin.read()  # until the test session closes the pipe (or dies)
server.stop()
"""


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's S3 (ThreadedMotoServer on a free loopback port, its own process); its URL."""
    child = subprocess.Popen(
        [sys.executable, "-c", _MOTO_SERVER],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        address = child.stdout.readline().strip() if child.stdout else ""
        if not address:
            raise RuntimeError(f"moto's server did not start (exit {child.poll()})")
        yield f"http://{address}"
    finally:
        if child.stdin:
            child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


@pytest.fixture(scope="session")
def s3_client(s3_server: str) -> Any:
    """boto3 S3 client bound to the session's moto server."""
    import boto3

    return boto3.client(
        "s3", endpoint_url=s3_server, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip


@pytest.fixture
def s3_bucket(s3_client: Any) -> str:
    """A new, empty bucket for this test."""
    name = f"lk-{uuid.uuid4().hex[:16]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def lambda_client(local_lambda: LocalLambda) -> Any:
    """boto3 Lambda client bound to the session's service; botocore retries off."""
    return local_lambda.client(read_timeout=120, max_pool_connections=32)


@pytest.fixture(scope="session")
def scheduler_client(local_lambda: LocalLambda) -> Any:
    """boto3 EventBridge Scheduler client bound to the session's service."""
    return local_lambda.scheduler_client()


@pytest.fixture
def zip_code() -> Callable[..., bytes]:
    """build_zip as a fixture: zip_code(source, runtime="python3.11") -> bytes."""
    return build_zip


@pytest.fixture
def wait_updated(lambda_client: Any) -> Callable[[str], dict[str, Any]]:
    """wait_updated(name): poll until the last update of $LATEST is Successful."""

    def wait(name: str) -> dict[str, Any]:
        return _poll_function(
            lambda_client, name, lambda c: c.get("LastUpdateStatus") == "Successful"
        )

    return wait


@pytest.fixture
def make_function(
    request: pytest.FixtureRequest, lambda_client: Any
) -> Iterator[Callable[..., str]]:
    """Factory creating uniquely named, Active functions; they are deleted after the test."""
    created: list[str] = []
    test_name = re.sub(r"[^a-zA-Z0-9]+", "-", request.node.name).strip("-")[:30]

    def make(
        source: Source,
        handler: str = "app.handler",
        runtime: str = "python3.11",
        *,
        name_prefix: str | None = None,
        **config: Any,
    ) -> str:
        name = f"{name_prefix or test_name}-{uuid.uuid4().hex[:8]}"
        lambda_client.create_function(
            FunctionName=name,
            Runtime=runtime,
            Role="arn:aws:iam::123456789012:role/lambdakit-test",
            Handler=handler,
            Code={"ZipFile": build_zip(source, runtime)},
            **config,
        )
        created.append(name)
        _poll_function(lambda_client, name, lambda c: c.get("State") == "Active")
        return name

    yield make
    for name in created:
        # The test may have deleted it itself.
        with contextlib.suppress(lambda_client.exceptions.ResourceNotFoundException):
            lambda_client.delete_function(FunctionName=name)


@pytest.fixture
def invoke_json(lambda_client: Any) -> Callable[..., tuple[dict[str, Any], Any]]:
    """invoke_json(name, payload=None, **kw) -> (response, JSON-decoded payload)."""

    def call(name: str, payload: Any = None, **kwargs: Any) -> tuple[dict[str, Any], Any]:
        body = json.dumps(payload if payload is not None else {}).encode()
        response = lambda_client.invoke(FunctionName=name, Payload=body, **kwargs)
        raw = response["Payload"].read()
        return response, json.loads(raw) if raw else None

    return call


@pytest.fixture
def aws_cli(
    local_lambda: LocalLambda, tmp_path: Path
) -> Callable[..., subprocess.CompletedProcess]:
    """aws_cli("lambda", "list-functions", ...): the AWS CLI against the local service."""
    aws = Path(sys.executable).parent / "aws"
    env = dict(
        os.environ,
        AWS_ACCESS_KEY_ID="lambdakit",
        AWS_SECRET_ACCESS_KEY="lambdakit",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=str(tmp_path / "no-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
        AWS_RETRY_MODE="standard",
        AWS_MAX_ATTEMPTS="1",
        AWS_PAGER="",
    )
    env.pop("AWS_PROFILE", None)

    def run(*args: str, check: bool = False) -> CompletedProcess:
        command = [str(aws), "--endpoint-url", str(local_lambda.endpoint_url), *args]
        return subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=120, check=check
        )

    return run
