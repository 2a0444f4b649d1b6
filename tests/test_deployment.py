"""Packaging, validation before upload, and deploy/publish/alias against `lambdakit local`."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest

from lambdakit.deployment import package, set_alias, validate_handler
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

    importlib.import_module("lambdakit.deployment")
    assert callable(lambdakit.deploy)
    assert lambdakit.deploy.__name__ == "deploy"
