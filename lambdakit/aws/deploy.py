"""Deploying a handler folder: zip it, create or update the function, publish, move aliases."""

from __future__ import annotations

import ast
import base64
import hashlib
import io
import logging
import os
import re
import stat
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lambdakit.aws.connection import call_api
from lambdakit.errors import (
    CredentialsError,
    DeployError,
    FunctionNotFound,
    LambdakitError,
    translate_client_error,
)

__all__ = [
    "KNOWN_RUNTIMES",
    "PLACEHOLDER_ROLE",
    "Deployment",
    "deploy",
    "package",
    "publish_version",
    "set_alias",
    "validate_handler",
]

log = logging.getLogger("lambdakit.aws.deploy")

# Well-formed for AWS's validation; the local service ignores roles. Pass a real role on AWS.
PLACEHOLDER_ROLE = "arn:aws:iam::123456789012:role/lambdakit-execution-role"
KNOWN_RUNTIMES = frozenset(
    {f"python3.{minor}" for minor in range(9, 14)}
    | {"nodejs18.x", "nodejs20.x", "nodejs22.x", "java11", "java17", "java21", "dotnet8"}
    | {"ruby3.2", "ruby3.3", "ruby3.4", "provided.al2", "provided.al2023"}
)
_SKIP_DIRS = frozenset(
    {"__pycache__", ".git", ".hg", ".svn", ".ipynb_checkpoints", ".pytest_cache", ".mypy_cache"}
    | {".ruff_cache", ".tox", ".venv", ".idea", ".vscode"}
)
_SKIP_TOP_DIRS = frozenset(
    {"tests", "build", "dist"}
)  # top level only: vendored code may need them
_SKIP_FILES = frozenset({".DS_Store", "Thumbs.db"})
_SKIP_SUFFIXES = (".pyc", ".pyo", ".swp", "~")
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can say: the same bytes on every build
_MAX_ZIP_BYTES = 50 * 1024 * 1024  # AWS's limit for a zip uploaded in the request
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ALIAS = re.compile(r"^(?!\d+$)[A-Za-z0-9_-]{1,128}$")  # AWS's pattern: not only digits
_WAIT = {"Delay": 1, "MaxAttempts": 300}
_LAYER_VERSION_ARN = re.compile(
    r"^arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:\d{12}:layer:[A-Za-z0-9_-]+:\d+$"
)


@dataclass(frozen=True)
class Deployment:
    """What deploy() left: the function, the version it published (or $LATEST), its code.

    `action` says what was sent: "created", "updated code", "updated configuration",
    "updated code and configuration" or "unchanged". `function_url` is set by `url=`.
    """

    function_name: str
    function_arn: str  # unqualified: arn:aws:lambda:<region>:<account>:function:<name>
    version: str  # the published number, or "$LATEST" without publish/alias
    code_sha256: str  # what Lambda reports as CodeSha256 for that version
    alias: str | None = None
    action: str = "unchanged"
    function_url: str | None = None
    layers: tuple[str, ...] = ()  # the LayerVersionArns that version uses, in order

    @property
    def qualified_arn(self) -> str:
        """The ARN of what to invoke: the alias when there is one, else the version."""
        return f"{self.function_arn}:{self.alias or self.version}"

    def __getitem__(self, key: str) -> Any:
        """`deployed["version"]`, the dict deploy() returned before; use the attributes.

        Kept for one release, so that notebooks saved with the old form still run; the raw
        GetFunctionConfiguration reply ("configuration") is no longer part of the result.
        """
        if key == "configuration":
            raise KeyError(
                "deploy() no longer returns the raw configuration: call "
                "client.get_function_configuration(FunctionName=...) for it"
            )
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)


def package(folder: str | os.PathLike[str]) -> bytes:
    """Zip a handler folder into deployable bytes: sorted entries, fixed timestamps, no junk.

    Excluded: __pycache__, *.pyc, VCS folders, .ipynb_checkpoints, .DS_Store, editor and tool
    caches, and top-level tests/, build/ and dist/. Executable bits are kept (bootstrap).
    """
    root = Path(folder)
    if not root.is_dir():
        raise DeployError(f"handler folder {str(root)!r} does not exist or is not a folder")
    buffer = io.BytesIO()
    count = 0
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path in _files(root):
            info = zipfile.ZipInfo(path.relative_to(root).as_posix(), date_time=_ZIP_EPOCH)
            mode = 0o755 if os.access(path, os.X_OK) else 0o644
            info.external_attr = (stat.S_IFREG | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
            count += 1
    if count == 0:
        raise DeployError(f"handler folder {str(root)!r} has no files to package")
    data = buffer.getvalue()
    if len(data) > _MAX_ZIP_BYTES:
        raise DeployError(
            f"the zip of {str(root)!r} is {len(data) / 2**20:.1f} MB, over Lambda's 50 MB "
            "limit for a direct upload: remove large files or use a layer"
        )
    return data


def _files(root: Path) -> Iterator[Path]:
    for current, dirs, files in os.walk(root):
        top = Path(current) == root
        for linked in (d for d in dirs if (Path(current) / d).is_symlink()):
            # os.walk does not follow them (a link cycle would never end): say so, not drop.
            log.warning("not packaging %s: symlinked folders are skipped", Path(current) / linked)
        # Pruning in place stops os.walk from descending; sorting makes the order stable.
        dirs[:] = sorted(
            d
            for d in dirs
            if d not in _SKIP_DIRS
            and not d.endswith(".egg-info")
            and not (top and d in _SKIP_TOP_DIRS)
            and not (Path(current) / d).is_symlink()
        )
        for name in sorted(files):
            if name in _SKIP_FILES or name.endswith(_SKIP_SUFFIXES):
                continue
            path = Path(current) / name
            if path.is_file():
                yield path
            else:
                log.warning("not packaging %s: not a regular file (a broken link?)", path)


def validate_handler(
    folder: str | os.PathLike[str], handler: str, runtime: str, *, layers: bool = False
) -> None:
    """Check before any upload that `handler` can be found in `folder` for `runtime`.

    With `layers`, the handler's module (or bootstrap) may come from a layer instead.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DeployError(f"handler folder {str(root)!r} does not exist or is not a folder")
    if runtime not in KNOWN_RUNTIMES:
        raise DeployError(
            f"unknown runtime {runtime!r}; use one of: {', '.join(sorted(KNOWN_RUNTIMES))}"
        )
    if runtime.startswith("provided"):
        bootstrap = root / "bootstrap"
        if layers and not bootstrap.exists():
            return
        if not bootstrap.is_file():
            raise DeployError(f"runtime {runtime} needs an executable 'bootstrap' in {str(root)!r}")
        if not os.access(bootstrap, os.X_OK):
            raise DeployError(f"{str(bootstrap)!r} is not executable: run chmod +x on it")
        return
    module, _, function = handler.rpartition(".")
    if not module or not function:
        raise DeployError(
            f"handler {handler!r} must look like 'module.function', e.g. 'app.handler'"
        )
    if runtime.startswith("python"):
        _check_python_handler(root, handler, module, function, layers=layers)
    elif runtime.startswith("nodejs") and not any(
        (root / f"{module}{ext}").is_file() for ext in (".js", ".mjs", ".cjs")
    ):
        raise DeployError(f"handler {handler!r} needs {module}.js (or .mjs) in {str(root)!r}")


def _check_python_handler(
    root: Path, handler: str, module: str, function: str, *, layers: bool = False
) -> None:
    relative = module.replace(".", "/")
    candidates = [root / f"{relative}.py", root / relative / "__init__.py"]
    source = next((p for p in candidates if p.is_file()), None)
    if source is None and layers:
        return  # a layer may bring it; Lambda says so at the first invocation if none does
    if source is None:
        raise DeployError(
            f"handler {handler!r} needs {relative}.py in {str(root)!r}, which has none"
        )
    try:
        tree = ast.parse(source.read_bytes(), filename=str(source))
    except SyntaxError as exc:
        raise DeployError(f"{source.name} does not compile (line {exc.lineno}): {exc.msg}") from exc
    if function not in _top_level_names(tree):
        raise DeployError(
            f"handler {handler!r}: {source.name} defines no top-level function {function!r}"
        )


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _environment(environment: Mapping[str, Any] | None) -> dict[str, str]:
    if environment is not None and not isinstance(environment, Mapping):
        raise DeployError(
            f"environment must be a mapping of names to values, got a {type(environment).__name__}"
        )
    variables: dict[str, str] = {}
    for key, value in (environment or {}).items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            # The value may be a secret: the message names its type only.
            raise DeployError(
                f"environment variable {key!r} must be a string or number, "
                f"got a {type(value).__name__}"
            )
        variables[str(key)] = str(value)
    return variables


@contextmanager
def _step(name: str, what: str) -> Iterator[None]:
    """Name the failed step in the error; credential problems pass through unchanged."""
    try:
        yield
    except CredentialsError:
        raise
    except LambdakitError as exc:
        raise DeployError(f"deploying {name!r}: {what} failed: {exc}") from exc


def _wait(client: Any, waiter: str, **kwargs: Any) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client.get_waiter(waiter).wait(WaiterConfig=_WAIT, **kwargs)
    except BotoCoreError as exc:
        error = translate_client_error(exc, operation=waiter)
        try:
            cfg = client.get_function_configuration(**kwargs)
            reason = cfg.get("StateReason") or cfg.get("LastUpdateStatusReason")
        except (BotoCoreError, ClientError):  # the waiter's failure is the error; this is detail
            reason = None
        raise DeployError(f"{error}" + (f" (reason: {reason})" if reason else "")) from exc


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise DeployError(f"{name} must be an integer from {low} to {high}, got {value!r}")


def deploy(
    client: Any,
    name: str,
    folder: str | os.PathLike[str],
    *,
    handler: str = "app.handler",
    runtime: str = "python3.11",
    memory_mb: int = 128,
    timeout_s: int = 30,
    environment: Mapping[str, Any] | None = None,
    role: str = PLACEHOLDER_ROLE,
    publish: bool = False,
    alias: str | None = None,
    description: str | None = None,
    url: str | None = None,
    settings: Mapping[str, Any] | None = None,
    layers: Sequence[str] | None = None,
) -> Deployment:
    """Create or update function `name` from `folder`, wait until it is ready; a Deployment.

    The function ends up exactly as described (an omitted `environment` clears it). Code and
    configuration are only sent when they differ. `alias` implies `publish`: the new version
    is published and the alias created or moved to it. `url="NONE" | "AWS_IAM"` also gives
    the function (the alias, when given) a function URL, with the public-access statement a
    NONE URL needs; its address is the result's `function_url`. `settings` passes further
    function settings as the Lambda API names them (EphemeralStorage, LoggingConfig,
    DeadLetterConfig, TracingConfig, KMSKeyArn, VpcConfig, SnapStart, FileSystemConfigs,
    Architectures); a setting is sent again only when what Lambda reports differs.
    `layers` are LayerVersionArns (at most 5, e.g. from `build_layer`), in the order Lambda
    merges them (a later layer's file wins); omitted, the function has none.

    >>> deploy(client, "orders", "functions/enrich_orders", alias="live").version  # doctest: +SKIP
    '1'
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise DeployError(f"function name must be 1-64 letters, digits, '-' or '_', got {name!r}")
    _check_int("memory_mb", memory_mb, 128, 10240)
    _check_int("timeout_s", timeout_s, 1, 900)
    # Checked before anything is sent: a bad alias name used to fail after publishing.
    if alias is not None and not (isinstance(alias, str) and _ALIAS.match(alias)):
        raise DeployError(
            f"alias name {alias!r} must be 1-128 letters, digits, '-' or '_', not only digits"
        )
    if url not in (None, "NONE", "AWS_IAM"):
        raise DeployError(f"url must be None, 'NONE' or 'AWS_IAM', got {url!r}")
    if not callable(getattr(client, "get_function_configuration", None)):
        raise DeployError(f"client must be a boto3 Lambda client, got {type(client).__name__}")
    extra_settings = _settings(settings)
    architectures = extra_settings.pop("Architectures", None)
    layer_arns = _layers(layers)
    validate_handler(folder, handler, runtime, layers=bool(layer_arns))
    zip_bytes = package(folder)
    code_sha256 = base64.b64encode(hashlib.sha256(zip_bytes).digest()).decode()
    wanted: dict[str, Any] = {
        "Runtime": runtime,
        "Handler": handler,
        "MemorySize": int(memory_mb),
        "Timeout": int(timeout_s),
        "Environment": {"Variables": _environment(environment)},
        "Description": description or "",
        "Layers": layer_arns,
        **extra_settings,
    }

    with _step(name, "looking the function up"):
        try:
            current = call_api(client, "get_function_configuration", FunctionName=name)
        except FunctionNotFound:
            current = None
    if current is None:
        action = "created"
        with _step(name, "creating the function"):
            call_api(
                client,
                "create_function",
                FunctionName=name,
                Role=role,
                Code={"ZipFile": zip_bytes},
                PackageType="Zip",
                **wanted,
                **({"Architectures": architectures} if architectures else {}),
            )
            _wait(client, "function_active_v2", FunctionName=name)
    else:
        action = _update(client, name, current, zip_bytes, code_sha256, wanted, role, architectures)

    version = "$LATEST"
    if publish or alias:
        version = publish_version(client, name, description=description)
    if alias:
        set_alias(client, name, alias, version)
    function_url = None
    if url is not None:
        from lambdakit.aws.function_urls import create_function_url

        with _step(name, "creating its function URL"):
            function_url = create_function_url(client, name, url, qualifier=alias)
    with _step(name, "reading the result"):
        final = call_api(client, "get_function_configuration", FunctionName=name, Qualifier=version)
    log.info("%s %s (version %s, alias %s)", action, name, version, alias)
    return Deployment(
        function_name=final["FunctionName"],
        # GetFunctionConfiguration with a qualifier answers with the qualified ARN.
        function_arn=":".join(final["FunctionArn"].split(":")[:7]),
        version=version,
        code_sha256=final.get("CodeSha256") or code_sha256,
        alias=alias,
        action=action,
        function_url=function_url,
        layers=tuple(layer["Arn"] for layer in final.get("Layers") or ()),
    )


def _layers(layers: Sequence[str] | None) -> list[str]:
    """deploy()'s layers as the Lambda API takes them: at most 5 LayerVersionArns."""
    if layers is None:
        return []
    if isinstance(layers, str) or not isinstance(layers, Sequence):
        raise DeployError(f"layers must be a list of layer version ARNs, got {layers!r}")
    for arn in layers:
        if not isinstance(arn, str) or not _LAYER_VERSION_ARN.match(arn):
            raise DeployError(
                f"layer {arn!r} is not a layer version ARN "
                "(arn:aws:lambda:<region>:<account>:layer:<name>:<version>)"
            )
    if len(layers) > 5:
        raise DeployError(f"a function takes at most 5 layers, got {len(layers)}")
    if len({arn.rsplit(":", 1)[0] for arn in layers}) < len(layers):
        raise DeployError(f"layers name one layer twice: {list(layers)}")
    return list(layers)


def _update(
    client: Any,
    name: str,
    current: dict[str, Any],
    zip_bytes: bytes,
    code_sha256: str,
    wanted: dict[str, Any],
    role: str,
    architectures: list[str] | None = None,
) -> str:
    """Bring an existing function to the wanted code and configuration; say what changed."""
    with _step(name, "waiting for a previous update"):
        if current.get("State") == "Pending" or current.get("LastUpdateStatus") == "InProgress":
            _wait(client, "function_updated_v2", FunctionName=name)
    changed = []
    new_architecture = architectures is not None and current.get("Architectures") != architectures
    if current.get("CodeSha256") != code_sha256 or new_architecture:
        # Architectures is a setting of the code (UpdateFunctionCode), not of the configuration.
        arch = {"Architectures": architectures} if new_architecture else {}
        with _step(name, "uploading the code"):
            call_api(client, "update_function_code", FunctionName=name, ZipFile=zip_bytes, **arch)
            _wait(client, "function_updated_v2", FunctionName=name)
        changed.append("code")
    have = {key: current.get(key) for key in wanted}
    for key in wanted.keys() - _BASIC:
        # Lambda adds fields of its own (VpcId, OptimizationStatus, default log levels):
        # the setting matches when every field asked for is what Lambda reports.
        if _covers(current.get(key), wanted[key]):
            have[key] = wanted[key]
    have["Environment"] = {"Variables": (current.get("Environment") or {}).get("Variables") or {}}
    have["Description"] = current.get("Description") or ""
    have["Layers"] = [layer["Arn"] for layer in current.get("Layers") or ()]
    extra = {"Role": role} if role != PLACEHOLDER_ROLE and role != current.get("Role") else {}
    if have != wanted or extra:
        with _step(name, "updating the configuration"):
            call_api(client, "update_function_configuration", FunctionName=name, **wanted, **extra)
            _wait(client, "function_updated_v2", FunctionName=name)
        changed.append("configuration")
    return "updated " + " and ".join(changed) if changed else "unchanged"


_BASIC = frozenset(
    {"Runtime", "Handler", "MemorySize", "Timeout", "Environment", "Description", "Layers"}
)
# What deploy(settings=...) passes on; the rest of CreateFunction's members deploy() sets
# itself (or, like code from S3, does not use).
_PASSED_SETTINGS = frozenset({
    "EphemeralStorage", "LoggingConfig", "DeadLetterConfig", "TracingConfig", "KMSKeyArn",
    "VpcConfig", "SnapStart", "FileSystemConfigs", "Architectures",
})  # fmt: skip


def _settings(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    if settings is None:
        return {}
    if not isinstance(settings, Mapping):
        raise DeployError(f"settings must be a mapping of Lambda setting names, got {settings!r}")
    unknown = sorted(set(settings) - _PASSED_SETTINGS)
    if unknown:
        raise DeployError(
            f"settings {unknown} are not function settings deploy() passes on; use one of "
            f"{', '.join(sorted(_PASSED_SETTINGS))} (the other ones are deploy()'s own arguments)"
        )
    return dict(settings)


def _covers(reported: Any, wanted: Any) -> bool:
    """Whether what Lambda reports has every field of `wanted` with the same value."""
    if isinstance(wanted, Mapping):
        reported = {} if reported is None else reported  # a cleared setting is not reported
        return isinstance(reported, Mapping) and all(
            _covers(reported.get(key), value) for key, value in wanted.items()
        )
    if wanted in ("", None, [], {}):
        return reported in ("", None, [], {})
    return bool(reported == wanted)


def publish_version(client: Any, name: str, *, description: str | None = None) -> str:
    """Publish $LATEST as a new immutable version and return its number."""
    with _step(name, "publishing a version"):
        kwargs = {"Description": description} if description else {}
        published = call_api(client, "publish_version", FunctionName=name, **kwargs)
        version = str(published["Version"])
        _wait(client, "function_active_v2", FunctionName=name, Qualifier=version)
    return version


def set_alias(
    client: Any,
    name: str,
    alias: str,
    version: str | int,
    weights: Mapping[str | int, float] | None = None,
) -> dict[str, Any]:
    """Create alias `alias` or move it to `version`; `weights` sends a share elsewhere.

    >>> set_alias(client, "orders", "live", "3", weights={"4": 0.1})  # 10% canary  # doctest: +SKIP
    """
    version = str(version)
    extra = {str(v): float(w) for v, w in (weights or {}).items()}
    if len(extra) > 1:
        raise DeployError(f"an alias routes to at most one additional version, got {sorted(extra)}")
    for extra_version, weight in extra.items():
        if extra_version == version:
            raise DeployError(f"weights name the alias's own version {version!r}")
        if not 0.0 <= weight < 1.0:
            raise DeployError(
                f"the weight of version {extra_version} must be in [0, 1), got {weight}"
            )
    fields = {
        "FunctionName": name,
        "Name": alias,
        "FunctionVersion": version,
        "RoutingConfig": {"AdditionalVersionWeights": extra},
    }
    with _step(name, f"setting alias {alias!r}"):
        try:
            call_api(client, "get_alias", FunctionName=name, Name=alias)
        except FunctionNotFound:
            return call_api(client, "create_alias", **fields)
        return call_api(client, "update_alias", **fields)
