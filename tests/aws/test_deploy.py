"""Packaging, validation before upload, and deploy/publish/alias against `lambdakit local`."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import uuid
import zipfile
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from lambdakit.aws.deploy import deploy, package, publish_version, set_alias, validate_handler
from lambdakit.aws.discovery import list_aliases, list_functions
from lambdakit.errors import DeployError

HANDLER = "def handler(event, context):\n    return event\n"


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def names(zip_bytes: bytes) -> list[str]:
    return zipfile.ZipFile(io.BytesIO(zip_bytes)).namelist()


def test_package_skips_junk_and_sorts_entries(tmp_path):
    write(
        tmp_path,
        {
            "app.py": HANDLER,
            "lib/__init__.py": "",
            "lib/helpers.py": "X = 1\n",
            "lib/__pycache__/helpers.cpython-311.pyc": "junk",
            "lib/stale.pyc": "junk",
            ".git/HEAD": "ref",
            ".ipynb_checkpoints/app-checkpoint.py": "old",
            ".DS_Store": "mac",
            "tests/test_app.py": "def test(): pass\n",
            "build/out.txt": "x",
            "pkg.egg-info/PKG-INFO": "x",
            "vendored/tests/__init__.py": "",
            "data/rates.json": "{}",
        },
    )
    assert names(package(tmp_path)) == [
        "app.py",
        "data/rates.json",
        "lib/__init__.py",
        "lib/helpers.py",
        "vendored/tests/__init__.py",  # only the top-level tests/ is a test folder
    ]


def test_package_is_byte_for_byte_reproducible(tmp_path):
    write(tmp_path, {"app.py": HANDLER, "b.txt": "b", "a.txt": "a"})
    first = package(tmp_path)
    os.utime(tmp_path / "app.py", (1, 1))  # a touched file must not change the zip
    assert package(tmp_path) == first
    (tmp_path / "a.txt").write_text("changed")
    assert package(tmp_path) != first


def test_package_keeps_the_executable_bit(tmp_path):
    write(tmp_path, {"bootstrap": "#!/bin/sh\n", "data.txt": "x"})
    (tmp_path / "bootstrap").chmod(0o755)
    (tmp_path / "data.txt").chmod(0o644)
    infos = {i.filename: i for i in zipfile.ZipFile(io.BytesIO(package(tmp_path))).infolist()}
    assert (infos["bootstrap"].external_attr >> 16) & 0o777 == 0o755
    assert (infos["data.txt"].external_attr >> 16) & 0o777 == 0o644
    assert infos["bootstrap"].date_time == (1980, 1, 1, 0, 0, 0)


def test_package_refuses_missing_and_empty_folders(tmp_path):
    with pytest.raises(DeployError, match="does not exist"):
        package(tmp_path / "nope")
    write(tmp_path, {"__pycache__/x.pyc": "junk"})
    with pytest.raises(DeployError, match="no files"):
        package(tmp_path)


@pytest.mark.parametrize(
    ("files", "handler", "message"),
    [
        ({"main.py": HANDLER}, "app.handler", "needs app.py"),
        (
            {"app.py": "def other(event, context): ...\n"},
            "app.handler",
            "no top-level function 'handler'",
        ),
        ({"app.py": "def handler(:\n"}, "app.handler", "does not compile"),
        ({"app.py": HANDLER}, "handler", "module.function"),
    ],
)
def test_python_handler_problems_are_named(tmp_path, files, handler, message):
    write(tmp_path, files)
    with pytest.raises(DeployError, match=message):
        validate_handler(tmp_path, handler, "python3.11")


def test_python_handler_forms_that_are_accepted(tmp_path):
    write(
        tmp_path,
        {
            "app.py": HANDLER,
            "alias.py": "from app import handler as main\n",
            "made.py": "def make():\n    return print\nhandler = make()\n",
            "pkg/__init__.py": "",
            "pkg/entry.py": "async def run(event, context): ...\n",
        },
    )
    for handler in ("app.handler", "alias.main", "made.handler", "pkg.entry.run"):
        validate_handler(tmp_path, handler, "python3.12")


def test_unknown_runtime_is_refused(tmp_path):
    write(tmp_path, {"app.py": HANDLER})
    with pytest.raises(DeployError, match=r"unknown runtime 'python2\.7'"):
        validate_handler(tmp_path, "app.handler", "python2.7")


def test_custom_runtime_needs_an_executable_bootstrap(tmp_path):
    with pytest.raises(DeployError, match="needs an executable 'bootstrap'"):
        validate_handler(tmp_path, "function.handler", "provided.al2023")
    write(tmp_path, {"bootstrap": "#!/bin/sh\n"})
    (tmp_path / "bootstrap").chmod(0o644)
    with pytest.raises(DeployError, match="chmod"):
        validate_handler(tmp_path, "function.handler", "provided.al2023")
    (tmp_path / "bootstrap").chmod(0o755)
    validate_handler(tmp_path, "function.handler", "provided.al2023")


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"2": 0.1, "3": 0.1}, "at most one additional version"),
        ({"1": 0.5}, "alias's own version"),
        ({"2": 1.0}, r"\[0, 1\)"),
    ],
)
def test_alias_weights_are_checked_before_any_call(weights, message):
    with pytest.raises(DeployError, match=message):
        set_alias(client=None, name="fn", alias="live", version="1", weights=weights)


def test_the_exported_deploy_is_the_function_even_after_the_module_is_imported():
    import importlib

    import lambdakit

    importlib.import_module("lambdakit.aws.deploy")
    assert callable(lambdakit.deploy)
    assert lambdakit.deploy.__name__ == "deploy"


# -- against `lambdakit local` ----------------------------------------------------------------

ENV_HANDLER = (
    "import os\n"
    "def handler(event, context):\n"
    "    return {'mode': os.environ.get('MODE'), 'version': context.function_version}\n"
)


@pytest.fixture
def fresh_name(request, lambda_client):
    """A unique function name, deleted after the test."""
    names = []

    def make(prefix: str = "deploy") -> str:
        names.append(f"{prefix}-{uuid.uuid4().hex[:10]}")
        return names[-1]

    yield make
    for name in names:
        with contextlib.suppress(lambda_client.exceptions.ResourceNotFoundException):
            lambda_client.delete_function(FunctionName=name)


def call(client, name, qualifier=None):
    kwargs = {"Qualifier": qualifier} if qualifier else {}
    response = client.invoke(FunctionName=name, Payload=b"{}", **kwargs)
    assert "FunctionError" not in response, response["Payload"].read()
    return json.loads(response["Payload"].read())


def test_deploy_creates_then_updates_only_what_changed(lambda_client, fresh_name, tmp_path):
    name = fresh_name()
    folder = write(tmp_path / "fn", {"app.py": ENV_HANDLER})
    created = deploy(lambda_client, name, folder, environment={"MODE": "a"}, timeout_s=5)
    assert (created.action, created.version, created.alias) == ("created", "$LATEST", None)
    config = lambda_client.get_function_configuration(FunctionName=name)
    assert (config["State"], config["Timeout"], config["Handler"]) == ("Active", 5, "app.handler")
    assert created.function_arn == config["FunctionArn"]
    assert created.code_sha256 == config["CodeSha256"]
    assert created.qualified_arn == f"{config['FunctionArn']}:$LATEST"
    with pytest.raises(FrozenInstanceError):
        created.version = "2"  # type: ignore[misc]
    # The old dict form, for notebooks saved with it, reads the same fields.
    assert (created["function_name"], created["version"]) == (name, "$LATEST")
    with pytest.raises(KeyError, match="get_function_configuration"):
        created["configuration"]
    assert call(lambda_client, name)["mode"] == "a"

    again = deploy(lambda_client, name, folder, environment={"MODE": "a"}, timeout_s=5)
    assert again.action == "unchanged"
    assert again.code_sha256 == created.code_sha256

    switched = deploy(lambda_client, name, folder, environment={"MODE": "b"}, timeout_s=5)
    assert switched.action == "updated configuration"
    assert call(lambda_client, name)["mode"] == "b"

    (folder / "app.py").write_text(ENV_HANDLER + "# edited\n")
    edited = deploy(lambda_client, name, folder, environment={"MODE": "b"}, timeout_s=5)
    assert edited.action == "updated code"
    assert edited.code_sha256 != created.code_sha256
    assert lambda_client.get_function_configuration(FunctionName=name)["LastUpdateStatus"] == (
        "Successful"
    )


def test_deploy_publishes_and_moves_an_alias(lambda_client, fresh_name, tmp_path):
    name = fresh_name()
    folder = write(tmp_path / "fn", {"app.py": ENV_HANDLER})
    first = deploy(lambda_client, name, folder, environment={"MODE": "v1"}, alias="live")
    assert (first.version, first.alias) == ("1", "live")
    assert first.qualified_arn == f"{first.function_arn}:live"
    published = lambda_client.get_function_configuration(FunctionName=name, Qualifier="1")
    assert first.code_sha256 == published["CodeSha256"]
    assert call(lambda_client, name, "live") == {"mode": "v1", "version": "1"}

    second = deploy(lambda_client, name, folder, environment={"MODE": "v2"}, alias="live")
    assert second.version == "2"
    assert call(lambda_client, name, "live") == {"mode": "v2", "version": "2"}
    assert call(lambda_client, name, "1")["mode"] == "v1"  # versions are immutable

    alias = set_alias(lambda_client, name, "live", 1, weights={2: 0.2})
    assert alias["FunctionVersion"] == "1"
    assert alias["RoutingConfig"]["AdditionalVersionWeights"] == {"2": 0.2}
    assert [a.weights for a in list_aliases(lambda_client, name)] == [{"1": 0.8, "2": 0.2}]
    cleared = set_alias(lambda_client, name, "live", "2")
    assert cleared["FunctionVersion"] == "2"
    assert not cleared.get("RoutingConfig", {}).get("AdditionalVersionWeights")

    assert publish_version(lambda_client, name, description="same code") in ("2", "3")


def test_validation_fails_before_anything_is_uploaded(lambda_client, fresh_name, tmp_path):
    name = fresh_name()
    folder = write(tmp_path / "fn", {"main.py": ENV_HANDLER})
    with pytest.raises(DeployError, match=r"needs app\.py"):
        deploy(lambda_client, name, folder)
    with pytest.raises(DeployError, match="unknown runtime"):
        deploy(lambda_client, name, folder, handler="main.handler", runtime="cobol")
    with pytest.raises(DeployError, match="memory_mb"):
        deploy(lambda_client, name, folder, handler="main.handler", memory_mb=64)
    with pytest.raises(DeployError, match="timeout_s must be an integer"):
        deploy(lambda_client, name, folder, handler="main.handler", timeout_s="30")
    with pytest.raises(DeployError, match="function name"):
        deploy(lambda_client, "bad name!", folder, handler="main.handler")
    with pytest.raises(DeployError, match="environment variable 'X'"):
        deploy(lambda_client, name, folder, handler="main.handler", environment={"X": [1]})
    assert name not in [f.name for f in list_functions(lambda_client)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"environment": ["X=1"]}, "environment must be a mapping"),
        ({"alias": "12"}, "alias name '12'"),
        ({"alias": "bad alias!"}, "alias name 'bad alias!'"),
        ({"client": None}, "client must be a boto3 Lambda client"),
    ],
)
def test_more_bad_arguments_are_refused_before_any_call(
    lambda_client, fresh_name, tmp_path, kwargs, message
):
    # These used to surface as a raw AttributeError, or (a bad alias name) only after a
    # version had been published.
    name = fresh_name()
    folder = write(tmp_path / "fn", {"app.py": ENV_HANDLER})
    arguments = {"client": lambda_client, "name": name, "folder": folder, **kwargs}
    with pytest.raises(DeployError, match=re.escape(message)):
        deploy(**arguments)
    assert name not in [f.name for f in list_functions(lambda_client)]


def test_service_refusals_name_the_step(lambda_client, fresh_name, tmp_path):
    name = fresh_name()
    deploy(lambda_client, name, write(tmp_path / "fn", {"app.py": ENV_HANDLER}))
    with pytest.raises(DeployError, match="setting alias 'live' failed"):
        set_alias(lambda_client, name, "live", "99")


def test_custom_runtime_deploys_and_runs(lambda_client, fresh_name, tmp_path):
    if shutil.which("curl") is None:
        pytest.skip("curl is needed by the bash bootstrap")
    bootstrap = (
        "#!/bin/bash\n"
        "set -euo pipefail\n"
        'API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation"\n'
        "while true; do\n"
        '  HEADERS="$(mktemp)"\n'
        '  EVENT=$(curl -sS -D "$HEADERS" "$API/next")\n'
        '  ID=$(grep -i Request-Id "$HEADERS" | tr -d "[:space:]" | cut -d: -f2)\n'
        '  curl -sS -X POST "$API/$ID/response" -d "{\\"got\\": $EVENT}" > /dev/null\n'
        "done\n"
    )
    folder = write(tmp_path / "fn", {"bootstrap": bootstrap})
    (folder / "bootstrap").chmod(0o755)
    name = fresh_name()
    result = deploy(
        lambda_client, name, folder, handler="function.handler", runtime="provided.al2023"
    )
    assert result.action == "created"
    assert call(lambda_client, name) == {"got": {}}


def test_package_warns_about_what_it_cannot_follow(tmp_path, caplog):
    folder = write(tmp_path / "fn", {"app.py": HANDLER})
    write(tmp_path / "elsewhere", {"lib.py": "X = 1\n"})
    (folder / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (folder / "dangling.py").symlink_to(tmp_path / "missing.py")
    assert names(package(folder)) == ["app.py"]
    assert "symlinked folders are skipped" in caplog.text
    assert "dangling.py" in caplog.text
