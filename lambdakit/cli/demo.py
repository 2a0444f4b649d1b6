"""The demo and the lab: the example notebooks run against a `lambdakit local` of their own.

    run_demo()   # local service + deploy + papermill 02_batch_run -> runs/demo-<timestamp>/
    run_lab()    # local service + JupyterLab on notebooks/, pointed at it

Both need a clone of the repository (the notebooks and example functions live beside the
package, not inside it). The `lambdakit demo` and `lambdakit lab` commands render the results.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lambdakit.errors import InvalidInput

__all__ = [
    "DEMO_FUNCTION",
    "ENDPOINT_ENV",
    "DemoResult",
    "lab_arguments",
    "notebooks_dir",
    "run_demo",
    "run_lab",
]

log = logging.getLogger("lambdakit.cli.demo")

ENDPOINT_ENV = "LAMBDAKIT_ENDPOINT_URL"  # the notebooks use this service when it is set
DEMO_FUNCTION = ("enrich-orders", "functions/enrich_orders")  # name, folder under notebooks/
BATCH_NOTEBOOK = "02_batch_run.ipynb"


@dataclass(frozen=True)
class DemoResult:
    """What a demo run left behind: its folder, the executed notebook, manifest and plots."""

    folder: Path
    notebook: Path
    manifest: dict[str, Any]
    plots: tuple[Path, ...]

    @property
    def summary(self) -> dict[str, Any]:
        """The run's summary, as recorded in manifest.json."""
        return dict(self.manifest.get("summary") or {})


def notebooks_dir() -> Path:
    """The repository's notebooks/ folder (beside the package in a clone)."""
    folder = Path(__file__).resolve().parents[2] / "notebooks"
    if not (folder / BATCH_NOTEBOOK).is_file():
        raise InvalidInput(
            f"the example notebooks are not in {folder}: run this from a clone of the "
            "lambdakit repository installed with `pip install -e .[dev]` (or `make demo`)"
        )
    return folder


def _timestamp() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")


def run_demo(
    runs_dir: str | os.PathLike[str] = "runs",
    *,
    n_records: int = 300,
    batch_size: int = 25,
    concurrency: int = 4,
    kernel_name: str = "python3",
) -> DemoResult:
    """Start lambdakit local, deploy the example, run 02_batch_run through papermill.

    Everything lands in `runs_dir/demo-<UTC timestamp>/`: the report (manifest.json,
    tables, PNGs, outputs), the executed notebook, and the local service's state and logs.
    """
    import papermill

    from lambdakit.aws.connection import make_client
    from lambdakit.aws.deploy import deploy
    from lambdakit.local import LocalLambda

    notebooks = notebooks_dir()
    folder = Path(runs_dir).resolve() / f"demo-{_timestamp()}"
    if folder.exists():
        raise InvalidInput(f"{folder} already exists: wait a second and run the demo again")
    folder.mkdir(parents=True)
    executed = folder / BATCH_NOTEBOOK
    name, function_dir = DEMO_FUNCTION
    with LocalLambda(state_dir=folder / "local-state") as local:
        client = make_client(endpoint_url=local.endpoint_url)
        deployed = deploy(client, name, notebooks / function_dir)
        log.info("deployed %s (%s)", name, deployed.action)
        papermill.execute_notebook(
            str(notebooks / BATCH_NOTEBOOK),
            str(executed),
            parameters={
                "endpoint_url": local.endpoint_url,
                "function_name": name,
                "function_dir": function_dir,
                "batch_size": batch_size,
                "concurrency": concurrency,
                "n_records": n_records,
                "output_dir": str(folder),
            },
            cwd=str(notebooks),
            kernel_name=kernel_name,
            progress_bar=False,
        )
    manifest = json.loads((folder / "manifest.json").read_text())
    plots = tuple(sorted(folder.glob("*.png")))
    return DemoResult(folder=folder, notebook=executed, manifest=manifest, plots=plots)


def lab_arguments(lab_args: tuple[str, ...], *, euid: int | None = None) -> list[str]:
    """The arguments for `jupyter lab`: `lab_args`, plus --allow-root when run as root."""
    euid = os.geteuid() if euid is None and hasattr(os, "geteuid") else euid
    if euid == 0 and "--allow-root" not in lab_args:
        log.warning("running as root: starting JupyterLab with --allow-root")
        return [*lab_args, "--allow-root"]
    return list(lab_args)


def run_lab(
    *,
    port: int = 9001,
    state_dir: str | os.PathLike[str] = "runs/lab-local-state",
    lab_args: tuple[str, ...] = (),
) -> int:
    """Start lambdakit local on `port`, then JupyterLab on notebooks/ pointed at it.

    Blocks until JupyterLab exits (Ctrl-C), then stops the service; returns Lab's exit code.
    Functions deployed from the notebooks persist in `state_dir` between sessions. The
    service is announced (`lambdakit local faults` finds it). As root, JupyterLab gets
    `--allow-root`, without which it refuses to start.
    """
    from lambdakit.local import LocalLambda

    notebooks = notebooks_dir()
    with LocalLambda(state_dir=Path(state_dir).resolve(), port=port, announce=True) as local:
        assert local.endpoint_url is not None
        env = dict(os.environ, **{ENDPOINT_ENV: local.endpoint_url})
        log.info("lambdakit local at %s; starting JupyterLab", local.endpoint_url)
        command = [sys.executable, "-m", "jupyter", "lab", f"--notebook-dir={notebooks}"]
        lab = subprocess.Popen([*command, *lab_arguments(lab_args)], env=env)
        try:
            return lab.wait()
        except KeyboardInterrupt:  # Ctrl-C: Lab would ask to confirm; we are stopping anyway
            return 130
        finally:
            # Also reached on SystemExit (the CLI turns SIGTERM into one): never orphan Lab.
            if lab.poll() is None:
                lab.terminate()
                try:
                    lab.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    lab.kill()
                    lab.wait()
