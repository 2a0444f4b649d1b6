"""Layers in the local service, through real boto3: the layer API, Layers on functions, /opt."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lambdakit.local import codezip
from lambdakit.local.checks import ApiError
from lambdakit.local.state import Store
from tests.conftest import build_zip
from tests.local.test_local_api import error_of

ROLE = "arn:aws:iam::123456789012:role/lambdakit-test"
LAYER_ARN = "arn:aws:lambda:us-east-1:123456789012:layer:"

# Reports where each module came from, the path order and what the layers' bin/ gives.
REPORTER = """
import os, shutil, subprocess, sys

def handler(event, context):
    found = {}
    for name in event.get("modules", []):
        module = __import__(name)
        found[name] = [module.WHO, os.path.realpath(module.__file__)]
    tool = shutil.which("layer-tool.sh")
    return {
        "modules": found,
        "opt": os.environ.get("LAMBDAKIT_OPT_DIR"),
        "path": sys.path,
        "tool": subprocess.run([tool], capture_output=True, text=True).stdout if tool else None,
    }
"""


def layer_name() -> str:
    return f"layer-{uuid.uuid4().hex[:8]}"


def publish(client: Any, name: str, files: dict[str, str | bytes], **extra: Any) -> dict:
    return client.publish_layer_version(
        LayerName=name, Content={"ZipFile": build_zip(files)}, **extra
    )


@pytest.fixture
def layers(lambda_client: Any):
    """publish(files, **extra) -> PublishLayerVersion's reply; every version deleted after."""
    published: list[dict] = []

    def make(files: dict[str, str | bytes], name: str | None = None, **extra: Any) -> dict:
        reply = publish(lambda_client, name or layer_name(), files, **extra)
        published.append(reply)
        return reply

    yield make
    for reply in published:
        lambda_client.delete_layer_version(
            LayerName=reply["LayerArn"], VersionNumber=reply["Version"]
        )


def slip_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("python/ok.py", "WHO = 'ok'\n")
        archive.writestr("../../escaped.py", "WHO = 'escaped'\n")
    return buffer.getvalue()


def test_publish_get_list_and_delete_have_botocore_shapes(lambda_client, layers):
    name = layer_name()
    first = layers({"python/m.py": "WHO = 1\n"}, name, Description="one",
                   CompatibleRuntimes=["python3.11", "python3.12"],
                   CompatibleArchitectures=["x86_64"], LicenseInfo="MIT")  # fmt: skip
    second = layers({"python/m.py": "WHO = 2\n"}, name)
    assert first["LayerArn"] == LAYER_ARN + name
    assert (first["LayerVersionArn"], first["Version"]) == (f"{LAYER_ARN}{name}:1", 1)
    assert (second["Version"], first["Description"], first["LicenseInfo"]) == (2, "one", "MIT")
    assert first["CompatibleRuntimes"] == ["python3.11", "python3.12"]
    assert first["CompatibleArchitectures"] == ["x86_64"]
    data = build_zip({"python/m.py": "WHO = 1\n"})
    assert first["Content"]["CodeSize"] == len(data)
    assert first["Content"]["CodeSha256"] == codezip.check_zip(data).sha256

    got = lambda_client.get_layer_version(LayerName=name, VersionNumber=1)
    assert got["LayerVersionArn"] == first["LayerVersionArn"]
    by_arn = lambda_client.get_layer_version_by_arn(Arn=second["LayerVersionArn"])
    assert by_arn["Version"] == 2 and by_arn["Content"] == second["Content"]
    # Content.Location downloads the very zip that was published.
    import urllib.request

    with urllib.request.urlopen(got["Content"]["Location"], timeout=30) as response:
        assert response.read() == data

    versions = lambda_client.list_layer_versions(LayerName=name)["LayerVersions"]
    assert [v["Version"] for v in versions] == [2, 1]  # newest first
    matching = lambda_client.list_layer_versions(LayerName=name, CompatibleRuntime="python3.12")
    assert [v["Version"] for v in matching["LayerVersions"]] == [1]
    listed = {item["LayerName"]: item for item in lambda_client.list_layers()["Layers"]}
    assert listed[name]["LatestMatchingVersion"]["Version"] == 2
    arm = lambda_client.list_layers(CompatibleArchitecture="arm64")["Layers"]
    assert name not in {item["LayerName"] for item in arm}
    by_runtime = lambda_client.list_layers(CompatibleRuntime="python3.11")["Layers"]
    latest = {i["LayerName"]: i["LatestMatchingVersion"]["Version"] for i in by_runtime}
    assert latest[name] == 1

    lambda_client.delete_layer_version(LayerName=name, VersionNumber=2)
    lambda_client.delete_layer_version(LayerName=name, VersionNumber=2)  # idempotent
    with pytest.raises(ClientError) as exc_info:
        lambda_client.get_layer_version(LayerName=name, VersionNumber=2)
    code, status, _ = error_of(exc_info)
    assert (code, status) == ("ResourceNotFoundException", 404)
    # Numbers are never reused, even once every version is gone.
    lambda_client.delete_layer_version(LayerName=name, VersionNumber=1)
    assert lambda_client.list_layer_versions(LayerName=name)["LayerVersions"] == []
    assert layers({"python/m.py": "WHO = 3\n"}, name)["Version"] == 3


def test_a_zip_slip_layer_is_refused_and_nothing_is_published(lambda_client):
    name = layer_name()
    with pytest.raises(ClientError) as exc_info:
        lambda_client.publish_layer_version(LayerName=name, Content={"ZipFile": slip_zip()})
    code, status, message = error_of(exc_info)
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert "../../escaped.py" in message
    assert lambda_client.list_layer_versions(LayerName=name)["LayerVersions"] == []


def _zip_of(entries: list[tuple[str, bytes, int]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            archive.writestr(info, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("entries", "words"),
    [
        ([("/etc/evil.py", b"x", 0o100644)], "absolute path"),
        ([("python/link", b"../../../etc/passwd", 0o120777)], "points outside"),
        ([("python/dir", b"/tmp", 0o120777), ("python/dir/x.py", b"", 0o100644)], "through"),
        ([], "holds no files"),
    ],
)
def test_layer_zips_get_the_checks_function_code_gets(lambda_client, entries, words):
    name = layer_name()
    with pytest.raises(ClientError) as exc_info:
        lambda_client.publish_layer_version(LayerName=name, Content={"ZipFile": _zip_of(entries)})
    code, status, message = error_of(exc_info)
    assert (code, status) == ("InvalidParameterValueException", 400) and words in message
    assert lambda_client.list_layer_versions(LayerName=name)["LayerVersions"] == []


def test_the_aws_cli_publishes_and_attaches_a_layer(aws_cli, tmp_path, lambda_client):
    name = layer_name()
    archive = tmp_path / "layer.zip"
    archive.write_bytes(build_zip({"python/cli_dep.py": "WHO = 'cli'\n"}))
    zipped = f"fileb://{archive}"
    published = aws_cli("lambda", "publish-layer-version", "--layer-name", name, "--zip-file",
                        zipped, "--compatible-runtimes", "python3.11")  # fmt: skip
    assert published.returncode == 0, published.stderr
    arn = json.loads(published.stdout)["LayerVersionArn"]
    listed = aws_cli("lambda", "list-layer-versions", "--layer-name", name)
    assert [v["LayerVersionArn"] for v in json.loads(listed.stdout)["LayerVersions"]] == [arn]
    assert aws_cli("lambda", "delete-layer-version", "--layer-name", name,
                   "--version-number", "1").returncode == 0  # fmt: skip
    assert lambda_client.list_layer_versions(LayerName=name)["LayerVersions"] == []


def test_bad_publish_requests_name_the_problem(lambda_client):
    with pytest.raises(ClientError) as exc_info:
        lambda_client.publish_layer_version(LayerName=layer_name(), Content={})
    assert "Content.ZipFile is required" in error_of(exc_info)[2]
    with pytest.raises(ClientError) as exc_info:
        publish(lambda_client, layer_name(), {"a.py": ""}, CompatibleRuntimes=["cobol"])
    code, status, message = error_of(exc_info)
    # botocore's model has the Runtime enum: the front end's wording (validation.py) names it.
    assert (code, status) == ("ValidationException", 400)
    assert "Value '[cobol]' at 'compatibleRuntimes'" in message


def test_function_layers_are_checked_as_aws_does(lambda_client, make_function, layers, zip_code):
    arns = [layers({f"python/l{i}.py": f"WHO = {i}\n"})["LayerVersionArn"] for i in range(6)]
    zipped = {"ZipFile": zip_code("def handler(e, c):\n    return 1\n")}

    def create(layer_arns: list[str]) -> ClientError:
        with pytest.raises(ClientError) as exc_info:
            lambda_client.create_function(
                FunctionName=f"layers-{uuid.uuid4().hex[:8]}", Runtime="python3.11", Role=ROLE,
                Handler="app.handler", Code=zipped, Layers=layer_arns,
            )  # fmt: skip
        return exc_info

    code, status, message = error_of(create(arns))
    assert (code, status, message) == (
        "InvalidParameterValueException", 400, "Cannot reference more than 5 layers."
    )  # fmt: skip
    missing = f"{LAYER_ARN}no-such-layer-{uuid.uuid4().hex[:6]}:1"
    code, status, message = error_of(create([arns[0], missing]))
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert message == f"Layer version {missing} does not exist."
    code, _, message = error_of(create([arns[0].rsplit(":", 1)[0]]))  # no version
    assert code == "ValidationException" and "at 'layers'" in message
    code, _, message = error_of(create([arns[0], arns[0].rsplit(":", 1)[0] + ":99"]))
    assert code == "InvalidParameterValueException" and "does not exist" in message

    name = make_function("def handler(e, c):\n    return 1\n", Layers=arns[:5])
    config = lambda_client.get_function_configuration(FunctionName=name)
    assert [layer["Arn"] for layer in config["Layers"]] == arns[:5]
    assert all(layer["CodeSize"] > 0 for layer in config["Layers"])
    with pytest.raises(ClientError) as exc_info:
        lambda_client.update_function_configuration(FunctionName=name, Layers=arns)
    assert error_of(exc_info)[2] == "Cannot reference more than 5 layers."
    with pytest.raises(ClientError) as exc_info:
        lambda_client.update_function_configuration(FunctionName=name, Layers=[missing])
    assert error_of(exc_info)[2] == f"Layer version {missing} does not exist."
    # Refused updates changed nothing.
    config = lambda_client.get_function_configuration(FunctionName=name)
    assert [layer["Arn"] for layer in config["Layers"]] == arns[:5]


def test_layer_order_and_precedence_hold(lambda_client, make_function, layers, invoke_json):
    first = layers({
        "python/shared.py": "WHO = 'first layer'\n",
        "python/only_first.py": "WHO = 'first layer'\n",
        "python/common.py": "WHO = 'first layer'\n",
    })  # fmt: skip
    second = layers({
        "python/shared.py": "WHO = 'second layer'\n",
        "python/lib/python3.11/site-packages/sitepkg.py": "WHO = 'second layer site'\n",
        "python/sitepkg.py": "WHO = 'second layer python/'\n",
        "bin/layer-tool.sh": "#!/bin/sh\necho tool from the second layer\n",
    })  # fmt: skip
    name = make_function(
        {"app.py": REPORTER, "common.py": "WHO = 'function code'\n"},
        Layers=[first["LayerVersionArn"], second["LayerVersionArn"]],
    )
    modules = ["shared", "only_first", "common", "sitepkg"]
    _, out = invoke_json(name, {"modules": modules})
    who = {module: found[0] for module, found in out["modules"].items()}
    assert who == {
        "shared": "second layer",  # the later layer wins
        "only_first": "first layer",  # merged, not replaced
        "common": "function code",  # the function's own code beats every layer
        "sitepkg": "second layer site",  # site-packages comes before python/, as on AWS
    }
    opt = Path(out["opt"])
    assert out["modules"]["shared"][1] == str((opt / "python" / "shared.py").resolve())
    task_root = out["path"].index(str(Path(out["modules"]["common"][1]).parent))
    site = out["path"].index(str(opt / "python" / "lib" / "python3.11" / "site-packages"))
    assert task_root < site < out["path"].index(str(opt / "python"))
    assert out["tool"] == "tool from the second layer\n"  # bin/ is on PATH

    # Reordered: now the first layer's shared.py wins.
    lambda_client.update_function_configuration(
        FunctionName=name, Layers=[second["LayerVersionArn"], first["LayerVersionArn"]]
    )
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name)
    _, out = invoke_json(name, {"modules": ["shared"]})
    assert out["modules"]["shared"][0] == "first layer"


def test_a_function_can_take_its_handler_from_a_layer(lambda_client, make_function, layers,
                                                      invoke_json):  # fmt: skip
    layer = layers({"python/handlers.py": "def handler(event, context):\n    return 'layer'\n"})
    name = make_function({"README": "no code of its own"}, handler="handlers.handler",
                         Layers=[layer["LayerVersionArn"]])  # fmt: skip
    assert invoke_json(name)[1] == "layer"


def test_a_custom_runtime_can_come_from_a_layer(make_function, layers, invoke_json):
    from tests.local.test_local_environments import BASH_BOOTSTRAP

    runtime = layers({"bootstrap": BASH_BOOTSTRAP})  # /opt/bootstrap, as AWS runs it
    name = make_function(
        {"function.sh": "# the function's own files\n"},
        handler="function.run",
        runtime="provided.al2023",
        Layers=[runtime["LayerVersionArn"]],
    )
    assert invoke_json(name, {"n": 1})[1] == {"echo": {"n": 1}, "handler": "function.run"}


def test_a_published_version_pins_its_layer_versions(lambda_client, make_function, layers,
                                                     invoke_json, wait_updated):  # fmt: skip
    name_of_layer = layer_name()
    v1 = layers({"python/dep.py": "WHO = 'layer v1'\n"}, name_of_layer)
    v2 = layers({"python/dep.py": "WHO = 'layer v2'\n"}, name_of_layer)
    name = make_function(REPORTER, Layers=[v1["LayerVersionArn"]])
    published = lambda_client.publish_version(FunctionName=name)
    assert [layer["Arn"] for layer in published["Layers"]] == [v1["LayerVersionArn"]]
    lambda_client.update_function_configuration(FunctionName=name, Layers=[v2["LayerVersionArn"]])
    wait_updated(name)
    second = lambda_client.publish_version(FunctionName=name)  # the layers changed: a new one
    assert second["Version"] != published["Version"]
    # The layer version a published version uses survives its deletion.
    lambda_client.delete_layer_version(LayerName=name_of_layer, VersionNumber=1)
    lambda_client.update_function_configuration(FunctionName=name, Layers=[])
    wait_updated(name)
    assert "Layers" not in lambda_client.get_function_configuration(FunctionName=name)
    pinned = invoke_json(name, {"modules": ["dep"]}, Qualifier=published["Version"])[1]
    assert pinned["modules"]["dep"][0] == "layer v1"
    newer = invoke_json(name, {"modules": ["dep"]}, Qualifier=second["Version"])[1]
    assert newer["modules"]["dep"][0] == "layer v2"
    latest = invoke_json(name, {"modules": []})[1]
    assert latest["opt"] is None


# -- the stores on their own ------------------------------------------------------------------


def _info(files: dict[str, str], unzipped: int | None = None) -> tuple[bytes, codezip.CodeInfo]:
    data = build_zip(files)
    info = codezip.check_zip(data)
    if unzipped is not None:  # what a big package would measure, without writing one
        info = codezip.CodeInfo(info.sha256, info.sha_hex, info.size, unzipped, info.files)
    return data, info


def test_code_and_layers_together_stay_under_250_mb(tmp_path):
    store = Store(tmp_path / "state")
    store.load()
    mb = 1024 * 1024
    data, big = _info({"python/big.py": "WHO = 1\n"}, unzipped=200 * mb)
    codezip.store_zip(store.code_root, data, big)
    layer = store.layers.publish("big", {}, big)
    data, code = _info({"app.py": "def handler(e, c):\n    return 1\n"}, unzipped=60 * mb)
    codezip.store_zip(store.code_root, data, code)
    body = {"FunctionName": "f", "Runtime": "python3.11", "Role": "r", "Handler": "app.handler"}
    with pytest.raises(ApiError) as exc_info:
        store.create_function(body | {"Layers": [layer["LayerVersionArn"]]}, code)
    assert exc_info.value.code == "InvalidParameterValueException"
    assert exc_info.value.message == (
        "Function code combined with layers exceeds the maximum allowed size of 262144000 "
        f"bytes. The actual size is {260 * mb} bytes."
    )
    assert store.names() == []
    # Under the limit it is recorded; then bigger code is refused by UpdateFunctionCode.
    data, small = _info({"app.py": "def handler(e, c):\n    return 2\n"}, unzipped=mb)
    store.create_function(body | {"Layers": [layer["LayerVersionArn"]]}, small)
    store.finish_update("f")
    with pytest.raises(ApiError) as exc_info:
        store.update_code("f", code)
    assert "The actual size is" in exc_info.value.message
    assert store.config("f")["CodeSha256"] == small.sha256


def test_layers_survive_a_reload_and_keep_their_numbers(tmp_path):
    store = Store(tmp_path / "state")
    store.load()
    data, info = _info({"python/m.py": "WHO = 1\n"})
    codezip.store_zip(store.code_root, data, info)
    store.layers.publish("kept", {"Description": "d"}, info)
    store.layers.publish("kept", {}, info)
    store.layers.delete("kept", 2)
    again = Store(tmp_path / "state")
    again.load()
    assert [v["Version"] for v in again.layers.versions("kept")] == [1]
    assert again.layers.version("kept", 1)["Description"] == "d"
    assert again.layers.publish("kept", {}, info)["Version"] == 3
    assert (again.code_root / f"{info.sha_hex}.zip").is_file()
    # Once no version and no function refers to it, its code goes.
    for number in (1, 3):
        again.layers.delete("kept", number)
    assert not (again.code_root / f"{info.sha_hex}.zip").exists()
    assert json.loads((tmp_path / "state" / "layers" / "_kept.json").read_text())["versions"] == {}
