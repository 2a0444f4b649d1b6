"""build_layer() and deploy(layers=...) against lambdakit local, and what a run reports of them.

pip never reaches the network here: the requirement is a wheel made in the test's folder,
found through the requirements file's own --no-index / --find-links.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import urllib.request
import uuid
import zipfile
from pathlib import Path

import boto3
import pytest

import lambdakit
from lambdakit.aws.layers import _pip_command, aws_platform
from lambdakit.errors import DeployError

USES_DEP = "import tinydep\n\ndef handler(event, context):\n    return [tinydep.VALUE for _ in event['Items']]\n"  # noqa: E501


def make_wheel(folder: Path, name: str = "tinydep", value: str = "from a layer") -> Path:
    """A pure-Python wheel of one module, written by hand (no build backend, no network)."""
    files = {
        f"{name}/__init__.py": f"VALUE = {value!r}\n",
        f"{name}-1.0.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
        f"{name}-1.0.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: lambdakit-tests\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n"
        ),
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    files[f"{name}-1.0.dist-info/RECORD"] = "\n".join([*record, f"{name}-1.0.dist-info/RECORD,,"])
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def offline_requirements(tmp_path: Path, *lines: str) -> Path:
    wheels = tmp_path / "wheels"
    make_wheel(wheels)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("\n".join(["--no-index", f"--find-links {wheels}", *lines]) + "\n")
    return requirements


def handler_folder(tmp_path: Path, source: str = USES_DEP) -> Path:
    folder = tmp_path / "handler"
    folder.mkdir(parents=True)
    (folder / "app.py").write_text(source)
    return folder


@pytest.fixture
def names(lambda_client):
    """Fresh function and layer names; the functions are deleted after the test."""
    made: list[str] = []

    def name(kind: str = "fn") -> str:
        made.append(f"{kind}-{uuid.uuid4().hex[:8]}")
        return made[-1]

    yield name
    for function in made:
        with contextlib.suppress(lambda_client.exceptions.ResourceNotFoundException):
            lambda_client.delete_function(FunctionName=function)


def test_a_dependency_from_a_layer_built_from_requirements(lambda_client, names, tmp_path):
    import importlib.util

    assert importlib.util.find_spec("tinydep") is None  # only the layer can bring it
    requirements = offline_requirements(tmp_path, "tinydep==1.0")
    layer = names("deps")
    arn = lambdakit.build_layer(layer, requirements=requirements, client=lambda_client,
                                runtime="python3.11")  # fmt: skip
    assert arn == f"arn:aws:lambda:us-east-1:123456789012:layer:{layer}:1"
    version = lambda_client.get_layer_version_by_arn(Arn=arn)
    assert version["CompatibleRuntimes"] == ["python3.11"]
    assert version["CompatibleArchitectures"] == ["x86_64"]
    with urllib.request.urlopen(version["Content"]["Location"], timeout=30) as response:
        entries = zipfile.ZipFile(io.BytesIO(response.read())).namelist()
    assert "python/tinydep/__init__.py" in entries

    function = names()
    deployed = lambdakit.deploy(lambda_client, function, handler_folder(tmp_path), layers=[arn])
    assert deployed.layers == (arn,) and deployed.action == "created"
    reply = lambda_client.invoke(FunctionName=function, Payload=b'{"Items": [1, 2]}')
    assert json.loads(reply["Payload"].read()) == ["from a layer", "from a layer"]
    again = lambdakit.deploy(lambda_client, function, handler_folder(tmp_path / "2"), layers=[arn])
    assert again.action == "unchanged"
    bare = lambdakit.deploy(lambda_client, function, handler_folder(tmp_path / "3"))
    assert bare.action == "updated configuration" and bare.layers == ()


def test_a_layer_from_a_folder_and_the_order_deploy_keeps(lambda_client, names, tmp_path):
    arns = []
    for who in ("first", "second"):
        root = tmp_path / who / "python"
        root.mkdir(parents=True)
        (root / "tinydep.py").write_text(f"VALUE = {who!r}\n")
        arns.append(lambdakit.build_layer(names("tools"), folder=root.parent, client=lambda_client))
    function = names()
    folder = handler_folder(tmp_path)
    lambdakit.deploy(lambda_client, function, folder, layers=arns)
    payload = b'{"Items": [0]}'
    assert json.loads(
        lambda_client.invoke(FunctionName=function, Payload=payload)["Payload"].read()
    ) == ["second"]
    swapped = lambdakit.deploy(lambda_client, function, folder, layers=arns[::-1], alias="live")
    assert swapped.action == "updated configuration" and swapped.layers == tuple(arns[::-1])
    reply = lambda_client.invoke(FunctionName=function, Qualifier="live", Payload=payload)
    assert json.loads(reply["Payload"].read()) == ["first"]


def test_a_run_reports_the_layers_its_function_used(lambda_client, names, tmp_path):
    requirements = offline_requirements(tmp_path, "tinydep")
    arn = lambdakit.build_layer(names("deps"), requirements=requirements, client=lambda_client)
    function = names()
    lambdakit.deploy(lambda_client, function, handler_folder(tmp_path), layers=[arn])
    result = lambdakit.run(function, [{"n": n} for n in range(4)], client=lambda_client,
                           cache=False, progress=False)  # fmt: skip
    assert list(result.outputs()) == ["from a layer"] * 4
    assert result.meta["layers"] == [arn]
    short = ":".join(arn.split(":")[-2:])
    assert f"layers: {short}" in repr(result)
    assert short in result._repr_html_()
    manifest = json.loads((result.save_report(tmp_path / "report") / "manifest.json").read_text())
    assert manifest["layers"] == [arn]
    plain = names()
    lambdakit.deploy(
        lambda_client,
        plain,
        handler_folder(tmp_path / "plain", "def handler(e, c):\n    return 1\n"),
    )
    unlayered = lambdakit.run(plain, [1], client=lambda_client, cache=False, progress=False)
    assert unlayered.meta["layers"] == [] and "layers" not in repr(unlayered)


def test_build_layer_refuses_what_it_cannot_build(lambda_client, tmp_path):
    with pytest.raises(DeployError, match="not both"):
        lambdakit.build_layer("x", requirements=["a"], folder=tmp_path, client=lambda_client)
    with pytest.raises(DeployError, match="not both"):
        lambdakit.build_layer("x", client=lambda_client)
    with pytest.raises(DeployError, match="does not exist"):
        lambdakit.build_layer("x", requirements=tmp_path / "missing.txt", client=lambda_client)
    requirements = offline_requirements(tmp_path, "no-such-package-for-lambdakit==9")
    with pytest.raises(DeployError, match="pip failed") as exc_info:
        lambdakit.build_layer("x", requirements=requirements, client=lambda_client)
    assert "no-such-package-for-lambdakit" in str(exc_info.value)
    with pytest.raises(DeployError, match="layer name"):
        lambdakit.build_layer("no spaces", folder=tmp_path, client=lambda_client)
    with pytest.raises(DeployError, match="architecture"):
        lambdakit.build_layer("x", folder=tmp_path, architecture="sparc", client=lambda_client)


def test_deploy_refuses_bad_layers_before_sending_anything(lambda_client, names, tmp_path):
    folder = handler_folder(tmp_path)
    good = "arn:aws:lambda:us-east-1:123456789012:layer:a:1"
    for layers, match in [
        ("arn:aws:lambda:us-east-1:123456789012:layer:a:1", "list of layer version ARNs"),
        (["arn:aws:lambda:us-east-1:123456789012:layer:a"], "not a layer version ARN"),
        ([f"{good[:-1]}{n}" for n in range(6)], "not a layer version ARN|at most 5"),
        ([good, good[:-1] + "2"], "one layer twice"),
    ]:
        function = names()
        with pytest.raises(DeployError, match=match):
            lambdakit.deploy(lambda_client, function, folder, layers=layers)
        with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
            lambda_client.get_function(FunctionName=function)
    # A layer the service does not know: Lambda's own error, named by deploy's step.
    with pytest.raises(DeployError, match=r"Layer version .* does not exist"):
        lambdakit.deploy(lambda_client, names(), folder, layers=[good])


def test_aws_gets_lambda_platform_wheels_and_local_the_hosts(tmp_path):
    requirements = tmp_path / "r.txt"
    requirements.write_text("orjson\n")
    command = _pip_command(requirements, tmp_path / "python", runtime="python3.12",
                           platform="manylinux2014_x86_64", pip_args=())  # fmt: skip
    joined = " ".join(command)
    assert "--platform manylinux2014_x86_64 --only-binary=:all:" in joined
    assert "--python-version 3.12" in joined and f"--target {tmp_path / 'python'}" in joined
    host = _pip_command(["orjson"], tmp_path / "python", runtime="python3.12", platform=None,
                        pip_args=["--no-index"])  # fmt: skip
    assert "--platform" not in host and host[-2:] == ["orjson", "--no-index"]
    keys = {"region_name": "us-east-1", "aws_access_key_id": "x", "aws_secret_access_key": "y"}
    aws = boto3.client("lambda", **keys)
    local = boto3.client("lambda", endpoint_url="http://127.0.0.1:9001", **keys)
    assert aws_platform(aws) and not aws_platform(local)


def test_a_canary_alias_records_each_version_s_layers(lambda_client, names, tmp_path):
    roots = []
    for who in ("a", "b"):
        root = tmp_path / who / "python"
        root.mkdir(parents=True)
        (root / "tinydep.py").write_text(f"VALUE = {who!r}\n")
        roots.append(root.parent)
    first, second = (
        lambdakit.build_layer(names("l"), folder=r, client=lambda_client) for r in roots
    )
    function = names()
    folder = handler_folder(tmp_path)
    v1 = lambdakit.deploy(lambda_client, function, folder, layers=[first], publish=True).version
    v2 = lambdakit.deploy(lambda_client, function, folder, layers=[first, second],
                          publish=True).version  # fmt: skip
    lambdakit.set_alias(lambda_client, function, "canary", v1, weights={v2: 0.5})
    result = lambdakit.run(function, [1, 2], qualifier="canary", client=lambda_client,
                           cache=False, progress=False)  # fmt: skip
    assert result.meta["layers"] == {v1: [first], v2: [first, second]}
    same = lambdakit.run(function, [1], qualifier=v2, client=lambda_client, cache=False,
                         progress=False)  # fmt: skip
    assert same.meta["layers"] == [first, second]


def test_pip_args_are_never_logged(lambda_client, names, tmp_path, caplog):
    # An index URL in pip_args may carry a token; the requirements file says --no-index, so
    # pip never contacts it.
    requirements = offline_requirements(tmp_path, "tinydep==1.0")
    token_url = "https://reader:tok-SECRET-123@packages.example.invalid/simple"
    with caplog.at_level("INFO", logger="lambdakit"):
        arn = lambdakit.build_layer(
            names("deps"), requirements=requirements, client=lambda_client,
            pip_args=["--extra-index-url", token_url],
        )  # fmt: skip
    assert arn.startswith("arn:aws:lambda:")
    assert "building a layer" in caplog.text and "+2 pip_args, not shown" in caplog.text
    assert "tok-SECRET" not in caplog.text
