"""CSV cells as values: numbers only where exact (csv_types="exact"), text, or pandas' inference."""

import io
import json
from decimal import Decimal

import pytest

from lambdakit.errors import InvalidInput
from lambdakit.records.batching import iter_batches
from lambdakit.records.datasets import Provenance, local_dataset, locate
from lambdakit.records.encoding import Encoding
from lambdakit.records.formats import BadLine, csv_records, exact_cell
from lambdakit.records.sources import iter_records, source_length

BIG = "123456789012345678901234"  # beyond 64 bits: orjson cannot write it as an int


@pytest.mark.parametrize(
    ("cell", "value"),
    [
        ("", None),
        ("0", 0),
        ("42", 42),
        ("-5", -5),
        (BIG, int(BIG)),
        ("0.1", 0.1),
        ("-0.0", -0.0),
        ("2.5", 2.5),
        ("1e+100", 1e100),
        ("19.90", Decimal("19.90")),
        ("12345678901234567.89", Decimal("12345678901234567.89")),
        ("1E+5", Decimal("1E+5")),
    ],
)
def test_a_cell_is_a_number_only_when_that_number_writes_back_as_the_cell(cell, value):
    got = exact_cell(cell)
    assert got == value and type(got) is type(value)
    if value is not None:
        written = repr(got) if isinstance(got, float) else str(got)
        assert written == cell


@pytest.mark.parametrize(
    "cell",
    [
        "007", "-0", "-01", "+5", " 5", "5 ", "1_000", "\u0663", "0x1F", ".5", "5.", "1e5",
        "1.5e3", "0.0000001", "1e400", "nan", "NaN", "inf", "-inf", "NA", "NULL", "TRUE",
        "2024-03-01", "12 kg", "-", "1.2.3", "9" * 5000,
    ],
)  # fmt: skip
def test_every_other_cell_stays_the_text_it_was(cell):
    assert exact_cell(cell) == cell and type(exact_cell(cell)) is str


def _csv(tmp_path, text, name="d.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_zip_codes_ids_and_long_numbers_keep_every_character(tmp_path):
    path = _csv(
        tmp_path,
        f'id,zip,amount,account,note,gap\n1,007,19.90,{BIG},"a, b",\n2,10001,0.1,-3,NA,x\n',
    )
    assert list(iter_records(path)) == [
        {"id": 1, "zip": "007", "amount": Decimal("19.90"), "account": int(BIG),
         "note": "a, b", "gap": None},
        {"id": 2, "zip": 10001, "amount": 0.1, "account": -3, "note": "NA", "gap": "x"},
    ]  # fmt: skip


def test_text_reads_every_cell_as_its_string_and_pandas_as_pandas_does(tmp_path):
    path = _csv(tmp_path, f"zip,amount,account,gap\n007,19.90,{BIG},\n")
    assert list(local_dataset(path, csv_types="text")) == [
        {"zip": "007", "amount": "19.90", "account": BIG, "gap": ""}
    ]
    # Only if asked: pandas' inference, which is what loses the zero and the digits.
    (row,) = local_dataset(path, csv_types="pandas")
    assert row["zip"] == 7 and row["amount"] == 19.9 and row["gap"] is None


def test_the_payload_holds_each_cell_as_written(tmp_path):
    path = _csv(tmp_path, f"zip,amount,account,gap,score\n007,19.90,{BIG},,0.1\n")
    (batch,) = iter_batches(local_dataset(path), batch_size=10)
    sent = batch.body.decode()
    assert f'"zip":"007","amount":19.90,"account":{BIG},"gap":null,"score":0.1' in sent
    assert json.loads(sent)["Items"][0]["zip"] == "007"
    # decimal="string": the Decimal cell arrives as its text, for float-parsing functions.
    (batch,) = iter_batches(local_dataset(path), batch_size=10, encoding=Encoding("string"))
    assert '"amount":"19.90"' in batch.body.decode()


def test_a_bad_csv_types_or_one_that_cannot_apply_is_named(tmp_path):
    path = _csv(tmp_path, "a\n1\n")
    with pytest.raises(InvalidInput, match=r"csv_types must be one of 'exact', 'text', 'pandas'"):
        local_dataset(path, csv_types="strings")
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text('{"a": 1}\n')
    with pytest.raises(InvalidInput, match=r"csv_types='text' types the cells of CSV files"):
        local_dataset(jsonl, csv_types="text")
    assert list(local_dataset(jsonl)) == [{"a": 1}]  # the default applies to any file


@pytest.mark.parametrize("csv_types", ["exact", "text", "pandas"])
def test_a_header_naming_a_column_twice_is_refused(tmp_path, csv_types):
    # A dict keeps one value per key: the other would be lost (pandas renamed it to "a.1").
    path = _csv(tmp_path, "a,b,a\n1,2,3\n")
    with pytest.raises(InvalidInput, match=r"d\.csv names the column 'a' twice in its header"):
        list(local_dataset(path, csv_types=csv_types))


@pytest.mark.parametrize("csv_types", ["exact", "text", "pandas"])
def test_rows_of_the_wrong_width_are_bad_lines_in_every_mode(tmp_path, csv_types):
    path = _csv(tmp_path, 'id,name\n\n1,"x\ny"\n2\n3,c,extra\r\n4,d\n')
    records = list(local_dataset(path, csv_types=csv_types).records())
    assert [r.reason for r in records if isinstance(r, BadLine)] == [
        "line 5 of d.csv has 1 field, the header has 2",
        "line 6 of d.csv has 3 fields, the header has 2",
    ]
    assert records[2].text == "3,c,extra"
    assert records[0]["name"] == "x\ny" and str(records[-1]["id"]) == "4"
    assert source_length(path) == len(records) == 4


def test_provenance_lines_survive_blank_lines_multiline_cells_and_cr_endings(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b'\nid,note\r1,"two\rlines"\r\r2,b\r3,c')
    provenance = Provenance()
    records = list(local_dataset(path).records(provenance))
    assert records == [{"id": 1, "note": "two\rlines"}, {"id": 2, "note": "b"},
                       {"id": 3, "note": "c"}]  # fmt: skip
    table = provenance.table(len(records))
    assert [line for _, line, _ in locate(table, range(3))] == [3, 6, 7]


class _Counted(io.RawIOBase):
    """A stream of `rows` CSV rows made on demand, counting the bytes it handed out."""

    def __init__(self, rows: int) -> None:
        self.given = 0
        self._rows = iter(range(rows))
        self._pending = b"id,zip\n"

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while len(self._pending) < len(buffer):
            row = next(self._rows, None)
            if row is None:
                break
            self._pending += f"{row},{row:05d}\n".encode()
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        self.given += size
        return size


def test_the_reader_streams_a_row_at_a_time(tmp_path):
    raw = _Counted(10_000_000)  # about 130 MB, never made: a record is read when asked for
    records = csv_records(io.BufferedReader(raw, 1 << 16), "big.csv")
    assert next(records) == {"id": 0, "zip": "00000"}
    for _ in range(50_000):
        last = next(records)
    assert last == {"id": 50_000, "zip": 50_000}  # five digits, no leading zero: a number
    assert raw.given < 2 << 20  # a megabyte or so read, of the 130


def test_exact_csv_needs_no_nan_check_and_pandas_csv_does(tmp_path):
    path = _csv(tmp_path, "v\ninf\n1.5\n")
    assert local_dataset(path).finite_numbers_only
    assert list(local_dataset(path)) == [{"v": "inf"}, {"v": 1.5}]
    pandas = local_dataset(path, csv_types="pandas")
    assert not pandas.finite_numbers_only
    rejected = []
    batches = list(iter_batches(pandas, batch_size=10, on_reject=rejected.append))
    assert [r.reason.split(",")[0] for r in rejected] == ["field 'v' is inf"]
    assert sum(len(b.items) for b in batches) == 1


def test_a_line_of_spaces_is_a_row_not_a_record_dropped_unseen(tmp_path):
    # pandas skips it: in a one-column file that was a record ("   ") gone without a word.
    one = _csv(tmp_path, "  \nname\nann\n   \n\nbob\n", "one.csv")
    provenance = Provenance()
    assert list(local_dataset(one).records(provenance)) == [
        {"name": "ann"}, {"name": "   "}, {"name": "bob"},
    ]  # fmt: skip
    assert [line for _, line, _ in locate(provenance.table(3), range(3))] == [3, 4, 6]
    assert source_length(one) == 3
    two = _csv(tmp_path, "a,b\n1,2\n   \n3,4\n", "two.csv")
    records = list(local_dataset(two))
    assert records[1].reason == "line 3 of two.csv has 1 field, the header has 2"
    assert source_length(two) == len(records) == 3
    # As pandas reads it, when asked: such lines are skipped, and counted so.
    as_pandas = local_dataset(two, csv_types="pandas")
    assert list(as_pandas) == [{"a": 1, "b": 2}, {"a": 3, "b": 4}]
    assert source_length(as_pandas) == 2


def test_a_resumed_read_types_cells_as_the_first_read_did(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "a.csv").write_text("n\n1\n")
    (folder / "b.csv").write_text("n\n2\n3\n")
    dataset = local_dataset(folder, csv_types="text")
    provenance = Provenance()
    assert list(dataset.records(provenance)) == [{"n": "1"}, {"n": "2"}, {"n": "3"}]
    assert list(dataset.resume(2, provenance.table(3))) == [{"n": "3"}]
    assert dataset.describe()["csv_types"] == "text"
