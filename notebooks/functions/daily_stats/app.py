"""A nightly job: daily statistics over a small dataset of meter readings.

Event (a schedule's Input; EventBridge Scheduler fills in the scheduled time):
  {"day": "<aws.scheduler.scheduled-time>",
   "readings": [{"station": "north", "hour": 0, "value": 4.2}, ...]}

Returns, and logs as one JSON line starting "daily-stats ":
  {"day": "2025-03-28", "readings": 72,
   "stations": {"north": {"count": 24, "mean": 5.1, "min": 3.9, "max": 6.7}, ...}}

A reading without a station or with a value that is not a number is counted in "skipped"
with its position, never silently dropped; an event without a readings list raises, so
Lambda reports a function error.
"""

from __future__ import annotations

import json
import math
from typing import Any


def summarise(readings: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-station count, mean, min and max of the readings' values (rounded to 3 places)."""
    by_station: dict[str, list[float]] = {}
    skipped = []
    for position, reading in enumerate(readings):
        station = reading.get("station") if isinstance(reading, dict) else None
        value = reading.get("value") if isinstance(reading, dict) else None
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not isinstance(station, str) or not number or not math.isfinite(value):
            skipped.append(position)
            continue
        by_station.setdefault(station, []).append(float(value))
    stations = {
        name: {
            "count": len(values),
            "mean": round(sum(values) / len(values), 3),
            "min": min(values),
            "max": max(values),
        }
        for name, values in sorted(by_station.items())
    }
    return {"readings": len(readings), "stations": stations, "skipped": skipped}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Summarise the event's readings for its day."""
    readings = event.get("readings") if isinstance(event, dict) else None
    if not isinstance(readings, list):
        raise ValueError("the event needs a 'readings' list")
    day = str(event.get("day") or "")[:10]  # the scheduled time's date, e.g. 2025-03-28
    result = {"day": day, **summarise(readings)}
    print("daily-stats " + json.dumps(result, sort_keys=True))
    return result
