"""OutputStore: compact on-disk outputs, thread-safe puts, input-order reads, save/open/pickle."""

from __future__ import annotations

import pickle
import random
import threading

import pytest

from lambdakit.errors import InvalidInput
from lambdakit.records.encoding import JsonNumber
from lambdakit.results.outputs import DATA_FILE, INDEX_FILE, OutputStore


def test_get_all_yields_input_order_with_none_where_missing():
    store = OutputStore()
    store.put([7, 5], ["seven", "five"])
    store.put([0, 1, 2], [{"a": 0}, [1], 2.5])
    assert list(store.get_all(9)) == [{"a": 0}, [1], 2.5, None, None, "five", None, "seven", None]
    assert len(store) == 5


def test_interleaved_puts_from_threads_come_back_in_order():
    store = OutputStore()
    n, batch = 5_000, 25
    # Batches land out of order, and retried items of a batch land after the rest of it.
    chunks = [list(range(i, min(i + batch, n))) for i in range(0, n, batch)]
    pieces = []
    for chunk in chunks:
        pieces += [chunk[::2], chunk[1::2]]
    random.Random(0).shuffle(pieces)

    def worker(part: list[list[int]]) -> None:
        for indices in part:
            store.put(indices, [{"i": i} for i in indices])

    threads = [threading.Thread(target=worker, args=(pieces[k::4],)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert list(store.get_all(n)) == [{"i": i} for i in range(n)]


def test_a_record_stored_twice_keeps_the_later_output():
    store = OutputStore()
    store.put([0, 1], ["old", "b"])
    store.put([0], ["new"])
    assert list(store.get_all(2)) == ["new", "b"]


def test_save_and_open_round_trip(tmp_path):
    store = OutputStore()
    store.put([3, 1], ["d", "b"])
    store.save(tmp_path / "out")
    reopened = OutputStore.open(tmp_path / "out")
    assert list(reopened.get_all(4)) == [None, "b", None, "d"]
    reopened.put([0], ["a"])  # a reopened store keeps appending
    assert list(OutputStore.open(tmp_path / "out").get_all(4)) == ["a", "b", None, "d"]


def test_a_missing_or_stale_index_is_rebuilt_and_a_torn_line_dropped(tmp_path):
    store = OutputStore(tmp_path)
    store.put([0, 1], ["a", "b"])
    store.put([2], ["c"])
    store.close()
    with open(tmp_path / DATA_FILE, "ab") as fh:
        fh.write(b'[[3],["tor')  # a crash mid-write
    assert not (tmp_path / INDEX_FILE).exists()
    rebuilt = OutputStore(tmp_path)
    assert list(rebuilt.get_all(4)) == ["a", "b", "c", None]
    rebuilt.put([3], ["d"])
    assert list(rebuilt.get_all(4)) == ["a", "b", "c", "d"]


def test_pickle_carries_the_data():
    store = OutputStore()
    store.put([1, 0], ["b", "a"])
    copy = pickle.loads(pickle.dumps(store))
    del store
    assert list(copy.get_all(3)) == ["a", "b", None]
    assert copy.directory.exists()


def test_temporary_folder_is_removed_with_the_store():
    store = OutputStore()
    folder = store.directory
    store.put([0], [1])
    store.close()
    del store
    assert not folder.exists()


def test_bad_puts_name_the_problem(tmp_path):
    store = OutputStore(tmp_path)
    with pytest.raises(InvalidInput, match="2 record indices but 1 outputs"):
        store.put([0, 1], ["a"])
    with pytest.raises(InvalidInput, match="negative record index"):
        store.put([-1], ["a"])
    with pytest.raises(InvalidInput, match="not JSON"):
        store.put([0], [object()])
    with pytest.raises(InvalidInput, match="not a saved OutputStore"):
        OutputStore.open(tmp_path / "nothing")
    assert list(store.get_all(1)) == [None]


def test_contiguous_batches_read_back_whole_or_cut_short():
    store = OutputStore()
    store.put(range(10, 20), list(range(10, 20)))
    store.put(range(10), list(range(10)))
    store.put([25, 21], [25, 21])
    assert list(store.get_all(27)) == [*range(20), None, 21, None, None, None, 25, None]
    assert list(store.get_all(5)) == [0, 1, 2, 3, 4]
    store.put([15], ["retried"])  # overlaps a contiguous batch: the later value wins
    assert list(store.get_all(20))[14:17] == [14, "retried", 16]


def test_a_private_store_buffers_puts_and_every_read_sees_them(tmp_path):
    store = OutputStore()
    data = store.directory / DATA_FILE
    for i in range(50):
        store.put([i], [i])
    assert data.stat().st_size == 0  # buffered: no flush (a syscall) per batch
    assert list(store.get_all(50)) == list(range(50))  # a read flushes first
    store.put([50], [50])
    assert list(pickle.loads(pickle.dumps(store)).get_all(51)) == list(range(51))
    store.put([51], [51])
    store.flush()
    reopened = OutputStore.open(store.directory)
    assert data.stat().st_size > 0 and list(reopened.get_all(52)) == list(range(52))
    # A store in a folder of yours is flushed at every put: other readers see each batch.
    named = OutputStore(tmp_path / "out")
    named.put([0], ["a"])
    assert list(OutputStore.open(tmp_path / "out").get_all(1)) == ["a"]


def test_outputs_wider_than_a_float_or_64_bits_keep_their_digits(tmp_path):
    # orjson refuses an int beyond 64 bits (the put failed) and reads a long fraction back
    # as a float: the store writes every digit and reads them back as they were.
    wide = {
        "id": 123456789012345678901234567890,
        "low": -(2**63) - 1,
        "amount": JsonNumber("0.1234567890123456789"),
        "nested": [2**64, {"x": JsonNumber("1234567890123456.78")}],
        "price": 1.1,
    }
    store = OutputStore(tmp_path / "outputs")
    store.put([0, 1], [wide, "plain"])
    (back, plain) = OutputStore.open(tmp_path / "outputs").get_all(2)
    assert back == wide and plain == "plain"
    assert type(back["id"]) is int and type(back["amount"]) is JsonNumber
    assert str(back["nested"][1]["x"]) == "1234567890123456.78"
    assert type(back["price"]) is float
    (again,) = pickle.loads(pickle.dumps(store)).get_all(1)
    assert again == wide
