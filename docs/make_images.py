"""Make the README's figures with lambdakit itself, from a run on lambdakit local.

    python docs/make_images.py          # writes docs/img/dashboard.png

The run pushes 600 records through the slow_flaky example with some latency jitter, a few
random function errors and item failures, and reserved concurrency below the requested
concurrency, so the dashboard shows throttles, retries and failures as well as successes.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import lambdakit
from lambdakit.results import plots

__all__ = ["main", "make_dashboard"]

HERE = Path(__file__).resolve().parent
FUNCTION_DIR = HERE.parent / "notebooks" / "functions" / "slow_flaky"


def make_dashboard(out: Path) -> Path:
    """Run the example on a fresh local service and save its dashboard as a PNG."""
    knobs = {"SLEEP_MS": 40, "JITTER_MS": 80, "FAIL_RATE": 0.05, "ITEM_FAIL_RATE": 0.01}
    records = [{"id": i, "value": i * 0.5} for i in range(600)]
    with lambdakit.LocalLambda(seed=0) as local, tempfile.TemporaryDirectory() as cache:
        client = lambdakit.make_client(endpoint_url=local.endpoint_url)
        lambdakit.deploy(client, "slow-flaky", FUNCTION_DIR, environment=knobs)
        client.put_function_concurrency(FunctionName="slow-flaky", ReservedConcurrentExecutions=6)
        result = lambdakit.run(
            "slow-flaky",
            records,
            batch_size=10,
            concurrency=8,
            retry={"max_attempts": 3, "base_delay": 0.1},
            cache=cache,
            endpoint_url=local.endpoint_url,
            progress=False,
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(plots.to_png(result.plot()))
    return out


def main() -> int:
    """Write every README figure."""
    print(make_dashboard(HERE / "img" / "dashboard.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
