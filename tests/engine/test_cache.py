"""The version-aware disk cache: keys, weighted aliases, listing and clearing."""

import os
import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from lambdakit.engine.cache import DEFAULT, Cache, cache_key, default_cache_dir
from lambdakit.errors import InvalidInput

ARN = "arn:aws:lambda:us-east-1:123456789012:function:square"
OTHER = "arn:aws:lambda:us-east-1:123456789012:function:cube"


@dataclass(frozen=True)
class Routed:
    """The fields of discovery.Target that the cache reads."""

    function_arn: str
    versions: dict = field(default_factory=lambda: {"$LATEST": 1.0})
    cache_tokens: dict = field(default_factory=lambda: {"$LATEST": "$LATEST@abc:cfg1"})


def test_key_depends_on_every_part():
    base = cache_key(ARN, "3", b"x")
    assert len(base) == 64
    assert base == cache_key(ARN, "3", b"x")
    assert (
        len(
            {
                base,
                cache_key(OTHER, "3", b"x"),
                cache_key(ARN, "4", b"x"),
                cache_key(ARN, "3", b"y"),
            }
        )
        == 4
    )
    # The separator keeps (a, bc) and (ab, c) apart.
    assert cache_key("a", "bc", b"") != cache_key("ab", "c", b"")


def test_store_and_lookup_roundtrip(tmp_path):
    cache = Cache(tmp_path / "c")
    target = Routed(ARN)
    assert cache.lookup(target, b"body") is None
    entry = cache.store(target, "$LATEST", b"body", [1, 4], run_id="r1", metrics={"duration_ms": 3})
    hit = cache.lookup(target, b"body")
    assert hit == entry
    assert (hit.outputs, hit.run_id, hit.executed_version, hit.metrics) == (
        [1, 4],
        "r1",
        "$LATEST",
        {"duration_ms": 3},
    )
    assert cache.stats()["hits"] == 1 and cache.stats()["misses"] == 1


def test_latest_code_or_config_change_misses(tmp_path):
    cache = Cache(tmp_path)
    cache.store(Routed(ARN), "$LATEST", b"body", [1], run_id="r1")
    updated = Routed(ARN, cache_tokens={"$LATEST": "$LATEST@def:cfg1"})
    assert cache.lookup(updated, b"body") is None


def test_weighted_alias_hits_only_routed_versions_and_records_executed(tmp_path):
    cache = Cache(tmp_path)
    tokens = {"3": "3@abc:cfg1", "4": "4@def:cfg1"}
    alias = Routed(ARN, versions={"3": 0.9, "4": 0.1}, cache_tokens=tokens)
    entry = cache.store(alias, "4", b"body", ["out"], run_id="r1")
    assert entry.executed_version == "4" and entry.cache_token == "4@def:cfg1"
    assert cache.lookup(alias, b"body").executed_version == "4"
    # Alias moved to 5 only: version 4's result is no longer what the alias would run.
    moved = Routed(ARN, versions={"5": 1.0}, cache_tokens={"5": "5@ghi:cfg1"})
    assert cache.lookup(moved, b"body") is None
    # A version the alias moved to mid-run: its code is unknown, so nothing is stored.
    assert cache.store(alias, "5", b"body", [1], run_id="r1") is None
    # Unknown executed version with two routed versions: nothing is stored.
    assert cache.store(alias, None, b"other", [1], run_id="r1") is None
    assert cache.lookup(alias, b"other") is None


def test_a_recreated_version_and_old_scheme_entries_miss(tmp_path):
    cache = Cache(tmp_path)
    old_v1 = Routed(ARN, versions={"1": 1.0}, cache_tokens={"1": "1@code-a:cfg1"})
    cache.store(old_v1, "1", b"body", ["A"], run_id="r1")
    new_v1 = Routed(ARN, versions={"1": 1.0}, cache_tokens={"1": "1@code-b:cfg1"})
    assert cache.lookup(new_v1, b"body") is None
    # An entry written under the old scheme (the bare number as the token) is ignored,
    # even when it sits under the very key asked for.
    store = cache._open()
    key = cache_key(ARN, "1@code-b:cfg1", b"other")
    old = cache.store(Routed(ARN, versions={"1": 1.0}, cache_tokens={"1": "1"}), "1", b"x", [0],
                      run_id="old")  # fmt: skip
    store.set(key, {**{f: getattr(old, f) for f in old.__dataclass_fields__}, "key": key})
    assert cache.lookup(new_v1, b"other") is None


def test_entries_and_clear_by_function_and_run(tmp_path):
    cache = Cache(tmp_path)
    cache.store(Routed(ARN), "$LATEST", b"a", [1], run_id="r1")
    cache.store(Routed(ARN), "$LATEST", b"b", [2], run_id="r2")
    cache.store(Routed(OTHER), "$LATEST", b"a", [3], run_id="r2")
    assert len(cache.entries()) == 3
    assert set(cache.entries("square")["run_id"]) == {"r1", "r2"}
    assert len(cache.entries(ARN + ":prod")) == 2
    assert list(cache.entries(run_id="r2")["function_arn"]).count(OTHER) == 1
    assert "outputs" not in cache.entries().columns
    assert cache.clear(function="square", run_id="r1") == 1
    assert cache.clear(function="cube") == 1
    assert len(cache.entries()) == 1
    assert cache.clear() == 1
    assert cache.stats()["entries"] == 0


def test_shorthands(tmp_path, monkeypatch):
    monkeypatch.setenv("LAMBDAKIT_CACHE_DIR", str(tmp_path / "env"))
    assert Cache.coerce(False) is None and Cache.coerce(None) is None
    assert Cache.coerce(DEFAULT).directory == tmp_path / "env"
    assert Cache.coerce(True).directory == default_cache_dir()
    assert Cache.coerce(str(tmp_path / "p")).directory == tmp_path / "p"
    mine = Cache(tmp_path)
    assert Cache.coerce(mine) is mine
    with pytest.raises(InvalidInput, match="cache must be"):
        Cache.coerce(3)


def test_folder_created_lazily(tmp_path):
    cache = Cache(tmp_path / "lazy")
    assert not (tmp_path / "lazy").exists()
    cache.stats()
    assert (tmp_path / "lazy").is_dir()
    cache.close()
    assert cache.stats()["entries"] == 0  # reopens after close


def test_importing_creates_nothing(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    env.pop("LAMBDAKIT_CACHE_DIR", None)
    code = "import lambdakit.engine.cache as c; c.Cache(); c.default_cache_dir()"
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    assert not (tmp_path / "xdg").exists()


def test_writer_stores_in_the_background_and_reports_errors(tmp_path):
    cache = Cache(tmp_path)
    writer = cache.writer()
    for i in range(50):
        writer.put(Routed(ARN), "$LATEST", b"body%d" % i, [i], run_id="r1")
    writer.close()
    assert writer.stored == 50 and len(cache.entries(run_id="r1")) == 50
    assert cache.lookup(Routed(ARN), b"body7").outputs == [7]

    broken = cache.writer()
    broken.put(Routed(ARN), "$LATEST", b"x", [lambda: 1], run_id="r2")  # cannot be pickled
    with pytest.raises(Exception, match="pickle"):
        broken.close()


def test_a_file_given_as_the_cache_folder_is_refused_by_name(tmp_path):
    # It failed mid-run with a raw sqlite3.OperationalError, and the writer thread died
    # printing a traceback, its error never reaching close().
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("mine")
    with pytest.raises(InvalidInput, match="not-a-folder' is a file"):
        Cache.coerce(str(blocker))
    unusable = Cache(blocker / "inside")  # a folder that can never be created
    with pytest.raises(InvalidInput, match="cannot be used"):
        unusable.stats()
    writer = unusable.writer()
    writer.put(Routed(ARN), "$LATEST", b"x", [1], run_id="r")
    with pytest.raises(InvalidInput, match="cannot be used"):
        writer.close()
