"""02_batch_run.ipynb under papermill (the CLI, as issue #6 states it) and `lambdakit demo`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from lambdakit.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = "notebooks/02_batch_run.ipynb"
PAPERMILL = Path(sys.executable).parent / "papermill"


def _papermill(out: Path, *params: str) -> subprocess.CompletedProcess:
    """Run the notebook through the venv's papermill CLI, from the repository root."""
    env = dict(os.environ)
    env.pop("LAMBDAKIT_ENDPOINT_URL", None)  # the notebook must start its own service
    command = [str(PAPERMILL), NOTEBOOK, str(out), *params, "--cwd", "notebooks", "-k", "python3"]
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def _errors(notebook: Path) -> list[str]:
    cells = nbformat.read(notebook, as_version=4).cells
    return [
        f"{o.get('ename')}: {o.get('evalue')}"
        for cell in cells
        if cell.cell_type == "code"
        for o in cell.outputs
        if o.output_type == "error"
    ]


def test_batch_run_writes_manifest_tables_and_plots(tmp_path):
    out_dir = tmp_path / "run"
    executed = tmp_path / "out.ipynb"
    done = _papermill(
        executed,
        "-p", "batch_size", "50", "-p", "concurrency", "4", "-p", "output_dir", str(out_dir),
        "-p", "cache_dir", str(tmp_path / "cache"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert _errors(executed) == []
    injected = [c for c in nbformat.read(executed, as_version=4).cells if c.cell_type == "code"]
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in injected)

    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert manifest["function"] == "enrich-orders"
    assert manifest["params"]["batch_size"] == 50
    assert manifest["params"]["concurrency"] == 4
    notebook_params = manifest["notebook"]["parameters"]
    assert notebook_params["batch_size"] == 50
    assert notebook_params["function_name"] == "enrich-orders"
    assert notebook_params["output_dir"] == str(out_dir)
    assert manifest["dataset_fingerprint"] and manifest["code_sha256"]

    batches = pd.read_csv(out_dir / "batches.csv")
    attempts = pd.read_parquet(out_dir / "attempts.parquet")
    assert len(batches) == 6  # 300 generated orders in batches of 50
    assert batches["records"].sum() == 300
    assert len(attempts) >= len(batches)
    assert set(attempts["batch"]) == set(batches["batch"])
    pngs = sorted(p.name for p in out_dir.glob("*.png"))
    assert len(pngs) >= 3 and "dashboard.png" in pngs
    assert all((out_dir / name).read_bytes().startswith(b"\x89PNG") for name in pngs)

    outputs = [json.loads(line) for line in (out_dir / "outputs.jsonl").open()]
    assert [o["record"] for o in outputs] == list(range(300))
    failed = set(pd.read_csv(out_dir / "errors.csv")["record"])
    assert {o["record"] for o in outputs if o["output"] is None} == failed
    assert manifest["summary"]["failed_records"] == len(failed)


def test_a_bad_parameter_fails_the_notebook_with_its_reason(tmp_path):
    done = _papermill(tmp_path / "out.ipynb", "-p", "target", "gcp")
    assert done.returncode != 0
    assert "target must be 'local' or 'aws'" in done.stderr


@pytest.mark.slow
def test_demo_runs_the_notebook_into_a_timestamped_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LAMBDAKIT_ENDPOINT_URL", raising=False)
    code = main(["demo", "--runs-dir", str(tmp_path), "--n-records", "80", "--batch-size", "20"])
    out = capsys.readouterr().out
    assert code == 0
    (folder,) = tmp_path.glob("demo-*")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["summary"]["records"] == 80 and manifest["summary"]["batches"] == 4
    assert manifest["notebook"]["parameters"]["n_records"] == 80
    assert (folder / "02_batch_run.ipynb").is_file() and _errors(
        folder / "02_batch_run.ipynb"
    ) == []
    assert (folder / "local-state" / "server.log").is_file()
    printed = [line.strip() for line in out.splitlines() if line.strip().endswith(".png")]
    assert len(printed) >= 3 and all(Path(p).is_file() for p in printed)
    assert f"run folder: {folder}" in out
