"""Record sources: files streamed, DataFrames in chunks, bad inputs named."""

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lambdakit.errors import InvalidInput
from lambdakit.records.sources import BadLine, iter_records, source_length


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
    assert source_length(csv) is None
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
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("id,value\n1,2\n3,4,5\n")
    with pytest.raises(InvalidInput, match=r"ragged\.csv.*Expected 2 fields"):
        list(iter_records(ragged))
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
