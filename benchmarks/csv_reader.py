"""Benchmark of the CSV reader: records/s of a local CSV file read as records, per csv_types.

Prints one JSON object with each figure beside its target; nothing is asserted.

    python benchmarks/csv_reader.py [--records 300000] [--repeat 3] [--csv-types exact text]

The file has eight columns of the kinds CSV exports hold: an integer id, a zero-padded zip
code, a name, a quoted note with a comma, an amount with two decimals ("19.90"), a float
score, a 20-digit account number and a column that is empty in every third row. It is read
with `Dataset.records()` only (no run, no serialisation), best of --repeat, so the figure is
the reader's own: records/s and microseconds per cell.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lambdakit.records.datasets import local_dataset

COLUMNS = 8
TARGETS = {"exact_vs_pandas_records_per_s": ">= 0.5 (lossless typing must not collapse)"}


def _write(path: Path, records: int) -> None:
    rng = random.Random(0)
    with path.open("w") as out:
        out.write("id,zip,name,note,amount,score,account,comment\n")
        for i in range(records):
            zip_code = f"{rng.randrange(100000):05d}"
            amount = f"{rng.randrange(100000) / 100:.2f}"
            score = repr(rng.random())
            account = str(rng.randrange(10**19, 10**20))
            comment = "" if i % 3 == 0 else f"c{i % 97}"
            out.write(
                f'{i},{zip_code},name-{i},"note {i % 13}, more",{amount},{score},'
                f"{account},{comment}\n"
            )


def _read(path: Path, csv_types: str | None) -> float:
    """Seconds to read every record of `path` (csv_types None: the reader's default)."""
    options = {} if csv_types is None else {"csv_types": csv_types}
    dataset = local_dataset(path, **options)
    started = time.perf_counter()
    count = sum(1 for _ in dataset.records())
    elapsed = time.perf_counter() - started
    if count == 0:
        raise RuntimeError(f"{path} gave no records")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--csv-types", nargs="*", default=None, help="default: every choice")
    args = parser.parse_args(argv)
    takes_types = "csv_types" in inspect.signature(local_dataset).parameters
    if args.csv_types is not None:
        modes: list[str | None] = list(args.csv_types)
    elif takes_types:
        from lambdakit.records.formats import CSV_TYPES

        modes = list(CSV_TYPES)
    else:
        modes = [None]  # a lambdakit before csv_types: its one way
    report: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "load_average_1m": round(os.getloadavg()[0], 2),
        "records": args.records,
        "columns": COLUMNS,
    }
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.csv"
        _write(path, args.records)
        report["file_mb"] = round(path.stat().st_size / 2**20, 1)
        figures: dict[str, Any] = {}
        for mode in modes:
            best = min(_read(path, mode) for _ in range(args.repeat))
            figures[mode or "default"] = {
                "seconds": round(best, 3),
                "records_per_s": round(args.records / best),
                "us_per_cell": round(best / (args.records * COLUMNS) * 1e6, 3),
            }
        report["csv_types"] = figures
    if "exact" in figures and "pandas" in figures:
        report["exact_vs_pandas_records_per_s"] = round(
            figures["exact"]["records_per_s"] / figures["pandas"]["records_per_s"], 3
        )
        report["target_exact_vs_pandas_records_per_s"] = TARGETS["exact_vs_pandas_records_per_s"]
    report["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
