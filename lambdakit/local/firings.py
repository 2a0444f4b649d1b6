"""What the scheduler did, on disk: firing history, dead letters, deliveries waiting to retry.

    scheduler/history/_<group>/_<name>.jsonl   one line per attempt, missed stretch, deletion,
                                               and function result (kept after a deletion)
    scheduler/pending/<execution id>.json      a firing waiting for its next attempt
    dead-letters/_<queue name>.jsonl           what a DeadLetterConfig queue would receive
                                               (schedules', and functions' dead letters and
                                               SQS/SNS destinations: destinations.py)

History rows (`read_history` folds each function result into its attempt):

| outcome | when |
|---|---|
| `delivered` | Lambda accepted the asynchronous invoke; `request_id` is its request id |
| `failed` | Lambda refused it (`error_code`, `error_message`); `next_attempt_at` says when again |
| `dead_lettered` | the last attempt failed: a record went to the DeadLetterConfig queue |
| `dropped` | the last attempt failed and there is no DeadLetterConfig (AWS drops it too) |
| `missed` | runs not fired while the service was down (`count` of them, first and last) |
| `deleted` | ActionAfterCompletion DELETE removed the schedule after its last run |

`function_outcome` of a delivered attempt is `ok`, `error` (after Lambda's own two
retries) or `gone` (the function was deleted first) once the function has run; None before.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DeadLetters",
    "Delivery",
    "History",
    "dead_letter_queues",
    "iso",
    "read_dead_letters",
    "read_history",
]

log = logging.getLogger("lambdakit.local.firings")


def iso(stamp: float | None) -> str | None:
    """An epoch time as ISO 8601 UTC with milliseconds ('...Z'), None for None."""
    if stamp is None:
        return None
    moment = dt.datetime.fromtimestamp(stamp, dt.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _history_path(state_dir: Path, group: str, name: str) -> Path:
    return Path(state_dir) / "scheduler" / "history" / f"_{group}" / f"_{name}.jsonl"


def _queue_path(state_dir: Path, queue: str) -> Path:
    return Path(state_dir) / "dead-letters" / f"_{queue}.jsonl"


def _append(path: Path, row: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(row, sort_keys=True) + "\n"
    with path.open("a", encoding="utf-8") as out:
        out.write(line)  # one write per row: a reader never sees half of one


def _lines(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError:
            log.error("%s line %d is not JSON; skipped", path, number)
    return rows


class History:
    """Appends a schedule's history rows (see the module docstring)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)

    def append(self, group: str, name: str, row: dict[str, Any]) -> None:
        """Add one row to a schedule's history."""
        _append(_history_path(self.state_dir, group, name), {"schedule": name, "group": group,
                                                              **row})  # fmt: skip


def read_history(state_dir: Path, name: str, group: str = "default") -> list[dict[str, Any]]:
    """A schedule's history, oldest first, function results folded into their attempts."""
    rows = _lines(_history_path(state_dir, group, name))
    results = {r["request_id"]: r for r in rows if r.get("kind") == "result"}
    out = []
    for row in rows:
        if row.get("kind") == "result":
            continue
        row.pop("kind", None)
        result = results.get(row.get("request_id") or "")
        row["function_outcome"] = result["function_outcome"] if result else None
        out.append(row)
    return out


class DeadLetters:
    """Appends dead-letter records, one file per DeadLetterConfig queue."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)

    def append(self, queue_arn: str, record: dict[str, Any]) -> Path:
        """Keep one record for the queue `queue_arn`; returns the file it went to."""
        path = _queue_path(self.state_dir, queue_arn.rsplit(":", 1)[-1])
        _append(path, {"QueueArn": queue_arn, **record})
        return path


def read_dead_letters(state_dir: Path, queue: str) -> list[dict[str, Any]]:
    """The dead-letter records of a queue (its name or ARN), oldest first."""
    return _lines(_queue_path(state_dir, queue.rsplit(":", 1)[-1]))


def dead_letter_queues(state_dir: Path) -> list[dict[str, Any]]:
    """Every queue with dead letters: QueueArn, records (how many), last (its newest Time)."""
    folder = Path(state_dir) / "dead-letters"
    queues = []
    for path in sorted(folder.glob("_*.jsonl")):
        rows = _lines(path)
        if rows:
            queues.append({"QueueArn": rows[-1].get("QueueArn", path.stem[1:]),
                           "records": len(rows), "last": rows[-1].get("Time")})  # fmt: skip
    return queues


@dataclass
class Delivery:
    """One firing of a schedule, from its first attempt until delivered or given up."""

    group: str
    name: str
    schedule_arn: str
    target: dict[str, Any]  # the schedule's Target when it fired (a later update leaves it)
    scheduled: float  # the run's scheduled time (epoch)
    due: float  # when the next attempt is to be made
    execution_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    attempt: int = 1  # the number of the next attempt
    first_attempt_at: float | None = None

    def to_json(self) -> str:
        """The on-disk form."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Delivery:
        """Inverse of to_json."""
        return cls(**json.loads(text))

    def save(self, directory: Path) -> None:
        """Persist, so a restart makes the attempts left."""
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{self.execution_id}.{uuid.uuid4().hex}.tmp"
        tmp.write_text(self.to_json())
        os.replace(tmp, directory / f"{self.execution_id}.json")

    def forget(self, directory: Path) -> None:
        """Remove the persisted form (delivered, or given up)."""
        (directory / f"{self.execution_id}.json").unlink(missing_ok=True)
