"""No credential ever reaches an artefact: fake keys are planted in the environment, a job
runs end to end (local service, run, save, save_report, cache, CLI, papermill), and every
file it left behind is searched for them."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import lambdakit
from lambdakit.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ROOT / "notebooks" / "functions"

# Well-formed but fake, and distinctive enough that no other text contains them.
ACCESS_KEY_ID = "AKIALKPLANTEDFAKE7QZ"
SECRET_ACCESS_KEY = "lkPlantedSecret/FAKE+0123456789abcdefGHI"
SESSION_TOKEN = "FwoGZXIvYXdzELKPLANTEDSESSIONTOKEN" + "Zm9yIGxhbWJkYWtpdCB0ZXN0cw" * 6
# A function's own environment variable: GetFunction returns it, nothing else may show it.
FUNCTION_SECRET = "lkPlantedFunctionEnvSecret-0123456789"
SECRETS = {
    "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
    "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
    "AWS_SESSION_TOKEN": SESSION_TOKEN,
}


def _needles() -> dict[str, bytes]:
    """Each secret, plus its distinctive middle part and its base64 form."""
    found: dict[str, bytes] = {}
    for name, value in SECRETS.items():
        found[name] = value.encode()
        found[f"{name} (part)"] = value[4:20].encode()
        found[f"{name} (base64)"] = base64.b64encode(value.encode())[:24]
    return found


def _files(*roots: Path) -> Iterator[Path]:
    for root in roots:
        yield from (p for p in root.rglob("*") if p.is_file())


def _leaks(*roots: Path) -> list[str]:
    needles = _needles()
    leaks = []
    for path in _files(*roots):
        data = path.read_bytes()
        leaks += [f"{path}: {what}" for what, needle in needles.items() if needle in data]
    return leaks


@pytest.fixture
def planted(monkeypatch, tmp_path) -> dict[str, str]:
    """The fake credentials in os.environ, and nothing else from ~/.aws."""
    assert len(ACCESS_KEY_ID) == 20 and len(SECRET_ACCESS_KEY) == 40
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("LAMBDAKIT_ENDPOINT_URL", raising=False)
    return SECRETS


def test_the_needles_are_found_where_they_are(tmp_path):
    # The search itself must be able to fail.
    (tmp_path / "leak.txt").write_text(f"key={ACCESS_KEY_ID}")
    (tmp_path / "b64.bin").write_bytes(base64.b64encode(SESSION_TOKEN.encode()))
    leaks = _leaks(tmp_path)
    assert any("AWS_ACCESS_KEY_ID" in leak for leak in leaks)
    assert any("AWS_SESSION_TOKEN (base64)" in leak for leak in leaks)


def test_no_artefact_of_a_run_holds_a_credential(planted, tmp_path, capsys):
    state, cache = tmp_path / "local-state", tmp_path / "cache"
    records = [{"id": f"r{i}", "value": "bad" if i % 17 == 3 else i} for i in range(60)]
    data = tmp_path / "in.jsonl"
    data.write_text("".join(f'{{"id": "r{i}", "value": {i}}}\n' for i in range(30)))
    with lambdakit.LocalLambda(state_dir=state) as local:
        # The client signs every request with the planted keys (the standard chain).
        client = lambdakit.make_client(endpoint_url=local.endpoint_url)
        assert client._request_signer._credentials.access_key == ACCESS_KEY_ID
        # A layer built and attached through the planted chain: its zip, records and the
        # merged folder are searched like everything else.
        layer_root = tmp_path / "layer-src" / "python"
        layer_root.mkdir(parents=True)
        (layer_root / "lk_probe.py").write_text("VALUE = 1\n")
        layer = lambdakit.build_layer("secrets-layer", folder=layer_root.parent, client=client)
        lambdakit.deploy(client, "secrets-check", FUNCTIONS / "batch_processor", layers=[layer],
                         environment={"DB_PASSWORD": FUNCTION_SECRET})  # fmt: skip
        got = client.get_function(FunctionName="secrets-check")["Configuration"]
        assert got["Environment"]["Variables"]["DB_PASSWORD"] == FUNCTION_SECRET  # as on AWS
        assert [entry["Arn"] for entry in got["Layers"]] == [layer]
        result = lambdakit.run(
            "secrets-check",
            records,
            batch_size=8,
            concurrency=3,
            retry={"max_attempts": 2, "base_delay": 0.05},
            cache=cache,
            endpoint_url=local.endpoint_url,
            progress=False,
            output_dir=str(tmp_path / "outputs"),
        )
        assert result.summary()["failed_records"] == 4  # failures, log tails and all
        result.save(tmp_path / "saved")
        result.save_report(tmp_path / "report")
        cli_code = main(
            ["run", "secrets-check", str(data), "--endpoint-url", local.endpoint_url,
             "--cache-dir", str(cache), "--report", str(tmp_path / "cli-report"), "--no-progress"]
        )  # fmt: skip
        assert cli_code == 0
        assert main(["local", "logs", "secrets-check", "--state-dir", str(state)]) == 0
        shown = repr(result) + result._repr_html_() + repr(result.meta)
        shown += result.attempts.to_csv() + result.errors().to_csv()
        shown += capsys.readouterr().out
    assert (state / "server.log").is_file()
    assert any(cache.iterdir()) and any((tmp_path / "report").iterdir())

    assert _leaks(tmp_path) == []
    for what, needle in _needles().items():
        assert needle.decode() not in shown, what
    assert (state / "opt").is_dir()  # the layer was merged, and searched too
    # The function's variable is in its own record (GetFunction's source) and nowhere else:
    # not in logs, the server's log, reports, the cache or anything printed.
    records = set((state / "functions").glob("*.json"))
    holders = [p for p in _files(tmp_path) if FUNCTION_SECRET.encode() in p.read_bytes()]
    assert holders and set(holders) <= records, holders
    assert FUNCTION_SECRET not in shown


def test_papermill_notebook_output_holds_no_credential(planted, tmp_path):
    out_dir, executed = tmp_path / "run", tmp_path / "out.ipynb"
    command = [
        str(Path(sys.executable).parent / "papermill"), "notebooks/02_batch_run.ipynb",
        str(executed), "--cwd", "notebooks", "-k", "python3", "-p", "n_records", "60",
        "-p", "output_dir", str(out_dir), "-p", "cache_dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert executed.is_file() and (out_dir / "manifest.json").is_file()
    assert _leaks(tmp_path) == []
    for what, needle in _needles().items():
        assert needle.decode() not in done.stdout + done.stderr, what


def test_a_function_s_variables_show_in_get_function_and_in_no_error(lambda_client, local_lambda,
                                                                     make_function):  # fmt: skip
    from botocore.exceptions import ClientError

    from tests.local.test_local_api import raw

    secret = "lkVariableSecret-" + "9" * 12
    name = make_function("def handler(e, c):\n    raise RuntimeError('boom')\n",
                         Environment={"Variables": {"API_TOKEN": secret}})  # fmt: skip
    got = lambda_client.get_function(FunctionName=name)["Configuration"]["Environment"]
    assert got == {"Variables": {"API_TOKEN": secret}}
    refused = [
        {"API_TOKEN": secret, "x": "1"},  # a name the model's pattern refuses
        {"API_TOKEN": secret, "AWS_REGION": "eu-west-1"},  # a reserved name
        {"API_TOKEN": secret, "PADDING": "p" * 5000},  # over 4 KB
    ]
    messages = []
    for variables in refused:
        with pytest.raises(ClientError) as exc_info:
            lambda_client.update_function_configuration(
                FunctionName=name, Environment={"Variables": variables}
            )
        messages.append(str(exc_info.value))
    for body in ({"Environment": {"Variables": {"API_TOKEN": 12345678987654}}},
                 {"Environment": {"Variables": [secret]}}):  # fmt: skip
        status, _, reply = raw(local_lambda, "PUT", f"/2015-03-31/functions/{name}/configuration",
                               json.dumps(body).encode())  # fmt: skip
        assert status == 400
        messages.append(json.dumps(reply))
    reply = lambda_client.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
    messages.append(
        reply["Payload"].read().decode() + base64.b64decode(reply["LogResult"]).decode()
    )
    assert main(["local", "logs", name, "--state-dir", str(local_lambda.state_dir)]) == 0
    for message in messages:
        assert secret not in message and "12345678987654" not in message, message
    assert len(messages) == 6
    logs = "".join(
        p.read_text(errors="replace")
        for p in (local_lambda.state_dir / "logs").rglob("*")
        if p.is_file()
    )
    assert "boom" in logs and secret not in logs
    assert secret not in local_lambda.server_log.read_text()
