"""Record sources: files streamed, DataFrames in chunks, bad inputs named."""

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lambdakit.errors import InvalidInput
from lambdakit.records.datasets import local_dataset
from lambdakit.records.sources import (
    BadLine,
    describe_source,
    iter_records,
    records_from,
    source_length,
)


def test_csv_and_parquet_sources(tmp_path):
    df = pd.DataFrame({"id": range(25), "v": [float(i) / 2 for i in range(25)]})
    csv = tmp_path / "d.csv"
    df.to_csv(csv, index=False)
    parquet = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), parquet, row_group_size=7)
    expected = df.to_dict("records")
    assert list(iter_records(csv)) == expected
    assert list(iter_records(str(parquet))) == expected
    assert source_length(parquet) == 25
    assert source_length(csv) == 25
    assert source_length(df) == 25


def test_bad_sources_are_named(tmp_path):
    with pytest.raises(InvalidInput, match="unsupported suffix"):
        iter_records(tmp_path / "x.xlsx")
    with pytest.raises(InvalidInput, match="does not exist"):
        iter_records(tmp_path / "missing.jsonl")
    with pytest.raises(InvalidInput, match="not a dict"):
        iter_records({"a": 1})
    with pytest.raises(InvalidInput, match="cannot be read"):
        iter_records(42)


def test_jsonl_bad_lines_are_marked_and_blank_lines_skipped(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"a": 1}\n\n  \n[1, 2]\n{oops\n')
    records = list(iter_records(path))
    assert records[:2] == [{"a": 1}, [1, 2]]
    assert isinstance(records[2], BadLine) and records[2].text == "{oops"
    assert "line 5 of d.jsonl" in records[2].reason


def test_dataframe_rows_and_iterables():
    df = pd.DataFrame({"x": range(25_000)})
    rows = iter_records(df)
    assert next(rows) == {"x": 0}
    assert sum(1 for _ in rows) == 24_999
    assert list(iter_records(x for x in (1, 2))) == [1, 2]
    assert source_length(x for x in (1, 2)) is None
    assert source_length([1, 2, 3]) == 3


def test_broken_csv_and_parquet_files_are_named(tmp_path):
    # These escaped as raw pandas/pyarrow errors (ParserError, ArrowInvalid) from the run.
    not_text = tmp_path / "binary.csv"
    not_text.write_bytes(b"id,value\n\xff\xfe,1\n")
    with pytest.raises(InvalidInput, match=r"binary\.csv is not readable CSV"):
        list(iter_records(not_text))
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_text("not parquet")
    with pytest.raises(InvalidInput, match=r"corrupt\.parquet is not a readable Parquet file"):
        list(iter_records(corrupt))
    with pytest.raises(InvalidInput, match=r"corrupt\.parquet is not a readable Parquet file"):
        source_length(corrupt)


def test_an_empty_csv_file_has_no_records(tmp_path):
    # Like an empty .jsonl; it raised pandas' EmptyDataError.
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert list(iter_records(empty)) == []


def test_a_dataframe_with_duplicate_column_names_is_refused():
    # to_dict("records") kept only the last of the duplicates: a silent loss of data.
    frame = pd.DataFrame([[1, 2, 3]], columns=["a", "a", "b"])
    with pytest.raises(InvalidInput, match=r"duplicate column names \['a'\]"):
        iter_records(frame)  # refused before anything is read or sent


def test_csv_rows_of_the_wrong_width_are_bad_lines_with_their_line_number(tmp_path):
    # A short row got NaN for its missing fields, silently; a long one stopped the whole
    # file with pandas' ParserError (the run ended, after the batches already invoked).
    path = tmp_path / "orders.csv"
    path.write_text(
        'id,name,amount\n1,"Smith, J",1.5\n2,short\n\n3,"two\nlines",2\n4,x,3,extra\n5,,\n'
    )
    records = list(iter_records(path))
    assert records[0] == {"id": 1, "name": "Smith, J", "amount": 1.5}
    assert isinstance(records[1], BadLine) and records[1].text == "2,short"
    assert records[1].reason == "line 3 of orders.csv has 2 fields, the header has 3"
    assert records[2] == {"id": 3, "name": "two\nlines", "amount": 2.0}
    assert isinstance(records[3], BadLine) and records[3].text == "4,x,3,extra"
    assert records[3].reason == "line 7 of orders.csv has 4 fields, the header has 3"
    assert records[4] == {"id": 5, "name": None, "amount": None}  # empty fields: missing
    assert len(records) == 5


def test_a_bad_csv_row_deep_in_a_file_does_not_stop_the_others(tmp_path):
    path = tmp_path / "big.csv"
    lines = ["id,v"] + [f"{i},{i}" for i in range(25_000)]
    lines[22_001] += ",extra"  # the record with id 22000, on line 22,002
    path.write_text("\n".join(lines))  # no newline at the end
    records = list(iter_records(path))
    assert len(records) == 25_000
    bad = [r for r in records if isinstance(r, BadLine)]
    assert [b.reason for b in bad] == ["line 22002 of big.csv has 3 fields, the header has 2"]
    assert records[22_000] is bad[0] and records[-1] == {"id": 24_999, "v": 24_999}


def test_csv_integers_with_missing_values_stay_integers(tmp_path):
    # pandas made the column float64: 1 arrived as 1.0, and the gap as NaN.
    path = tmp_path / "n.csv"
    path.write_text("n,label\n1,NA\n,b\n3,\n")
    assert list(iter_records(path)) == [
        {"n": 1, "label": "NA"},  # text: Namibia, or a name; only an empty cell is missing
        {"n": None, "label": "b"},
        {"n": 3, "label": None},
    ]
    assert [type(r["n"]) for r in iter_records(path)] == [int, type(None), int]
    # As pandas reads it, when asked: its NA markers are missing too.
    assert list(local_dataset(path, csv_types="pandas")) == [
        {"n": 1, "label": None},
        {"n": None, "label": "b"},
        {"n": 3, "label": None},
    ]


def test_file_records_are_counted_as_the_readers_read_them(tmp_path, monkeypatch):
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text('{"a": 1}\n\n  \n[1, 2]\n{oops\n{"last": true}')  # blank lines skipped
    assert source_length(jsonl) == len(list(iter_records(jsonl))) == 4
    csv = tmp_path / "d.csv"
    csv.write_text('\nid,note\n1,"two\nlines"\n\n2,short,row,long\n3,x\n')
    assert source_length(csv) == len(list(iter_records(csv))) == 3
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert source_length(empty) == 0
    monkeypatch.setattr("lambdakit.records.datasets.COUNT_LIMIT_BYTES", 10)
    assert source_length(jsonl) is None  # too big to count before the run: unknown
    assert source_length(tmp_path / "missing.jsonl") is None


def test_records_from_a_position_and_the_source_described(tmp_path):
    frame = pd.DataFrame({"x": range(5)})
    assert list(records_from(frame, 3)) == [{"x": 3}, {"x": 4}]
    assert list(records_from([1, 2, 3], 1)) == [2, 3]
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("1\n2\n3\n")
    assert list(records_from(jsonl, 2)) == [3]
    assert describe_source(jsonl) == {"type": "jsonl file", "path": str(jsonl.resolve())}
    assert describe_source(frame) == {"type": "pandas.DataFrame"}
    assert describe_source([1]) == {"type": "list"}
