"""`lambdakit deploy NAME FOLDER` against lambdakit local."""

from __future__ import annotations

import contextlib
import json
import uuid
from pathlib import Path

import pytest

from lambdakit.cli.demo import ENDPOINT_ENV
from lambdakit.cli.main import main

HANDLER = (
    "import os\n"
    "def handler(event, context):\n"
    "    return {'mode': os.environ.get('MODE'), 'extra': os.environ.get('EXTRA'),\n"
    "            'version': context.function_version}\n"
)


@pytest.fixture
def folder(tmp_path) -> Path:
    folder = tmp_path / "fn"
    folder.mkdir()
    (folder / "app.py").write_text(HANDLER)
    return folder


@pytest.fixture
def name(lambda_client) -> str:
    name = f"cli-deploy-{uuid.uuid4().hex[:8]}"
    yield name
    with contextlib.suppress(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.delete_function(FunctionName=name)


def call(client, name: str, qualifier: str | None = None) -> dict:
    extra = {"Qualifier": qualifier} if qualifier else {}
    response = client.invoke(FunctionName=name, Payload=b"{}", **extra)
    assert "FunctionError" not in response
    return json.loads(response["Payload"].read())


def test_deploy_creates_publishes_and_moves_an_alias(
    local_lambda, lambda_client, folder, name, capsys
):
    endpoint = ["--endpoint-url", local_lambda.endpoint_url]
    code = main(["deploy", name, str(folder), "--env", "MODE=a=b", "--env", "EXTRA=",
                 "--memory", "256", "--timeout", "7", *endpoint])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    config = lambda_client.get_function_configuration(FunctionName=name)
    assert out.splitlines()[0] == f"created: {config['FunctionArn']}:$LATEST"
    assert f"code_sha256    {config['CodeSha256']}" in out
    assert (config["MemorySize"], config["Timeout"]) == (256, 7)
    assert call(lambda_client, name) == {"mode": "a=b", "extra": "", "version": "$LATEST"}

    code = main(["deploy", name, str(folder), "--env", "MODE=live", "--alias", "live",
                 "--json", *endpoint])  # fmt: skip
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    published = lambda_client.get_function_configuration(FunctionName=name, Qualifier="1")
    assert result == {
        "function_name": name,
        "function_arn": config["FunctionArn"],
        "version": "1",
        "code_sha256": published["CodeSha256"],
        "alias": "live",
        "action": "updated configuration",
        "function_url": None,
        "layers": [],
        "qualified_arn": f"{config['FunctionArn']}:live",
    }
    assert call(lambda_client, name, "live") == {"mode": "live", "extra": None, "version": "1"}

    # Nothing changed: nothing is sent, and publishing again gives the same version back,
    # as Lambda's PublishVersion does when $LATEST is what was last published.
    assert main(["deploy", name, str(folder), "--env", "MODE=live", "--publish", "--json",
                 *endpoint]) == 0  # fmt: skip
    again = json.loads(capsys.readouterr().out)
    assert (again["action"], again["version"], again["alias"]) == ("unchanged", "1", None)


def test_deploy_uses_lambdakit_endpoint_url(
    local_lambda, lambda_client, folder, name, monkeypatch, capsys
):
    monkeypatch.setenv(ENDPOINT_ENV, local_lambda.endpoint_url)
    assert main(["deploy", name, str(folder)]) == 0
    assert f"using {ENDPOINT_ENV}" in capsys.readouterr().err
    assert call(lambda_client, name)["version"] == "$LATEST"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env", "MODE=a", "--env", "MODE=b"], "--env MODE given twice"),
        (["--alias", "123"], "not only digits"),
        (["--runtime", "cobol"], "unknown runtime 'cobol'"),
        (["--handler", "missing.handler"], "needs missing.py"),
    ],
)
def test_deploy_errors_are_one_line_and_send_nothing(
    args, message, local_lambda, lambda_client, folder, name, capsys
):
    code = main(["deploy", name, str(folder), *args, "--endpoint-url", local_lambda.endpoint_url])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("lambdakit deploy: ")
    assert message in err
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.get_function(FunctionName=name)


@pytest.mark.parametrize(
    ("arg", "words"),
    [
        ("NOVALUE", "got 7 characters without '='"),
        # A mistyped separator, or a value without its name: the text (a secret, maybe) used
        # to be quoted in the error.
        ("TOKEN:env-secret-1", "got 18 characters without '='"),
        ("=env-secret-1", "no NAME before '='"),
    ],
)
def test_deploy_refuses_a_malformed_env_in_the_parser_without_quoting_it(
    folder, capsys, arg, words
):
    with pytest.raises(SystemExit) as exited:
        main(["deploy", "fn", str(folder), "--env", arg])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "expected NAME=VALUE" in err and words in err
    assert "secret" not in err.replace("may hold a secret", "") and "NOVALUE" not in err
