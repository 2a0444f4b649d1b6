"""RunResult: the complete record of a run (attempts, batches, failures, outputs), summarised."""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lambdakit.errors import InvalidInput
from lambdakit.invocation import BATCH_CANCELLED, BATCH_NOT_RUN, BATCH_STATUSES, OK, SUPERSEDED
from lambdakit.results.metrics import latency_percentiles, rate, share_text
from lambdakit.results.outputs import OutputStore
from lambdakit.results.tables import (
    ATTEMPT_COLUMNS,
    BATCH_COLUMNS,
    FAILURE_COLUMNS,
    NOT_RUN_COLUMNS,
    REJECTION_COLUMNS,
    SUMMARY_KEYS,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from lambdakit.results.cost import PriceTable

__all__ = ["OutputStore", "RunResult"]

# Batch statuses every view names even at 0; the others only when some batch has them.
_ALWAYS_SHOWN = tuple(s for s in BATCH_STATUSES if s not in (BATCH_CANCELLED, BATCH_NOT_RUN))
_TEXT_ERROR_COLUMNS = ("error_type", "error_message", "log_excerpt")
_LOG_NOISE = ("START RequestId:", "END RequestId:", "REPORT RequestId:", "INIT_START")


# Columns added since results were first saved: a table without them (a result saved by an
# older lambdakit) gets them empty instead of being refused.
_LATER_COLUMNS = ("throttle_reason", "rate_limit", "memory_mb", "backup")


def _conform(frame: pd.DataFrame, schema: dict[str, str], name: str) -> pd.DataFrame:
    """Check a table has the documented columns; give an empty one the full schema."""
    if not isinstance(frame, pd.DataFrame):
        raise InvalidInput(f"RunResult {name} must be a pandas DataFrame, got {type(frame)}")
    missing = [c for c in schema if c not in frame.columns]
    if missing and len(frame) and not set(missing) <= set(_LATER_COLUMNS):
        raise InvalidInput(f"RunResult {name} lacks the columns {missing} (docs/architecture.md)")
    if not missing:
        return frame
    frame = frame.copy()
    for column in missing:
        frame[column] = pd.Series(dtype=schema[column], index=frame.index)
    return frame[[*schema, *(c for c in frame.columns if c not in schema)]]


def _log_excerpt(log_tail: Any, lines: int = 8, chars: int = 800) -> str | None:
    """The last lines of a log tail that are not Lambda's START/END/REPORT bookkeeping."""
    if not isinstance(log_tail, str) or not log_tail.strip():
        return None
    kept = [ln for ln in log_tail.splitlines() if ln.strip() and not ln.startswith(_LOG_NOISE)]
    return "\n".join(kept[-lines:])[-chars:] or None


def _objects(values: pd.Series) -> pd.Series:
    """An object column with None (not NaN) where values are missing."""
    missing = values.isna().to_numpy()
    cells = [None if gone else v for v, gone in zip(values.to_list(), missing, strict=True)]
    return pd.Series(cells, index=values.index, dtype=object)


def _reopen(described: dict[str, Any]) -> Any:
    """The files a saved result's manifest names (a path, folder, glob or s3:// URL), or None."""
    from lambdakit.records.datasets import is_s3_url, local_dataset

    path = described["path"]
    columns = described.get("columns")
    if is_s3_url(path):
        from lambdakit.aws.s3 import open_dataset  # aws is below results

        return open_dataset(path, columns=columns)
    if not (Path(path).exists() or any(c in path for c in "*?[")):
        return None
    return local_dataset(path, columns=columns)


class RunResult:
    """Everything a run did: one row per attempt and per batch, failures, outputs, metadata.

    `attempts` and `batches` follow the columns in docs/architecture.md; `failures` has
    one row per record that failed for good, `rejections` one per record validation
    refused, `not_run` one per record read but never done (the run stopped first).
    `records` counts every input record, rejected ones included, and every record of the
    source when its length was known (records never read are not run). `source` is what
    the run read, kept to read those records again (a saved result has only its path).
    """

    def __init__(
        self,
        *,
        attempts: pd.DataFrame,
        batches: pd.DataFrame,
        failures: pd.DataFrame,
        rejections: pd.DataFrame,
        outputs: OutputStore,
        records: int,
        meta: dict[str, Any],
        not_run: pd.DataFrame | None = None,
        source: Any = None,
    ) -> None:
        self.attempts = _conform(attempts, ATTEMPT_COLUMNS, "attempts")
        self.batches = _conform(batches, BATCH_COLUMNS, "batches")
        self.failures = _conform(failures, FAILURE_COLUMNS, "failures")
        self.rejections = _conform(rejections, REJECTION_COLUMNS, "rejections")
        if not_run is None:
            not_run = pd.DataFrame(columns=list(NOT_RUN_COLUMNS))
        self.not_run = _conform(not_run, NOT_RUN_COLUMNS, "not_run")
        self.source = source
        if not isinstance(outputs, OutputStore):
            raise InvalidInput(f"RunResult outputs must be an OutputStore, got {type(outputs)}")
        self.store = outputs
        if int(records) < 0:
            raise InvalidInput(f"RunResult records must be >= 0, got {records!r}")
        self.records = int(records)
        self.meta = dict(meta)

    # -- counts ---------------------------------------------------------------------------

    def batch_counts(self) -> dict[str, int]:
        """Batches per status, for every status of BATCH_STATUSES in its order (0s included).

        The one count of batches that print(result), summary() and the card all show.
        """
        counts = self.batches["status"].value_counts()
        return {status: int(counts.get(status, 0)) for status in BATCH_STATUSES}

    def batch_counts_text(self, separator: str = ", ") -> str:
        """ "ok 7, partial 5, failed 0, cached 0" (cancelled and not_run only when present)."""
        counts = self.batch_counts()
        shown = [s for s in BATCH_STATUSES if s in _ALWAYS_SHOWN or counts[s]]
        return separator.join(f"{status} {counts[status]:,}" for status in shown)

    def _ok_records(self) -> int:
        return int(pd.to_numeric(self.batches["ok_records"], errors="coerce").fillna(0).sum())

    def _failed_record_count(self) -> int:
        return int(self.failures["record"].nunique())

    def _not_run_count(self) -> int:
        """Records neither ok, failed nor rejected: the run stopped before them."""
        rejected = int(self.rejections["record"].nunique())
        return max(0, self.records - self._ok_records() - self._failed_record_count() - rejected)

    def elapsed_s(self) -> float:
        """Wall time of the run: meta's elapsed_s, else the last attempt's end."""
        elapsed = self.meta.get("elapsed_s")
        if isinstance(elapsed, (int, float)) and math.isfinite(elapsed) and elapsed >= 0:
            return float(elapsed)
        ends = pd.to_numeric(self.attempts["end_s"], errors="coerce").dropna()
        return float(ends.max()) if len(ends) else 0.0

    def summary(self) -> dict[str, Any]:
        """Run totals with exactly the keys of SUMMARY_KEYS.

        - records: every input record, rejected ones included.
        - <status>_batches: the batches of each status of BATCH_STATUSES (ok: every record
          ok; partial: some failed for good; failed: all failed for good; cached: from the
          cache; cancelled: the run stopped first; not_run: the endpoint was unreachable).
        - ok_records: records with an output (cached ones included);
          failed_records: records that failed for good; rejected_records: refused by
          validation, never sent; not_run_records: neither (the run stopped before them:
          read but unfinished, or never read from a source of known length), so that
          ok + failed + rejected + not run = records.
        - failed_record_rate: failed_records / records, the run's headline failure rate
          (0.0 with no records).
        - invocations: attempts made; retries: attempts after a batch's first;
          throttles: attempts answered 429.
        - failed_attempt_rate: failed attempts / invocations, i.e. how often a call to
          Lambda did not succeed, retried ones and partly failed batches included (0.0
          with no invocations).
        - records_per_s = (records - not_run_records) / elapsed_s and invocations_per_s =
          invocations / elapsed_s, end to end (0.0 for an instant run).
        - latency_p*_s: percentiles of every attempt's latency, failed ones included
          (NaN with no attempts).
        """
        attempts = self.attempts
        invocations = len(attempts)
        elapsed = self.elapsed_s()
        p50, p95, p99 = latency_percentiles(attempts["latency_s"])
        # A superseded attempt (a hedged batch's slower twin) did not fail: it lost a race.
        failed_attempts = int((~attempts["outcome"].isin((OK, SUPERSEDED))).sum())
        failed_records = self._failed_record_count()
        not_run = self._not_run_count()
        values: dict[str, Any] = {
            "records": self.records,
            "batches": len(self.batches),
            **{f"{status}_batches": n for status, n in self.batch_counts().items()},
            "ok_records": self._ok_records(),
            "rejected_records": int(self.rejections["record"].nunique()),
            "failed_records": failed_records,
            "not_run_records": not_run,
            "failed_record_rate": rate(failed_records, self.records),
            "invocations": invocations,
            "retries": int((pd.to_numeric(attempts["attempt"]) > 1).sum()),
            "throttles": int(attempts["throttled"].fillna(False).astype(bool).sum()),
            "ladder_batches": int(self.batches["memory_mb"].notna().sum()),
            "failed_attempt_rate": rate(failed_attempts, invocations),
            "elapsed_s": elapsed,
            "records_per_s": (self.records - not_run) / elapsed if elapsed > 0 else 0.0,
            "invocations_per_s": invocations / elapsed if elapsed > 0 else 0.0,
            "latency_p50_s": p50,
            "latency_p95_s": p95,
            "latency_p99_s": p99,
        }
        return {key: values[key] for key in SUMMARY_KEYS}

    def __getstate__(self) -> dict[str, Any]:
        from lambdakit.records.datasets import Dataset

        state = self.__dict__.copy()
        if isinstance(state.get("source"), Dataset):
            # Its objects carry open S3 clients: a copy reopens the files meta["source"]
            # names when it needs them, as a loaded result does.
            state["source"] = None
        return state

    # -- records --------------------------------------------------------------------------

    def outputs(self) -> Iterator[Any]:
        """Iterate one output per input record in input order; None for failed/rejected."""
        return self.store.get_all(self.records)

    def errors(self) -> pd.DataFrame:
        """One row per failed or rejected record: record, batch, error_type, error_message,
        log_excerpt (rejections have error_type "Rejected", their reason and no batch).

        A run over files adds where each record came from: `source` (the file's path or
        s3:// URL), `line` (the line a JSONL/CSV record starts on) and `row` (its place in
        that object, from 1).
        """
        failures = self.failures
        failed = pd.DataFrame(
            {
                "record": failures["record"].astype(np.int64),
                "batch": failures["batch"].astype("Int64"),
                "error_type": _objects(failures["error_type"]),
                "error_message": _objects(failures["error_message"]),
                "log_excerpt": [_log_excerpt(v) for v in failures["log_tail"]],
            }
        )
        rejected = pd.DataFrame(
            {
                "record": self.rejections["record"].astype(np.int64),
                "batch": pd.array([pd.NA] * len(self.rejections), dtype="Int64"),
                "error_type": "Rejected",
                "error_message": _objects(self.rejections["reason"]),
                "log_excerpt": None,
            }
        )
        frames = [f for f in (failed, rejected) if len(f)] or [failed]
        table = pd.concat(frames, ignore_index=True)
        table = table.sort_values("record", kind="stable").reset_index(drop=True)
        # Text columns as objects with None, whatever string dtype pandas inferred.
        table = table.assign(**{c: _objects(table[c]) for c in _TEXT_ERROR_COLUMNS})
        return self._with_provenance(table)

    def _with_provenance(self, table: pd.DataFrame) -> pd.DataFrame:
        """`table` (with a `record` column) plus source, line and row, for a run over files."""
        objects = (self.meta.get("source") or {}).get("objects_read")
        if not objects:
            return table
        from lambdakit.records.datasets import locate

        found = locate(objects, table["record"].tolist())
        return table.assign(
            source=pd.Series([f[0] for f in found], index=table.index, dtype=object),
            line=pd.array([f[1] for f in found], dtype="Int64"),
            row=pd.array([f[2] for f in found], dtype="Int64"),
        )

    def failed_records(
        self, include_not_run: bool = False, *, provenance: bool = False, unreadable: bool = True
    ) -> pd.Series | pd.DataFrame:
        """The inputs of failed and rejected records, indexed by input position, in order.

        Pass it to `lambdakit.run` to rerun only what failed (it iterates the records).
        `include_not_run=True` adds the records that did not run, those never read from
        the source included (read from it again: the in-memory source this result holds,
        or the files its manifest names), so a rerun takes exactly what is left.
        `provenance=True` gives a DataFrame instead: `input` plus, for a run over files,
        `source`, `line` and `row` (as in errors()), so each can be found in its file.

        A line of a file that could not be read as a record (not JSON, a CSV row of the wrong
        width) is a `BadLine` (its `text` and `reason`), never its text as a string: a rerun
        rejects it again with its reason. `unreadable=False` leaves those out (each is in
        errors(), with its line).
        """
        frames = [self.failures[["record", "input"]], self.rejections[["record", "input"]]]
        if include_not_run:
            frames += [self.not_run[["record", "input"]], self._never_read()]
        both = pd.concat([f for f in frames if len(f)] or frames[:1], ignore_index=True)
        both = both.drop_duplicates("record").sort_values("record", kind="stable")
        if not unreadable:
            from lambdakit.records.formats import BadLine

            both = both[[type(value) is not BadLine for value in both["input"]]]
        index = pd.Index(both["record"].astype(np.int64), name="record")
        inputs = pd.Series(both["input"].to_list(), index=index, dtype=object, name="input")
        if not provenance:
            return inputs
        frame = self._with_provenance(pd.DataFrame({"record": index, "input": inputs.values}))
        return frame.set_index("record")

    def _never_read(self) -> pd.DataFrame:
        """(record, input) of the records past those read, read from the source again."""
        read = self.meta.get("records_read")
        if not isinstance(read, int) or read >= self.records:
            return pd.DataFrame(columns=["record", "input"])
        from lambdakit.records.sources import records_from

        source = self.source
        described = self.meta.get("source") or {}
        if source is None and described.get("path"):
            source = _reopen(described)
        missing = self.records - read
        if source is None:
            raise InvalidInput(
                f"{missing:,} records were never read from the source "
                f"({described.get('type', 'unknown')}), and this result does not hold it: "
                f"rerun from record {read:,} of the source instead"
            )
        from lambdakit.records.datasets import Dataset

        objects_read = described.get("objects_read")
        if isinstance(source, Dataset) and objects_read:
            rest = source.resume(read, objects_read)  # objects fully read are skipped
        else:
            rest = records_from(source, read)
        inputs = list(itertools.islice(rest, missing))  # a BadLine stays one, as when read
        records = range(read, read + len(inputs))
        return pd.DataFrame({"record": records, "input": pd.Series(inputs, dtype=object)})

    # -- cost, plots, reports --------------------------------------------------------------

    def cost(self, prices: PriceTable | str | None = None) -> dict[str, float]:
        """Estimated USD cost (see lambdakit.results.cost); prices default to the run's region."""
        from lambdakit.results.cost import PriceTable, run_cost

        table = PriceTable.coerce(prices, region=self.region)
        return run_cost(self.attempts, table, memory_mb=self.meta.get("memory_mb"))

    @property
    def region(self) -> str | None:
        """The region of the function's ARN (or meta's `region`)."""
        arn = str(self.meta.get("function_arn") or "")
        parts = arn.split(":")
        return self.meta.get("region") or (parts[3] if len(parts) > 3 and parts[3] else None)

    def plot(self, kind: str = "dashboard", **options: Any) -> Figure:
        """A Figure of the run: the dashboard, or one of its panels by name.

        `kind` is one of "dashboard", "throughput", "latency", "latency_distribution",
        "errors", "timeline", "concurrency" or "cost"; `options` go to that plot
        (e.g. `bin_s=` for throughput, `window=` for latency and errors).
        """
        from lambdakit.results.plots import by_name

        return by_name(kind)(self, **options)

    def save_report(
        self,
        directory: str | os.PathLike[str],
        *,
        extra: dict[str, Any] | None = None,
        shared: bool = False,
        s3_endpoint_url: str | None = None,
        profile: str | None = None,
        region: str | None = None,
    ) -> Path | str:
        """Write PNGs, batches/attempts/errors (Parquet + CSV), manifest.json and the saved
        result (`result/`) to `directory`, a folder or an s3:// URL (the same layout).

        `extra` is merged into manifest.json (credentials scrubbed), e.g. a notebook's
        parameters: `save_report(folder, extra={"notebook": {"parameters": params}})`. The
        folder is private (0700, files 0600) unless `shared=True` (then the umask decides).
        S3 is reached with `profile` / `region`, at `s3_endpoint_url` or
        $AWS_ENDPOINT_URL_S3 when set.
        """
        from lambdakit.results.report import save_report

        where = {"endpoint_url": s3_endpoint_url, "profile": profile, "region": region}
        return save_report(self, directory, extra=extra, shared=shared, **where)

    def save(
        self,
        path: str | os.PathLike[str],
        *,
        shared: bool = False,
        s3_endpoint_url: str | None = None,
        profile: str | None = None,
        region: str | None = None,
    ) -> Path | str:
        """Save to a folder or an s3:// URL (Parquet tables, outputs, meta.json);
        `RunResult.load` reads it.

        Everything round-trips exactly (records' inputs with their types: Decimal,
        datetimes, tuples, wide ints...), except meta values that look like credentials,
        which are redacted before they reach disk, and input values of a type with no JSON
        form, kept as their repr text (with a warning). Private (0700/0600) unless `shared`.
        """
        from lambdakit.results.storage import save_result

        where = {"endpoint_url": s3_endpoint_url, "profile": profile, "region": region}
        return save_result(self, path, shared=shared, **where)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        s3_endpoint_url: str | None = None,
        profile: str | None = None,
        region: str | None = None,
    ) -> RunResult:
        """Load a RunResult written by `save()` or `save_report()`, from a folder or an
        s3:// URL."""
        from lambdakit.results.storage import load_result

        where = {"endpoint_url": s3_endpoint_url, "profile": profile, "region": region}
        return load_result(path, cls, **where)

    # -- display ---------------------------------------------------------------------------

    def __repr__(self) -> str:
        meta = self.meta
        name = str(meta.get("function") or meta.get("function_arn") or "?")
        if meta.get("qualifier"):
            name += f":{meta['qualifier']}"
        versions = ", ".join(str(v) for v in meta.get("executed_versions") or []) or "none"
        ok, failed = self._ok_records(), self._failed_record_count()
        rejected = int(self.rejections["record"].nunique())
        record_parts = [f"ok {ok}", f"failed {failed}", f"rejected {rejected}"]
        not_run = self.records - ok - failed - rejected
        if not_run > 0:
            record_parts.append(f"not run {not_run}")
        lines = [
            f"RunResult {name} (executed versions: {versions})",
            f"  records: {self.records} ({', '.join(record_parts)})",
            f"  failed records: {share_text(failed, self.records)}",
            f"  batches: {len(self.batches)} ({self.batch_counts_text()})",
        ]
        if meta.get("layers"):
            from lambdakit.results.report import layers_text

            lines.insert(1, f"  layers: {layers_text(meta['layers'])}")
        if meta.get("cancelled"):
            # As the summary card says it: a stop for tolerance, an outage or a source error
            # is not a cancel.
            reason = meta.get("stop_reason") or "cancelled"
            lines.append(f"  stopped ({reason}) before every batch ran")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from lambdakit.results.report import summary_card

        return summary_card(self)
