"""Off loopback only with TLS and SigV4: a test CA made here, boto3 with verify=, and AWS's 403s."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest
from botocore.exceptions import ClientError

from lambdakit.local import LocalLambda
from lambdakit.local.auth import load_keys_file, parse_access_key
from tests.conftest import build_zip

KEY = ("AKIDLAMBDAKITTEST01", "test-secret-key-0123456789")
CALLER = """
import boto3

def handler(event, context):
    # Through AWS_ENDPOINT_URL_LAMBDA, with the credentials and CA bundle the service injects.
    names = [f["FunctionName"] for f in boto3.client("lambda").list_functions()["Functions"]]
    return {"names": names, "event": event}
"""

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def machine_address() -> str:
    """A non-loopback IPv4 address of this machine (0.0.0.0 when it has none)."""
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family.name == "AF_INET" and not address.address.startswith("127."):
                return address.address
    return "0.0.0.0"


def make_test_ca(folder: Path, address: str) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server.key): a throwaway CA and a server certificate it signed."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
            "-out", "ca.pem", "-days", "1", "-subj", "/CN=lambdakit test CA")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
            "-out", "server.csr", "-subj", "/CN=lambdakit local")  # fmt: skip
    names = f"subjectAltName=IP:127.0.0.1,DNS:localhost,IP:{address}"
    (folder / "ext.cnf").write_text(f"{names}\nbasicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "1",
            "-extfile", "ext.cnf")  # fmt: skip
    return folder / "ca.pem", folder / "server.pem", folder / "server.key"


@pytest.fixture(scope="module")
def tls_service(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("tls")
    address = machine_address()
    ca, cert, key = make_test_ca(folder, address)
    local = LocalLambda(
        state_dir=folder / "state", host=address, access_key=KEY, tls_cert=cert, tls_key=key,
        ca_bundle=ca,
    )  # fmt: skip
    with pytest.warns(UserWarning, match="not loopback"):
        local.start()
    try:
        yield local, ca, address
    finally:
        local.stop()


def plain(local: LocalLambda, ca: Path, method: str, path: str, body: bytes | None = None):
    """(status, headers, JSON) of an unsigned HTTPS request that trusts the test CA."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    request = urllib.request.Request(
        f"{local.endpoint_url}{path}", data=body, method=method, headers=headers
    )
    context = ssl.create_default_context(cafile=str(ca))
    try:
        with urllib.request.urlopen(request, timeout=60, context=context) as response:
            return response.status, response.headers, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, json.loads(exc.read() or b"null")


def test_off_loopback_serves_https_to_signed_requests_only(tls_service):
    local, ca, address = tls_service
    assert local.endpoint_url.startswith("https://")
    assert local.bound is not None and local.bound[0] == address
    assert local.endpoint_url.endswith(f":{local.bound[1]}")
    client = local.client()  # signs with KEY and verifies with the test CA
    client.create_function(
        FunctionName="caller", Runtime="python3.11", Handler="app.handler",
        Role="arn:aws:iam::123456789012:role/x", Code={"ZipFile": build_zip(CALLER)},
    )  # fmt: skip
    client.get_waiter("function_active_v2").wait(FunctionName="caller")
    reply = client.invoke(FunctionName="caller", Payload=b'{"n": 1}')
    assert json.loads(reply["Payload"].read()) == {"names": ["caller"], "event": {"n": 1}}

    # Unsigned: the API, the faults and the code download alike.
    location = client.get_function(FunctionName="caller")["Code"]["Location"]
    code_path = location.split(local.endpoint_url, 1)[1]
    for method, path, body in [
        ("GET", "/2015-03-31/functions/", None),
        ("POST", "/2015-03-31/functions/caller/invocations", b"{}"),
        ("PUT", "/_lambdakit/faults/caller", b'{"error_rate": 1}'),
        ("GET", code_path, None),
    ]:
        status, headers, reply_body = plain(local, ca, method, path, body)
        assert status == 403, path
        assert headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
        assert reply_body["message"], path
    assert local.faults("caller") == {}  # signed by LocalLambda itself

    # An access key nobody allowed, and a wrong secret for the allowed one.
    for key, code in [
        (("AKIDSOMEONEELSE00001", KEY[1]), "UnrecognizedClientException"),
        ((KEY[0], "not-the-secret"), "InvalidSignatureException"),
    ]:
        other = LocalLambda(host=address, access_key=key, ca_bundle=ca)
        other.endpoint_url = local.endpoint_url
        with pytest.raises(ClientError) as caught:
            other.client().list_functions()
        error = caught.value.response
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert error["Error"]["Code"] == code
        with pytest.raises(ClientError):
            other.client().invoke(FunctionName="caller", Payload=b"{}")
    # Plain HTTP to the TLS port gets nowhere either.
    with pytest.raises(OSError):
        urllib.request.urlopen(
            local.endpoint_url.replace("https://", "http://") + "/2015-03-31/functions/",
            timeout=10,
        )


def test_loopback_with_a_key_checks_signatures_too(tmp_path):
    with LocalLambda(state_dir=tmp_path / "state", access_key=KEY) as local:
        assert local.client().list_functions()["Functions"] == []
        request = urllib.request.Request(f"{local.endpoint_url}/2015-03-31/functions/")
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=30)
        assert caught.value.code == 403
        assert caught.value.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"


def serve(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "lambdakit", "local", "--port", "0",
               "--state-dir", str(tmp_path / "state"), *args]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--host", "0.0.0.0"), "without TLS"),
        (("--host", "0.0.0.0", "--insecure-http"), "without authentication"),
        (("--host", "0.0.0.0", "--tls-cert", "x.pem"), "go together"),
        (("--access-key", "no-colon"), "ACCESS_KEY_ID:SECRET"),
    ],
)
def test_off_loopback_refuses_to_start_without_tls_and_keys(tmp_path, args, words):
    done = serve(*args, tmp_path=tmp_path)
    assert done.returncode == 2
    assert words in done.stderr
    assert "listening" not in done.stdout


def test_keys_files_and_key_arguments(tmp_path):
    assert parse_access_key("AKID1:s:e:c") == ("AKID1", "s:e:c")
    # A key written with another separator is not quoted: its first 24 characters used to
    # be, the secret's start among them.
    for bad in ("AKID1=KEY-SECRET-4", "AKID1:"):
        with pytest.raises(ValueError, match="ACCESS_KEY_ID:SECRET_ACCESS_KEY") as caught:
            parse_access_key(bad)
        assert "SECRET-4" not in str(caught.value) and "AKID1=" not in str(caught.value)
    lines = tmp_path / "keys.txt"
    lines.write_text("# team keys\nAKID1:one\n\nAKID2:two  # ci\n")
    assert load_keys_file(lines) == {"AKID1": "one", "AKID2": "two"}
    as_json = tmp_path / "keys.json"
    as_json.write_text(json.dumps({"AKID3": "three"}))
    assert load_keys_file(as_json) == {"AKID3": "three"}
    bad = tmp_path / "bad.txt"
    bad.write_text("AKID1 one\n")
    with pytest.raises(ValueError, match="line 1"):
        load_keys_file(bad)


def signed_post(url: str, key: tuple[str, str], body: bytes) -> int:
    """The status of a SigV4-signed (service lambda) POST to a function URL."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method="POST", url=url, data=body,
                         headers={"Content-Type": "application/json"})  # fmt: skip
    SigV4Auth(Credentials(*key), "lambda", "us-east-1").add_auth(request)
    prepared = urllib.request.Request(url, data=body, method="POST",
                                      headers=dict(request.headers.items()))  # fmt: skip
    try:
        with urllib.request.urlopen(prepared, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_aws_iam_function_urls_take_only_the_configured_keys(tmp_path):
    with LocalLambda(state_dir=tmp_path / "state", access_key=KEY) as local:
        client = local.client()
        client.create_function(
            FunctionName="iam-url", Runtime="python3.11", Handler="app.handler",
            Role="arn:aws:iam::123456789012:role/x",
            Code={"ZipFile": build_zip("def handler(event, context):\n    return 1\n")},
        )  # fmt: skip
        client.get_waiter("function_active_v2").wait(FunctionName="iam-url")
        url = client.create_function_url_config(FunctionName="iam-url", AuthType="AWS_IAM")[
            "FunctionUrl"
        ]
        assert signed_post(url, KEY, b"{}") == 200
        assert signed_post(url, ("lambdakit", "lambdakit"), b"{}") == 403
