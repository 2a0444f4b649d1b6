"""Record sources: files streamed, DataFrames in chunks, bad inputs named."""

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lambdakit.errors import InvalidInput
from lambdakit.sources import BadLine, iter_records, source_length


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
