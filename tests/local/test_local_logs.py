"""START/END/REPORT formatting, bounded per-invocation capture, and log groups on disk."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from lambdakit.errors import InvalidInput
from lambdakit.local.logs import (
    HEAD_BYTES,
    TAIL_BYTES,
    InvocationOutput,
    LogStream,
    format_end,
    format_report,
    format_start,
    log_group_dir,
    read_logs,
    stream_name,
)

RID = "8f9e0d1c-2b3a-4c5d-6e7f-8091a2b3c4d5"


def test_start_and_end_lines_match_lambda():
    assert format_start(RID, "$LATEST") == f"START RequestId: {RID} Version: $LATEST"
    assert format_start(RID, "3") == f"START RequestId: {RID} Version: 3"
    assert format_end(RID) == f"END RequestId: {RID}"


def test_report_line_warm_cold_and_failures():
    warm = format_report(RID, duration_ms=19.071, memory_size_mb=128, max_memory_used_mb=56)
    assert warm == (
        f"REPORT RequestId: {RID}\tDuration: 19.07 ms\tBilled Duration: 20 ms\t"
        "Memory Size: 128 MB\tMax Memory Used: 56 MB\t"
    )
    cold = format_report(
        RID, duration_ms=19.07, memory_size_mb=128, max_memory_used_mb=56, init_duration_ms=108.385
    )
    assert cold.endswith("Max Memory Used: 56 MB\tInit Duration: 108.39 ms\t")
    timeout = format_report(
        RID, duration_ms=3000.0, memory_size_mb=128, max_memory_used_mb=40, status="timeout"
    )
    assert timeout.endswith("Billed Duration: 3000 ms\tMemory Size: 128 MB\t"
                            "Max Memory Used: 40 MB\tStatus: timeout\t")  # fmt: skip
    error = format_report(
        RID, duration_ms=0.2, memory_size_mb=256, max_memory_used_mb=40,
        init_duration_ms=50.0, status="error", error_type="Runtime.ExitError",
    )  # fmt: skip
    assert error.endswith("Init Duration: 50.00 ms\tStatus: error\tError Type: Runtime.ExitError\t")
    assert "Billed Duration: 1 ms" in error  # never less than 1 ms


def test_invocation_output_keeps_everything_when_small():
    output = InvocationOutput()
    output.append(b"one\ntw")
    output.append(b"o\nthree\n")
    assert output.lines() == ["one", "two", "three"]
    assert output.size == len(b"one\ntwo\nthree\n")


def test_invocation_output_keeps_head_and_exact_tail_and_says_what_it_dropped():
    output = InvocationOutput()
    lines = [f"line {i:07d}".encode() + b"\n" for i in range(100_000)]  # 1.3 MB in small writes
    for line in lines:
        output.append(line)
    total = sum(map(len, lines))
    assert output.size == total
    kept = output.lines()
    marker = [line for line in kept if line.startswith("[lambdakit] ")]
    assert len(marker) == 1
    dropped = int(marker[0].split()[1])
    assert dropped == total - HEAD_BYTES - TAIL_BYTES
    assert kept[-1] == "line 0099999"
    tail_text = "\n".join(kept[kept.index(marker[0]) + 1 :]) + "\n"
    assert b"".join(lines).decode().endswith(tail_text)
    assert kept[0] == "line 0000000"


def test_invocation_output_bounds_one_huge_write():
    output = InvocationOutput()
    output.append(b"x" * (10 * 1024 * 1024) + b"\nthe end\n")
    kept = output.lines()
    assert kept[-1] == "the end"
    assert sum(len(line) for line in kept) < HEAD_BYTES + TAIL_BYTES + 200


def test_stream_name_and_group_folder(tmp_path):
    at = 1_764_000_000.0  # 2025-11-24
    assert stream_name("$LATEST", "ab12", now=at) == "2025/11/24/[$LATEST]ab12"
    assert log_group_dir(tmp_path, "fn") == tmp_path / "logs" / "fn"
    for bad in ("", "..", "a/b"):
        with pytest.raises(InvalidInput):
            log_group_dir(tmp_path, bad)


def test_streams_are_read_back_merged_in_time_order(tmp_path):
    one = LogStream(tmp_path, "fn", "2026/01/01/[$LATEST]aaaa")
    two = LogStream(tmp_path, "fn", "2026/01/01/[3]bbbb")
    one.write(["first", "second"], at=100.0)
    two.write(["third"], at=101.0)
    one.write(["fourth"], at=102.0)
    events = read_logs(tmp_path, "fn")
    assert [e.message for e in events] == ["first", "second", "third", "fourth"]
    assert [e.stream for e in events][2] == "2026/01/01/[3]bbbb"
    assert [e.message for e in read_logs(tmp_path, "fn", tail=2)] == ["third", "fourth"]
    assert read_logs(tmp_path, "fn", tail=0) == []
    assert read_logs(tmp_path, "other") == []
    line = events[0].format()
    assert line == "1970-01-01T00:01:40.000+00:00 2026/01/01/[$LATEST]aaaa first"
    with pytest.raises(InvalidInput):
        read_logs(tmp_path, "fn", tail=-1)


def test_stream_rotates_and_tail_spans_the_rotation(tmp_path):
    stream = LogStream(tmp_path, "fn", "2026/01/01/[$LATEST]cccc", max_stream_bytes=4096)
    for i in range(1000):
        stream.write([f"message {i:04d} " + "z" * 20], at=1000.0 + i)
    files = sorted(p.name for p in log_group_dir(tmp_path, "fn").iterdir())
    assert files == ["2026-01-01-[$LATEST]cccc.log", "2026-01-01-[$LATEST]cccc.log.1"]
    assert all(p.stat().st_size <= 4096 for p in log_group_dir(tmp_path, "fn").iterdir())
    kept = [e.message for e in read_logs(tmp_path, "fn")]
    assert kept == [f"message {i:04d} " + "z" * 20 for i in range(1000 - len(kept), 1000)]
    current = (log_group_dir(tmp_path, "fn") / "2026-01-01-[$LATEST]cccc.log").read_text()
    count = len(kept) - 5
    assert current.count("\n") < count  # so the tail reaches into the rotated file
    assert [e.message for e in read_logs(tmp_path, "fn", tail=count)] == kept[-count:]


def test_group_keeps_only_the_newest_streams(tmp_path):
    group = log_group_dir(tmp_path, "fn")
    for i in range(5):
        stream = LogStream(tmp_path, "fn", f"2026/01/01/[$LATEST]s{i}", max_streams=3)
        stream.write([f"m{i}"], at=1000.0 + i)
        # mtime decides which stream is oldest; make the order unambiguous.
        os.utime(stream.path, (time.time() - 100 + i, time.time() - 100 + i))
    names = sorted(p.name for p in group.iterdir())
    assert names == [f"2026-01-01-[$LATEST]s{i}.log" for i in (2, 3, 4)]
    assert [e.message for e in read_logs(tmp_path, "fn")] == ["m2", "m3", "m4"]


def test_unreadable_lines_are_skipped_not_fatal(tmp_path):
    group = log_group_dir(tmp_path, "fn")
    group.mkdir(parents=True)
    (group / "2026-01-01-[$LATEST]dddd.log").write_bytes(b"garbage\n5\tok\n\xff\xfe\n")
    assert [e.message for e in read_logs(tmp_path, "fn")] == ["ok"]
    assert isinstance(read_logs(Path(tmp_path), "fn", tail=5)[0].timestamp_ms, int)
