"""File modes: the cache, report and saved-result folders are private unless asked to be shared."""

import os
import stat

import pytest

from lambdakit.engine.cache import Cache
from lambdakit.results.outputs import OutputStore
from tests.factories import mixed_run


def modes(folder):
    """{relative path: permission bits} of the folder and everything under it."""
    found = {".": stat.S_IMODE(folder.stat().st_mode)}
    for path in folder.rglob("*"):
        found[str(path.relative_to(folder))] = stat.S_IMODE(path.lstat().st_mode)
    return found


@pytest.fixture
def open_umask():
    """A umask that would leave everything world-readable (0755/0644)."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def assert_private(folder):
    found = modes(folder)
    assert len(found) > 1
    for name, mode in found.items():
        expected = 0o700 if (folder / name).is_dir() else 0o600
        assert mode == expected, f"{name}: {oct(mode)}"


def test_report_and_saved_result_folders_are_private(tmp_path, open_umask):
    result = mixed_run()
    report = result.save_report(tmp_path / "runs" / "report")
    assert_private(report)
    assert stat.S_IMODE((tmp_path / "runs").stat().st_mode) == 0o700  # created for it
    assert_private(result.save(tmp_path / "saved"))


def test_shared_folders_follow_the_umask(tmp_path, open_umask):
    report = mixed_run().save_report(tmp_path / "report", shared=True)
    assert modes(report)["."] == 0o755
    assert modes(report)["manifest.json"] == 0o644


def test_the_cache_folder_and_its_database_are_private(tmp_path, open_umask):
    cache = Cache(tmp_path / "cache")
    assert cache.stats() is not None  # opens the store
    assert_private(tmp_path / "cache")
    assert (tmp_path / "cache" / "cache.db").exists()
    shared = Cache(tmp_path / "team-cache", shared=True)
    shared.stats()
    assert modes(tmp_path / "team-cache")["."] == 0o755


def test_an_output_dir_is_private(tmp_path, open_umask):
    store = OutputStore(tmp_path / "outputs")
    store.put([0, 1], [{"a": 1}, {"b": 2}])
    assert_private(tmp_path / "outputs")


def test_an_existing_folder_keeps_its_parents_modes(tmp_path, open_umask):
    team = tmp_path / "team"
    team.mkdir(mode=0o755)
    os.chmod(team, 0o755)
    mixed_run().save_report(team / "report")
    assert modes(team)["."] == 0o755  # not created by lambdakit: left as it was
    assert modes(team)["report"] == 0o700


def test_check_folder_names_what_cannot_be_written_and_creates_nothing(tmp_path):
    from lambdakit.errors import InvalidInput
    from lambdakit.results.folders import check_folder

    (tmp_path / "file").write_text("x")
    assert check_folder(tmp_path / "new" / "deeper", "report folder") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()
    assert check_folder(tmp_path) == tmp_path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # the probe left nothing
    with pytest.raises(InvalidInput, match=r"report folder '.*/file' is a file, not a folder"):
        check_folder(tmp_path / "file", "report folder")
    with pytest.raises(
        InvalidInput, match=r"output_dir '.*/file/x' cannot be created: .* is a file"
    ):
        check_folder(tmp_path / "file" / "x", "output_dir")
    # Not writable whatever the permission bits say (this also holds for root): /sys is
    # read-only to everyone for creating files.
    with pytest.raises(
        InvalidInput, match=r"cache folder '/sys/lambdakit-check' cannot be created"
    ):
        check_folder("/sys/lambdakit-check", "cache folder")
