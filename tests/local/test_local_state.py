"""The local service's persistent state: the Store on its own, zip checks, and restarts."""

from __future__ import annotations

import io
import json
import os
import stat
import time
import uuid
import zipfile
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from lambdakit.errors import LocalServiceError
from lambdakit.local import LocalLambda, codezip
from lambdakit.local.checks import ApiError
from lambdakit.local.codezip import check_zip, store_zip, unpack
from lambdakit.local.state import Store
from tests.conftest import build_zip

ROLE = "arn:aws:iam::123456789012:role/lambdakit-test"  # AWS checks the pattern

ECHO = "def handler(event, context):\n    return event\n"


def new_store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "state", account_concurrency=200)
    store.load()
    return store


def add_code(store: Store, source: str) -> codezip.CodeInfo:
    data = build_zip(source)
    info = check_zip(data)
    store_zip(store.code_root, data, info)
    return info


def create(store: Store, name: str, source: str = ECHO, **settings) -> dict:
    info = add_code(store, source)
    body = {"FunctionName": name, "Runtime": "python3.11", "Role": "r", "Handler": "app.handler"}
    cfg = store.create_function(body | settings, info)
    unpack(store.code_root, info.sha_hex)
    return cfg


def code_of(store: Store, name: str, version: str = "$LATEST") -> str:
    cfg = store.live_config(name, version)
    return (store.code_dir(cfg) / "app.py").read_text()


def test_create_is_pending_and_refuses_updates_until_finished(tmp_path):
    store = new_store(tmp_path)
    cfg = create(store, "f")
    assert (cfg["State"], cfg["LastUpdateStatus"]) == ("Pending", "InProgress")
    with pytest.raises(ApiError) as exc_info:
        store.update_config("f", {"Timeout": 5})
    assert (exc_info.value.status, exc_info.value.code) == (409, "ResourceConflictException")
    assert "Pending" in exc_info.value.message
    store.finish_update("f")
    assert store.config("f")["State"] == "Active"
    store.update_config("f", {"Timeout": 5})
    with pytest.raises(ApiError) as exc_info:
        store.update_config("f", {"Timeout": 6})
    assert "An update is in progress" in exc_info.value.message
    # Invokes keep running the last finished configuration until the update completes.
    assert store.live_config("f", "$LATEST")["Timeout"] == 3
    store.finish_update("f")
    assert store.live_config("f", "$LATEST")["Timeout"] == 5


def test_versions_keep_their_code_after_updates(tmp_path):
    store = new_store(tmp_path)
    create(store, "f", "def handler(e, c):\n    return 'one'\n")
    store.finish_update("f")
    assert store.publish_version("f", {})["Version"] == "1"
    info = add_code(store, "def handler(e, c):\n    return 'two'\n")
    store.update_code("f", info)
    unpack(store.code_root, info.sha_hex)
    store.finish_update("f")
    assert "'one'" in code_of(store, "f", "1")
    assert "'two'" in code_of(store, "f")
    # Code nothing refers to any more is deleted; code a version still uses is kept.
    assert len(list(store.code_root.glob("*.zip"))) == 2
    store.delete_function("f", "1")
    assert len(list(store.code_root.glob("*.zip"))) == 1


def test_revision_ids_guard_updates(tmp_path):
    store = new_store(tmp_path)
    create(store, "f")
    store.finish_update("f")
    with pytest.raises(ApiError) as exc_info:
        store.update_config("f", {"Timeout": 9, "RevisionId": "stale"})
    assert (exc_info.value.status, exc_info.value.code) == (412, "PreconditionFailedException")
    current = store.config("f")["RevisionId"]
    store.update_config("f", {"Timeout": 9, "RevisionId": current})


def test_alias_routes_sum_to_one(tmp_path):
    store = new_store(tmp_path)
    create(store, "f")
    store.finish_update("f")
    store.publish_version("f", {})
    store.update_config("f", {"Timeout": 4})
    store.finish_update("f")
    store.publish_version("f", {})
    body = {"FunctionVersion": "1", "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.25}}}
    store.put_alias("f", "live", body, create=True)
    assert store.alias_routes("f", "live") == [("1", 0.75), ("2", 0.25)]
    store.put_alias("f", "live", {"RoutingConfig": {}}, create=False)
    assert store.alias_routes("f", "live") == [("1", 1.0)]


def test_state_reloads_from_disk(tmp_path):
    store = new_store(tmp_path)
    create(store, "f", Environment={"Variables": {"K": "v"}})
    store.finish_update("f")
    store.publish_version("f", {})
    store.put_alias("f", "live", {"FunctionVersion": "1"}, create=True)
    store.put_concurrency("f", 7)
    again = new_store(tmp_path)
    assert again.names() == ["f"]
    assert again.config("f", "live")["Version"] == "1"
    assert again.config("f")["Environment"] == {"Variables": {"K": "v"}}
    assert again.concurrency("f") == 7
    assert "return event" in code_of(again, "f", "1")


def test_an_unfinished_update_is_reported_on_load(tmp_path):
    store = new_store(tmp_path)
    create(store, "f")
    assert new_store(tmp_path).load() == ["f"]


def test_account_keeps_unreserved_concurrency(tmp_path):
    store = new_store(tmp_path)  # account of 200: 20 must stay unreserved
    for name in ("a", "b"):
        create(store, name)
    store.put_concurrency("a", 100)
    with pytest.raises(ApiError) as exc_info:
        store.put_concurrency("b", 81)
    assert "[20]" in exc_info.value.message
    assert store.put_concurrency("b", 80) == 80


@pytest.mark.parametrize("entry", ["../x.py", "/abs.py", "a/../../x.py", "C:/win.py", "..\\x.py"])
def test_zip_slip_entries_are_refused(entry):
    with pytest.raises(ApiError) as exc_info:
        check_zip(build_zip({"app.py": ECHO, entry: "x = 1\n"}))
    assert exc_info.value.code == "InvalidParameterValueException"
    assert repr(entry) in exc_info.value.message


def test_unzipped_size_limit(monkeypatch):
    monkeypatch.setattr(codezip, "MAX_UNZIPPED_BYTES", 1_000)
    with pytest.raises(ApiError) as exc_info:
        check_zip(build_zip({"app.py": "#" * 2_000}))
    assert "Unzipped size must be smaller than 1000 bytes" in exc_info.value.message


def test_unpack_keeps_the_executable_bit(tmp_path):
    data = build_zip({"bootstrap": "#!/bin/sh\necho hi\n", "lib/data.txt": "x"})
    info = check_zip(data)
    store_zip(tmp_path, data, info)
    folder = unpack(tmp_path, info.sha_hex)
    assert os.access(folder / "bootstrap", os.X_OK)
    assert not os.access(folder / "lib" / "data.txt", os.X_OK)
    assert unpack(tmp_path, info.sha_hex) == folder  # idempotent


def _wait(condition, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def test_state_survives_a_restart(tmp_path):
    appender = (
        "def handler(event, context):\n"
        "    open(event['path'], 'a').write('ran\\n')\n"
        "    return context.function_version\n"
    )
    with LocalLambda(state_dir=tmp_path / "state") as local:
        client = local.client()
        client.create_function(
            FunctionName="kept", Runtime="python3.11", Role=ROLE, Handler="app.handler",
            Code={"ZipFile": build_zip(appender)}, Publish=True,
        )  # fmt: skip
        _wait(
            lambda: client.get_function(FunctionName="kept")["Configuration"]["State"] == "Active"
        )
        client.create_alias(FunctionName="kept", Name="live", FunctionVersion="1")
        # With no concurrency, an accepted Event stays queued, on disk, across the restart.
        client.put_function_concurrency(FunctionName="kept", ReservedConcurrentExecutions=0)
        marker = tmp_path / "event-ran.txt"
        client.invoke(
            FunctionName="kept", InvocationType="Event",
            Payload=json.dumps({"path": str(marker)}).encode(),
        )  # fmt: skip
        local.restart()
        client = local.client()
        concurrency = client.get_function_concurrency(FunctionName="kept")
        assert concurrency["ReservedConcurrentExecutions"] == 0
        assert not marker.exists()
        client.delete_function_concurrency(FunctionName="kept")
        _wait(marker.exists)
        response = client.invoke(
            FunctionName="kept:live", Payload=json.dumps({"path": str(marker)}).encode()
        )
        assert response["ExecutedVersion"] == "1"
        assert json.loads(response["Payload"].read()) == "1"
        versions = client.list_versions_by_function(FunctionName="kept")["Versions"]
        assert [v["Version"] for v in versions] == ["$LATEST", "1"]
        assert client.get_alias(FunctionName="kept", Name="live")["FunctionVersion"] == "1"
    assert marker.read_text() == "ran\nran\n"


def test_local_lambda_lifecycle_and_temporary_state():
    local = LocalLambda()
    with pytest.raises(LocalServiceError):
        local.client()
    assert "not started" in repr(local)
    with local:
        assert local.running and local.endpoint_url.startswith("http://127.0.0.1:")
        state_dir = local.state_dir
        assert state_dir.is_dir() and (state_dir / "functions").is_dir()
        assert local.client().list_functions()["Functions"] == []
    assert not local.running
    assert not state_dir.exists()  # a temporary state dir goes away with the service


def test_local_lambda_reports_a_server_that_cannot_start(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(LocalServiceError) as exc_info:
            LocalLambda(state_dir=tmp_path, port=port).start()
    assert "exited with status 1" in str(exc_info.value)
    assert "cannot listen" in str(exc_info.value)


def test_build_zip_of_a_folder_keeps_modes(tmp_path):
    folder = tmp_path / "pkg"
    (folder / "lib").mkdir(parents=True)
    (folder / "app.py").write_text(ECHO)
    (folder / "lib" / "helper.py").write_text("X = 1\n")
    (folder / "bootstrap").write_text("#!/bin/sh\n")
    (folder / "bootstrap").chmod(0o755)
    info = check_zip(build_zip(folder))
    store_zip(tmp_path / "code", build_zip(folder), info)
    unpacked = unpack(tmp_path / "code", info.sha_hex)
    assert (unpacked / "lib" / "helper.py").read_text() == "X = 1\n"
    assert os.access(unpacked / "bootstrap", os.X_OK)


def test_server_exits_when_its_owner_dies_without_stopping_it(tmp_path):
    import subprocess
    import sys

    import psutil

    owner = subprocess.run(
        [sys.executable, "-c",
         "import os, sys\n"
         "from lambdakit.local import LocalLambda\n"
         f"local = LocalLambda(state_dir={str(tmp_path / 'state')!r}).start()\n"
         "print(local._process.pid, flush=True)\n"
         "os._exit(0)  # no stop(), no atexit: as if the kernel were killed\n"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    server_pid = int(owner.stdout.split()[0])
    deadline = time.monotonic() + 30
    while psutil.pid_exists(server_pid):
        if psutil.Process(server_pid).status() == psutil.STATUS_ZOMBIE:
            break
        assert time.monotonic() < deadline, "the server outlived its owner"
        time.sleep(0.05)
    assert "parent process" in (tmp_path / "state" / "server.log").read_text()


def test_unreadable_records_are_skipped_on_load(tmp_path, caplog):
    store = new_store(tmp_path)
    create(store, "good")
    functions = tmp_path / "state" / "functions"
    (functions / "broken.json").write_text("{not json")
    (functions / "odd.json").write_text('{"latest": {}}')
    again = new_store(tmp_path)
    assert again.names() == ["good"]
    assert "broken.json" in caplog.text and "odd.json" in caplog.text


def _zip_with(entries: list[tuple[str, bytes, int]]) -> bytes:
    """A zip of (name, content, unix mode) entries; S_IFLNK modes make symlinks."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content, mode in entries:
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = mode << 16
            archive.writestr(info, content)
    return buffer.getvalue()


LINK = stat.S_IFLNK | 0o777
FILE = stat.S_IFREG | 0o644
LINKED_HANDLER = (
    "import pathlib\n"
    "def handler(event, context):\n"
    "    here = pathlib.Path(__file__).parent\n"
    "    return {'data': (here / 'data.txt').read_text(), 'link': (here / 'data.txt').is_symlink(),"
    " 'lib': (here / 'lib' / 'value.txt').read_text()}\n"
)


def test_symlinks_are_stored_as_symlinks_resolved_inside_the_package(
    lambda_client, make_function, invoke_json
):
    name = make_function("def handler(event, context):\n    return 0\n")
    package = _zip_with([
        ("app.py", LINKED_HANDLER.encode(), FILE),
        ("real/data.txt", b"payload", FILE),
        ("data.txt", b"real/data.txt", LINK),
        ("vendor/lib/value.txt", b"v1", FILE),
        ("lib", b"vendor/lib", LINK),
    ])  # fmt: skip
    lambda_client.update_function_code(FunctionName=name, ZipFile=package)
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name)
    _, body = invoke_json(name)
    assert body == {"data": "payload", "link": True, "lib": "v1"}


@pytest.mark.parametrize(
    ("entries", "words"),
    [
        ([("app.py", b"x = 1", FILE), ("evil", b"/etc/passwd", LINK)], "outside"),
        ([("app.py", b"x = 1", FILE), ("sub/evil", b"../../x", LINK)], "outside"),
        ([("app.py", b"x = 1", FILE), ("a", b"b/../..", LINK), ("b", b".", LINK)], "outside"),
        ([("app.py", b"x = 1", FILE), ("up", b"..", LINK), ("down", b"up/etc", LINK)], "outside"),
        ([("app.py", b"x = 1", FILE), ("d", b"/tmp", LINK), ("d/x.py", b"1", FILE)], "through"),
        ([("app.py", b"x = 1", FILE), ("loop", b"loop", LINK)], "outside"),
        ([], "non-empty"),
        ([("folder/", b"", stat.S_IFDIR | 0o755)], "non-empty"),
        ([("other.py", b"def handler(e, c): pass", FILE)], "no module for handler"),
    ],
)  # fmt: skip
def test_bad_packages_are_refused_at_create_and_update(
    lambda_client, make_function, entries, words
):
    package = _zip_with(entries)
    with pytest.raises(ClientError) as caught:
        lambda_client.create_function(
            FunctionName=f"bad-zip-{uuid.uuid4().hex[:8]}", Runtime="python3.11",
            Role="arn:aws:iam::123456789012:role/x", Handler="app.handler",
            Code={"ZipFile": package},
        )  # fmt: skip
    error = caught.value.response["Error"]
    assert error["Code"] == "InvalidParameterValueException"
    assert words in error["Message"]
    name = make_function("def handler(event, context):\n    return 1\n")
    with pytest.raises(ClientError) as caught:
        lambda_client.update_function_code(FunctionName=name, ZipFile=package)
    assert caught.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert words in caught.value.response["Error"]["Message"]


def test_custom_runtime_zip_needs_a_bootstrap(lambda_client):
    with pytest.raises(ClientError) as caught:
        lambda_client.create_function(
            FunctionName=f"no-bootstrap-{uuid.uuid4().hex[:8]}", Runtime="provided.al2023",
            Role="arn:aws:iam::123456789012:role/x", Handler="x",
            Code={"ZipFile": _zip_with([("run.sh", b"#!/bin/sh", FILE)])},
        )  # fmt: skip
    assert "bootstrap" in caught.value.response["Error"]["Message"]


def test_handler_in_a_package_or_subfolder_is_found(make_function, invoke_json):
    name = make_function(
        {"pkg/__init__.py": "", "pkg/mod.py": "def handler(event, context):\n    return 7\n"},
        handler="pkg.mod.handler",
    )
    assert invoke_json(name)[1] == 7
    name = make_function(
        {"src/app/__init__.py": "def handler(event, context):\n    return 8\n"},
        handler="src/app.handler",
    )
    assert invoke_json(name)[1] == 8
