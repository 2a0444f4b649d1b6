"""Datasets of files: folders and globs, compression by suffix, JSON arrays, provenance."""

import bz2
import gzip

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from lambdakit.errors import InvalidInput, SourceError
from lambdakit.records.batching import iter_batches
from lambdakit.records.datasets import Provenance, format_of, local_dataset, locate
from lambdakit.records.encoding import Encoding
from lambdakit.records.formats import BadLine
from lambdakit.records.sources import describe_source, iter_records, source_length


def _lines(start, stop):
    return "".join(f'{{"i": {i}}}\n' for i in range(start, stop)).encode()


@pytest.fixture
def folder(tmp_path):
    data = tmp_path / "data"
    (data / "2026" / "02").mkdir(parents=True)
    (data / "2026" / "01").mkdir(parents=True)
    (data / "2026" / "01" / "part-0.jsonl.gz").write_bytes(gzip.compress(_lines(0, 3)))
    (data / "2026" / "01" / "part-1.ndjson.bz2").write_bytes(bz2.compress(_lines(3, 5)))
    zstd = zstandard.ZstdCompressor().compress(_lines(5, 9))
    (data / "2026" / "02" / "part-0.jsonl.zst").write_bytes(zstd)
    (data / "_SUCCESS").write_text("")
    (data / ".hidden.jsonl").write_bytes(_lines(100, 101))
    return data


def test_a_folder_is_every_data_file_under_it_in_path_order(folder):
    dataset = local_dataset(folder)
    assert [r["i"] for r in iter_records(dataset)] == list(range(9))
    assert [o.name for o in dataset.objects] == [
        "2026/01/part-0.jsonl.gz",
        "2026/01/part-1.ndjson.bz2",
        "2026/02/part-0.jsonl.zst",
    ]
    assert source_length(folder) == 9  # counted through the decompressors
    described = describe_source(folder)
    assert described["type"] == "dataset" and described["objects"] == 3
    assert described["formats"] == ["jsonl+bz2", "jsonl+gzip", "jsonl+zstd"]
    assert described["skipped"] == [".hidden.jsonl", "_SUCCESS"]  # said, never silent


def test_a_glob_chooses_its_files(folder):
    assert [r["i"] for r in iter_records(str(folder / "2026" / "*" / "part-0.*"))] == [
        0, 1, 2, 5, 6, 7, 8,
    ]  # fmt: skip
    assert list(iter_records(str(folder / "**" / "*.bz2"))) == [{"i": 3}, {"i": 4}]
    with pytest.raises(InvalidInput, match=r"matches no files"):
        local_dataset(str(folder / "*.csv"))


def test_formats_come_from_the_suffix():
    assert format_of("a/b.JSONL.GZ") == ("jsonl", "gzip")
    assert format_of("x.ndjson.zst") == ("jsonl", "zstd")
    assert format_of("x.csv.bz2") == ("csv", "bz2")
    assert format_of("x.json") == ("json", None)
    with pytest.raises(InvalidInput, match=r"'x\.xlsx' has an unsupported suffix"):
        format_of("x.xlsx")
    with pytest.raises(InvalidInput, match="Parquet file compresses its own pages"):
        format_of("x.parquet.gz")


def test_a_folder_of_mixed_formats_or_an_unknown_file_is_refused(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(_lines(0, 1))
    pq.write_table(pa.table({"i": [1]}), tmp_path / "b.parquet")
    with pytest.raises(InvalidInput, match=r"mixes formats: jsonl \(a\.jsonl\), parquet"):
        local_dataset(tmp_path)
    (tmp_path / "b.parquet").unlink()
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InvalidInput, match=r"notes\.txt' has an unsupported suffix"):
        local_dataset(tmp_path)
    (tmp_path / "notes.txt").unlink()
    (tmp_path / "a.jsonl").unlink()
    with pytest.raises(InvalidInput, match="holds no data files"):
        local_dataset(tmp_path)


def test_a_corrupt_gzip_member_names_the_file_and_what_was_read(tmp_path):
    good = gzip.compress(_lines(0, 2))
    broken = gzip.compress(_lines(2, 2000))[:-40] + b"\x00" * 40
    (tmp_path / "a.jsonl.gz").write_bytes(good)
    (tmp_path / "b.jsonl.gz").write_bytes(broken)
    stream = iter_batches(local_dataset(tmp_path), batch_size=10_000)
    sent = []
    with pytest.raises(SourceError, match=r"b\.jsonl\.gz is not a readable gzip stream") as caught:
        sent.extend(stream)
    # Every record read before the damage went out in a batch: none was dropped.
    assert caught.value.records_read == stream.records == sum(len(b.items) for b in sent) > 2
    assert "records were read before" in str(caught.value)


def test_json_arrays_are_streamed_element_by_element(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('  [{"s": "a,]\\"}"}, [1, [2]],\n {"n": {"m": null}}, 7, {oops}, "x"]\n')
    records = list(iter_records(path))
    assert records[:4] == [{"s": 'a,]"}'}, [1, [2]], {"n": {"m": None}}, 7]
    assert isinstance(records[4], BadLine) and "element 5 of the array in a.json" in (
        records[4].reason
    )
    assert records[5] == "x"
    (tmp_path / "empty.json").write_text("[]")
    assert list(iter_records(tmp_path / "empty.json")) == []
    (tmp_path / "lines.json").write_text('{"a": 1}\n{"a": 2}\n')
    with pytest.raises(InvalidInput, match=r"lines\.json does not hold a JSON array"):
        list(iter_records(tmp_path / "lines.json"))
    (tmp_path / "more.json").write_text("[1] [2]")
    with pytest.raises(InvalidInput, match=r"more\.json has more after its JSON array"):
        list(iter_records(tmp_path / "more.json"))


def test_provenance_gives_each_record_its_file_line_and_row(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"i": 0}\n\n\n{"i": 1}\nnot json\n')
    (tmp_path / "b.csv").write_text('i,t\n1,"two\nlines"\n\n2,x\n')
    dataset = local_dataset(str(tmp_path / "*"))
    provenance = Provenance()
    records = list(dataset.records(provenance))
    table = provenance.table(len(records))
    a, b = str((tmp_path / "a.jsonl").resolve()), str((tmp_path / "b.csv").resolve())
    assert locate(table, range(len(records))) == [
        (a, 1, 1), (a, 4, 2), (a, 5, 3), (b, 2, 1), (b, 5, 2),
    ]  # fmt: skip
    assert locate(table, [99]) == [(None, None, None)]


def test_parquet_is_read_by_row_group_with_only_the_columns_asked_for(tmp_path):
    table = pa.table({"id": list(range(30)), "big": ["x" * 100] * 30, "v": [0.5] * 30})
    pq.write_table(table, tmp_path / "p.parquet", row_group_size=7)
    dataset = local_dataset(tmp_path / "p.parquet", columns=["id", "v"])
    records = list(dataset.records())
    assert records[0] == {"id": 0, "v": 0.5} and len(records) == 30
    with pytest.raises(InvalidInput, match=r"p\.parquet has no column 'nope'"):
        list(local_dataset(tmp_path / "p.parquet", columns=["nope"]).records())
    (tmp_path / "j.jsonl").write_bytes(_lines(0, 1))
    with pytest.raises(InvalidInput, match="columns= selects Parquet columns"):
        local_dataset(tmp_path / "j.jsonl", columns=["i"])


def test_the_fingerprint_covers_each_files_version(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(_lines(0, 3))
    first = iter_batches(path, batch_size=10)
    list(first)
    path.write_bytes(_lines(0, 3))  # the same records, written again: a new version
    import os

    os.utime(path, ns=(1, 1))
    second = iter_batches(path, batch_size=10)
    list(second)
    assert first.fingerprint != second.fingerprint
    again = iter_batches(path, batch_size=3)
    list(again)
    assert again.fingerprint == second.fingerprint  # the data, not the batching


@pytest.mark.parametrize("kind", ["jsonl", "json"])
def test_numbers_a_float_cannot_hold_keep_their_digits(kind, tmp_path):
    # orjson reads every number with a fraction as a float and an integer beyond 64 bits as
    # one too: 1234567890123456.78 went out as 1234567890123456.8, a 24-digit id as
    # 1.2345678901234569e+23 and 1e-400 as 0.0, with no word.
    record = (
        b'{"amount": 1234567890123456.78, "id": 123456789012345678901234, "tiny": 1e-400, '
        b'"price": 1.10, "n": 5, "big": 18446744073709551615, "when": "2024-01-01"}'
    )
    path = tmp_path / f"records.{kind}"
    path.write_bytes(record + b"\n" if kind == "jsonl" else b"[" + record + b"]")
    (batch,) = iter_batches(path)
    assert batch.body == (
        b'{"Items":[{"amount":1234567890123456.78,"id":123456789012345678901234,'
        b'"tiny":1E-400,"price":1.1,"n":5,"big":18446744073709551615,"when":"2024-01-01"}]}'
    )
    # The file's number stays a number, whatever decimal= says of Decimal values.
    (as_strings,) = iter_batches(path, encoding=Encoding(decimal="string"))
    assert as_strings.body == batch.body
    # A value a float holds exactly stays a float (1.10 is 1.1), as before.
    (read,) = iter_records(path)
    assert type(read["price"]) is float and type(read["n"]) is int
    assert str(read["amount"]) == "1234567890123456.78"
