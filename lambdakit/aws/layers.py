"""Building a Lambda layer: pip installs requirements into python/, zips it, publishes it.

    arn = build_layer("pandas", requirements="requirements.txt", runtime="python3.12")
    deploy(client, "report", "functions/report", layers=[arn])

For AWS the wheels are those of the Lambda platform (`--platform manylinux2014_x86_64`, or
`manylinux2014_aarch64` for arm64, `--only-binary=:all:`, the runtime's Python version), so
no package is built for the machine that runs this; for `lambdakit local`, whose functions
run on the host's interpreter, pip installs for the host.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lambdakit.aws.connection import call_api, make_client
from lambdakit.aws.deploy import package
from lambdakit.errors import CredentialsError, DeployError, LambdakitError

__all__ = ["aws_platform", "build_layer", "layer_zip"]

log = logging.getLogger("lambdakit.aws.layers")

_PLATFORMS = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,140}$")
_PIP_OUTPUT_CHARS = 3000  # pip's last words, in the error when it fails


def aws_platform(client: Any) -> bool:
    """Whether the client talks to AWS itself (not lambdakit local or another endpoint)."""
    endpoint = str(getattr(getattr(client, "meta", None), "endpoint_url", "") or "")
    host = endpoint.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    return host.endswith((".amazonaws.com", ".amazonaws.com.cn", ".api.aws"))


def _pip_command(
    requirements: str | os.PathLike[str] | Sequence[str],
    target: Path,
    *,
    runtime: str,
    platform: str | None,
    pip_args: Sequence[str],
) -> list[str]:
    command = [sys.executable, "-m", "pip", "install", "--target", str(target)]
    command += ["--disable-pip-version-check", "--no-input", "--no-compile"]
    if platform is not None:
        version = runtime.removeprefix("python")
        command += ["--platform", platform, "--only-binary=:all:", "--implementation", "cp"]
        command += ["--python-version", version]
    if isinstance(requirements, (str, os.PathLike)):
        path = Path(requirements)
        if not path.is_file():
            raise DeployError(f"requirements file {str(path)!r} does not exist")
        command += ["-r", str(path)]
    else:
        specifiers = list(requirements)
        if not specifiers or not all(isinstance(s, str) and s for s in specifiers):
            raise DeployError(
                "requirements must be a requirements file or a non-empty list of specifiers, "
                f"got {requirements!r}"
            )
        command += specifiers
    return [*command, *pip_args]


def layer_zip(
    *,
    requirements: str | os.PathLike[str] | Sequence[str] | None = None,
    folder: str | os.PathLike[str] | None = None,
    runtime: str = "python3.11",
    platform: str | None = None,
    pip_args: Sequence[str] = (),
    timeout_s: float = 900.0,
) -> bytes:
    """The zip of a layer: `requirements` pip-installed into python/, or `folder` as it is.

    `platform` is a pip platform tag (wheels only, for `runtime`'s Python) or None for the
    host's. `folder` is the layer's root, as /opt will show it (python/, bin/, lib/, ...).
    """
    if (requirements is None) == (folder is None):
        raise DeployError("build a layer from requirements=... or from folder=..., not both")
    if not (isinstance(runtime, str) and runtime.startswith("python3.")):
        raise DeployError(f"runtime must be a Python runtime such as 'python3.12', got {runtime!r}")
    if folder is not None:
        return package(folder)
    with tempfile.TemporaryDirectory(prefix="lambdakit-layer-") as build:
        root = Path(build)
        command = _pip_command(
            requirements, root / "python", runtime=runtime, platform=platform, pip_args=pip_args
        )
        # pip_args are left out of the log: an --index-url there may carry a token.
        shown = command[1 : len(command) - len(pip_args)]
        extra = f" (+{len(pip_args)} pip_args, not shown)" if pip_args else ""
        log.info("building a layer: %s%s", " ".join(shown), extra)
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            raise DeployError(f"pip did not finish within {timeout_s:g} s") from None
        if done.returncode != 0:
            output = (done.stderr or done.stdout).strip()[-_PIP_OUTPUT_CHARS:]
            raise DeployError(f"pip failed (exit {done.returncode}): {output}")
        return package(root)


def build_layer(
    name: str,
    *,
    requirements: str | os.PathLike[str] | Sequence[str] | None = None,
    folder: str | os.PathLike[str] | None = None,
    runtime: str = "python3.11",
    architecture: str = "x86_64",
    description: str | None = None,
    client: Any = None,
    endpoint_url: str | None = None,
    region: str | None = None,
    profile: str | None = None,
    platform: str | None = None,
    pip_args: Sequence[str] = (),
    timeout_s: float = 900.0,
) -> str:
    """Build a layer and publish it as a new version of layer `name`; its LayerVersionArn.

    `requirements` is a requirements file (its own pip options, such as --find-links, apply)
    or a list of specifiers; `folder` a ready layer root instead. The layer is published
    with `client` (a boto3 Lambda client) or one made for `endpoint_url`/`region`/`profile`.
    `platform=None` installs AWS's wheels (manylinux2014 for `architecture`) when the client
    talks to AWS and the host's otherwise (lambdakit local); `"host"` or a pip platform tag
    decides it. `pip_args` are added to pip's command line.

    >>> arn = build_layer("deps", requirements=["orjson"], endpoint_url=url)  # doctest: +SKIP
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise DeployError(f"layer name must be 1-140 letters, digits, '-' or '_', got {name!r}")
    if architecture not in _PLATFORMS:
        raise DeployError(f"architecture must be 'x86_64' or 'arm64', got {architecture!r}")
    if client is None:
        client = make_client(endpoint_url=endpoint_url, region=region, profile=profile)
    if platform is None:
        platform = _PLATFORMS[architecture] if aws_platform(client) else "host"
    data = layer_zip(
        requirements=requirements,
        folder=folder,
        runtime=runtime,
        platform=None if platform == "host" else platform,
        pip_args=pip_args,
        timeout_s=timeout_s,
    )
    extra = {"Description": description} if description else {}
    try:
        published = call_api(
            client,
            "publish_layer_version",
            LayerName=name,
            Content={"ZipFile": data},
            CompatibleRuntimes=[runtime],
            CompatibleArchitectures=[architecture],
            **extra,
        )
    except CredentialsError:
        raise
    except LambdakitError as exc:
        raise DeployError(f"publishing layer {name!r} failed: {exc}") from exc
    log.info("published %s (%d bytes)", published["LayerVersionArn"], len(data))
    return str(published["LayerVersionArn"])
