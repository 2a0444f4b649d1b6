"""Write the example notebooks from the cell sources below and execute them in place.

    python notebooks/build_notebooks.py            # every notebook
    python notebooks/build_notebooks.py 02 04      # the ones whose name starts so

The notebooks are committed with their outputs, produced by this script against a fresh
`lambdakit local` each (the notebooks start their own). Edit the cells here, not in the
.ipynb files, then rerun the script. nbval markers: cells whose text output is stable carry
`# NBVAL_CHECK_OUTPUT`; cells showing times, ids or figures carry `# NBVAL_IGNORE_OUTPUT`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

__all__ = ["NOTEBOOKS", "build", "main"]

HERE = Path(__file__).resolve().parent
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
LANGUAGE_INFO = {"name": "python", "pygments_lexer": "ipython3"}

# Shared by every notebook: where to run, and a local service when none was given.
CONNECT = """\
local = None
if target == "local" and not endpoint_url:
    local = lambdakit.LocalLambda(seed=0).start()
    atexit.register(local.stop)  # the service stops with this kernel at the latest
    endpoint_url = local.endpoint_url
elif target == "aws":
    endpoint_url = None  # boto3's standard credential chain and region
elif target != "local":
    raise ValueError(f"target must be 'local' or 'aws', got {target!r}")
client = lambdakit.make_client(endpoint_url=endpoint_url)
# Deploying to AWS needs an execution role (LAMBDAKIT_ROLE_ARN); the local service ignores it.
role = {"role": os.environ["LAMBDAKIT_ROLE_ARN"]} if "LAMBDAKIT_ROLE_ARN" in os.environ else {}"""


def md(text: str) -> nbformat.NotebookNode:
    """A markdown cell."""
    return nbformat.v4.new_markdown_cell(text.strip("\n"))


def code(text: str, *tags: str) -> nbformat.NotebookNode:
    """A code cell, optionally tagged (papermill's `parameters`)."""
    cell = nbformat.v4.new_code_cell(text.strip("\n"))
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


QUICKSTART = [
    md("""
# lambdakit quickstart

Push a small dataset through an AWS Lambda function from this notebook: deploy the example
function, open the run form, and look at the summary card and the dashboard.

By default everything runs on **`lambdakit local`**, an embedded service that speaks the real
Lambda API (started below, in this kernel). Set `LAMBDAKIT_TARGET=aws` to use your AWS
account instead (boto3's standard credentials, plus `LAMBDAKIT_ROLE_ARN` for deploying), or
`LAMBDAKIT_ENDPOINT_URL` to use a `lambdakit local` that is already running (`make lab` does).
"""),
    code("""
import atexit
import os
import tempfile

import pandas as pd

import lambdakit

target = os.environ.get("LAMBDAKIT_TARGET", "local")  # "local" or "aws"
endpoint_url = os.environ.get("LAMBDAKIT_ENDPOINT_URL")  # None: start a local service here
"""),
    code(CONNECT),
    md("""
## Deploy the example functions

`batch_processor` validates each record and returns one output per record; invalid ones are
reported through `batchItemFailures`. `slow_flaky` sleeps 250 ms per call: pick it in the form
to try **Cancel**. `deploy` zips the folder, creates or updates the function and waits until
it is ready; it only uploads what changed.
"""),
    code("""
# NBVAL_CHECK_OUTPUT
processor = lambdakit.deploy(client, "batch-processor", "functions/batch_processor", **role)
slow = lambdakit.deploy(
    client, "slow-flaky", "functions/slow_flaky", environment={"SLEEP_MS": 250}, **role
)
for deployed in (processor, slow):
    print(deployed.function_name, deployed.version)
"""),
    md("""
## A dataset

200 records; every 50th has a `value` that is not a number, so the function reports it as
failed and lambdakit keeps it, with the reason, in `result.errors()`.
"""),
    code("""
records = pd.DataFrame(
    {
        "id": [f"r{i:04d}" for i in range(200)],
        "value": ["n/a" if i % 50 == 7 else i * 0.5 for i in range(200)],
        "tags": [["Demo", f"group-{i % 3}"] for i in range(200)],
    }
)
# A fresh cache folder, so that the notebook behaves the same on every run; it is removed
# when this kernel stops (the form below may still use it). The default cache lives in your
# user cache folder and makes a rerun of the same job instant.
scratch = tempfile.TemporaryDirectory(prefix="lambdakit-quickstart-cache-")
cache_dir = scratch.name
records.head()
"""),
    md("""
## The form

Choose the function (and alias or version), the batch size, concurrency, timeout and
attempts (under **advanced**: how Invoke is sent and over how many worker processes, run()'s
`invoke_path=` and `processes=`), then click **Run**: the progress bar, counters, a live
figure (throughput, latency, failed records, and concurrency with the in-flight and rate
limits) and any errors update while it runs, and the summary card and dashboard appear at
the end (`form.result` holds the RunResult).
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
form = lambdakit.form(
    records,
    endpoint_url=endpoint_url,
    function="batch-processor",
    batch_size=20,
    concurrency=4,
    cache=cache_dir,
)
form
"""),
    md("""
## The same job without the form

This is what runs headless (nbval, papermill, scripts). The text form of a `RunResult` has no
times or ids; the rich display is a summary card.
"""),
    code("""
# NBVAL_CHECK_OUTPUT
result = lambdakit.run(
    "batch-processor",
    records,
    batch_size=20,
    concurrency=4,
    endpoint_url=endpoint_url,
    cache=cache_dir,
    progress=False,
)
print(result)
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
result
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
result.plot()
"""),
    code("""
# NBVAL_CHECK_OUTPUT
result.errors()[["record", "batch", "error_type", "error_message"]]
"""),
    md("""
## Run it again: the cache

Successful batches are cached under the function's ARN, the version that actually ran and a
hash of the payload, so the rerun only invokes the batches that had failures (failures are
never cached).
"""),
    code("""
# NBVAL_CHECK_OUTPUT
again = lambdakit.run(
    "batch-processor",
    records,
    batch_size=20,
    concurrency=4,
    endpoint_url=endpoint_url,
    cache=cache_dir,
    progress=False,
)
summary = again.summary()
print(f"{summary['cached_batches']} of {summary['batches']} batches from the cache")
print(f"{summary['failed_records']} records failed again; outputs kept for the rest")
"""),
    md("""
## The same job through a function URL

Functions behind an HTTP endpoint (a function URL, an API Gateway route) run with the same
engine: `lambdakit.run(records, url=...)`. `deploy(..., url="AWS_IAM")` gives the function a
URL that takes SigV4-signed requests only (`auth="aws_iam"` signs them; `url="NONE"` would
make it public, with the permission statement AWS requires). On `lambdakit local` the URL is
served by the same port, under `/lambda-url/<function>/`. The function receives each batch
as the body of a payload format 2.0 event; `batch_processor` reads it from there and answers
exactly as for Invoke. The cache knows which function answers the URL, so it is keyed by the
version that runs, not by the address.
"""),
    code("""
# NBVAL_CHECK_OUTPUT
deployed = lambdakit.deploy(
    client, "batch-processor", "functions/batch_processor", url="AWS_IAM", **role
)
processor_url = deployed.function_url
via_url = lambdakit.run(
    records,
    url=processor_url,
    auth="aws_iam",
    batch_size=20,
    concurrency=4,
    cache=False,
    progress=False,
)
for label, run in (("Invoke", result), ("function URL", via_url)):
    s = run.summary()
    print(f"{label:>12}: {s['records']} records, {s['failed_records']} failed, "
          f"{s['batches']} batches")
print("same outputs:", list(via_url.outputs()) == list(result.outputs()))
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
table, latency_figure, throughput_figure = lambdakit.compare(
    result, via_url, labels=["Invoke", "function URL"]
)
table
"""),
]

BATCH_RUN = [
    md("""
# A reproducible batch run (papermill)

Run this notebook headless with parameters, for example:

```bash
papermill notebooks/02_batch_run.ipynb out.ipynb --cwd notebooks \\
    -p batch_size 50 -p concurrency 4 -p output_dir /tmp/run1
```

It enriches generated orders (`functions/enrich_orders`, a deterministic dataset: the same
`n_records` and `seed` always give the same orders) and writes to `output_dir`:
`manifest.json` (function, versions, code hash, dataset fingerprint and every parameter of
this notebook), the per-batch and per-attempt tables (CSV and Parquet), the per-record
outputs, and the plots as PNG files. It ends by checking that no record was lost.
"""),
    code(
        """
from typing import Optional  # papermill reads these hints (`X | None` it cannot parse)

# Where to run: local starts lambdakit local unless endpoint_url or
# $LAMBDAKIT_ENDPOINT_URL names a running one; aws uses the standard credential chain.
target: str = "local"  # "local" or "aws"
endpoint_url: Optional[str] = None  # a running lambdakit local, e.g. http://127.0.0.1:9001
# The function, deployed from function_dir first when the target is local.
function_name: str = "enrich-orders"
function_dir: str = "functions/enrich_orders"
qualifier: Optional[str] = None  # an alias or a version, None means $LATEST
batch_size: int = 25
concurrency: int = 4
timeout: Optional[float] = None  # client read timeout per invocation in s, None: automatic
max_attempts: int = 3
decimal: str = "number"  # Decimal values as JSON numbers with their digits, or "string"
nan: str = "reject"  # a record holding NaN or an infinity is rejected, or "null" sends null
# CSV cells in dataset: "exact" (numbers only where exact: "007" stays "007"), "text" (all
# strings) or "pandas" (pandas' inference: "007" becomes 7)
csv_types: str = "exact"
outputs: str = "per_record"  # how replies are read: "per_record", "per_batch" or "raw"
# The data: n_records generated orders, or files in dataset: a .jsonl/.csv/.parquet/.json
# file (.gz/.bz2/.zst too), a folder, a glob, or s3://bucket/key, s3://bucket/prefix/.
n_records: int = 300
invalid_fraction: float = 0.01  # share of generated orders that are broken on purpose
seed: int = 0
dataset: Optional[str] = None  # a path, folder, glob or s3:// URL instead of generated orders
cache_dir: Optional[str] = None  # None: a fresh temporary cache, removed at the end
output_dir: Optional[str] = None  # None means a fresh temporary folder
""",
        "parameters",
    ),
    code("""
import atexit
import json
import os
import sys
import tempfile
from pathlib import Path

import lambdakit

parameters = {
    "target": target,
    "endpoint_url": endpoint_url,
    "function_name": function_name,
    "function_dir": function_dir,
    "qualifier": qualifier,
    "batch_size": batch_size,
    "concurrency": concurrency,
    "timeout": timeout,
    "max_attempts": max_attempts,
    "decimal": decimal,
    "nan": nan,
    "csv_types": csv_types,
    "outputs": outputs,
    "n_records": n_records,
    "invalid_fraction": invalid_fraction,
    "seed": seed,
    "dataset": dataset,
    "cache_dir": cache_dir,
    "output_dir": output_dir,
}
endpoint_url = endpoint_url or os.environ.get("LAMBDAKIT_ENDPOINT_URL")
# A cache made for this run only is removed at its end (and with the kernel at the latest).
scratch = None if cache_dir else tempfile.TemporaryDirectory(prefix="lambdakit-cache-")
cache_dir = cache_dir or scratch.name
output_dir = Path(output_dir or tempfile.mkdtemp(prefix="lambdakit-run-"))
output_dir.mkdir(parents=True, exist_ok=True)
"""),
    md("""
## Data in S3

`dataset` may be an S3 URL (`s3://bucket/prefix/`, a key, or a glob): lambdakit lists the
objects and streams them, with the same credentials as the Lambda client. When no S3 is
configured (the local target and no `$AWS_ENDPOINT_URL_S3`), this notebook starts moto's S3
server on a free loopback port and first writes the generated orders there, as four gzipped
JSONL objects under that URL, so the section runs offline. Failed records then name the
object and line they came from.
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
s3_server = None
seeded = None  # how many generated orders this notebook wrote to S3
if dataset and dataset.startswith("s3://") and target == "local" and not os.environ.get(
    "AWS_ENDPOINT_URL_S3"
):
    import gzip
    import subprocess

    import boto3

    moto = (
        "import sys\\n"
        "from moto.server import ThreadedMotoServer\\n"
        "server = ThreadedMotoServer(ip_address='127.0.0.1', port=0, verbose=False)\\n"
        "server.start()\\n"
        "print('%s:%s' % server.get_host_and_port(), flush=True)\\n"
        "sys.stdin.read()\\n"
    )
    # Its own process: moto hooks into botocore in the process that imports it.
    s3_server = subprocess.Popen(
        [sys.executable, "-c", moto], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    atexit.register(s3_server.kill)
    os.environ["AWS_ENDPOINT_URL_S3"] = "http://" + s3_server.stdout.readline().strip()
    bucket, _, prefix = dataset[len("s3://") :].partition("/")
    prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
    dataset = f"s3://{bucket}/{prefix}"
    s3 = boto3.client(
        "s3", endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"], region_name="us-east-1",
        aws_access_key_id="moto", aws_secret_access_key="moto",
    )
    s3.create_bucket(Bucket=bucket)
    sys.path.insert(0, function_dir)
    from dataset import generate_orders

    orders = generate_orders(n_records, seed=seed, invalid_fraction=invalid_fraction)
    per_object = -(-len(orders) // 4)
    for part in range(4):
        chunk = orders[part * per_object : (part + 1) * per_object]
        lines = "".join(json.dumps(order, default=str) + "\\n" for order in chunk)
        key = f"{prefix}orders-{part}.jsonl.gz"
        s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(lines.encode()))
    seeded = len(orders)
    print("moto S3 at", os.environ["AWS_ENDPOINT_URL_S3"], "holds", seeded, "orders in", dataset)
"""),
    code(CONNECT),
    code("""
# NBVAL_CHECK_OUTPUT
if target == "local":
    deployed = lambdakit.deploy(client, function_name, function_dir, **role)
    print("deployed", deployed.function_name, deployed.version)

if dataset:
    records = dataset  # streamed from the files (or S3), never loaded whole
    n_input = seeded
else:
    sys.path.insert(0, function_dir)
    from dataset import generate_orders

    records = generate_orders(n_records, seed=seed, invalid_fraction=invalid_fraction)
    n_input = len(records)
    print(n_input, "orders, first:", records[0]["order_id"], records[0]["country"])
"""),
    code("""
# NBVAL_CHECK_OUTPUT
result = lambdakit.run(
    function_name,
    records,
    qualifier=qualifier,
    batch_size=batch_size,
    concurrency=concurrency,
    timeout=timeout,
    retry={"max_attempts": max_attempts, "base_delay": 0.2},
    cache=cache_dir,
    id_field=None,
    decimal=decimal,
    nan=nan,
    csv_types=csv_types,
    outputs=outputs,
    endpoint_url=endpoint_url,
    progress=False,
)
print(result)
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
result
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
result.plot()
"""),
    md("""
## The report folder

`save_report` writes the PNGs, the tables and `manifest.json`; this notebook adds its own
parameters to the manifest (credentials are scrubbed) and the per-record outputs as JSON lines.
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
notebook = {"name": "02_batch_run.ipynb", "parameters": parameters}
result.save_report(output_dir, extra={"notebook": notebook})
with open(output_dir / "outputs.jsonl", "w") as out:
    for index, output in enumerate(result.outputs()):
        out.write(json.dumps({"record": index, "output": output}) + "\\n")
for path in sorted(output_dir.iterdir()):
    print(path)
"""),
    code("""
# NBVAL_CHECK_OUTPUT
result.errors()[["record", "batch", "error_message"]]
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
# For files and S3: where each failed record is in its source (object, line, row).
if dataset:
    display(result.errors()[["record", "source", "line", "row", "error_message"]])
"""),
    md("## No record was lost"),
    code("""
# NBVAL_CHECK_OUTPUT
summary = result.summary()
outputs = list(result.outputs())
errors = result.errors()
failed = set(errors["record"])
if n_input is not None:
    assert summary["records"] == n_input, (summary["records"], n_input)
assert len(outputs) == summary["records"]
ok = int(result.batches["ok_records"].sum())
assert ok + summary["failed_records"] + summary["rejected_records"] == summary["records"]
without_output = {i for i, output in enumerate(outputs) if output is None}
assert without_output == failed, sorted(without_output ^ failed)
print(f"every record accounted for: {ok} ok, {len(failed)} failed with a reason")
"""),
    code("""
if local is not None:
    local.stop()
if s3_server is not None:
    s3_server.stdin.close()
    s3_server.kill()
if scratch is not None:
    scratch.cleanup()  # the temporary cache: the report and outputs are in output_dir
"""),
]

COMPARE = [
    md("""
# Versions, aliases and a canary

Publish two versions of `enrich_orders` that behave differently, point aliases at them, send
a share of traffic to the new one through a weighted alias, run the same orders against
each, and compare latency, errors and outputs. The last part shows that the cache is keyed
by the version that actually ran, not by the alias name.

v2 is v1 with an updated EUR exchange rate, and it accepts order lines with quantity 0
(v1 rejects the whole order).
"""),
    code("""
import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pandas as pd

import lambdakit

target = os.environ.get("LAMBDAKIT_TARGET", "local")
endpoint_url = os.environ.get("LAMBDAKIT_ENDPOINT_URL")
name = "enrich-orders-versions"
"""),
    code(CONNECT),
    code("""
# NBVAL_CHECK_OUTPUT
v1 = lambdakit.deploy(client, name, "functions/enrich_orders", publish=True, **role).version

# v2: the same code with two changes, made on a copy of the folder.
# The copy and the cache below live in here, removed at the end (with the kernel at the latest).
scratch = tempfile.TemporaryDirectory(prefix="lambdakit-compare-")
v2_dir = Path(scratch.name) / "enrich_orders"
shutil.copytree("functions/enrich_orders", v2_dir)
app = (v2_dir / "app.py").read_text()
changed = app.replace('"EUR": Decimal("1.08")', '"EUR": Decimal("1.10")').replace(
    "or qty <= 0:", "or qty < 0:"
)
assert changed.count("1.10") == 1 and "qty < 0" in changed, "app.py changed: update this cell"
(v2_dir / "app.py").write_text(changed)
v2 = lambdakit.deploy(client, name, v2_dir, publish=True, **role).version

lambdakit.set_alias(client, name, "live", v1)
lambdakit.set_alias(client, name, "beta", v2)
lambdakit.set_alias(client, name, "canary", v1, weights={v2: 0.3})  # 30% of calls go to v2
print("v1 =", v1, " v2 =", v2)
for alias in lambdakit.list_aliases(client, name):
    print(alias.name, "->", alias.weights)
"""),
    code("""
# NBVAL_CHECK_OUTPUT
sys.path.insert(0, "functions/enrich_orders")
from dataset import generate_orders

orders = generate_orders(240, seed=7, invalid_fraction=0.05)
cache_dir = tempfile.mkdtemp(prefix="cache-", dir=scratch.name)
settings = dict(batch_size=20, concurrency=4, endpoint_url=endpoint_url, progress=False)
settings["retry"] = {"max_attempts": 2, "base_delay": 0.1}

live = lambdakit.run(name, orders, qualifier="live", cache=cache_dir, **settings)
beta = lambdakit.run(name, orders, qualifier="beta", cache=cache_dir, **settings)
print(live)
print(beta)
"""),
    md("""
## Latency, errors and throughput side by side

`lambdakit.compare` gives one row per run and overlaid figures.
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
comparison = lambdakit.compare(live, beta, labels=["live (v1)", "beta (v2)"])
comparison.summary
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
comparison.latency
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
comparison.throughput
"""),
    md("## Outputs: what changed between v1 and v2"),
    code("""
# NBVAL_CHECK_OUTPUT
def table(result):
    rows = [o if o is not None else {} for o in result.outputs()]
    return pd.DataFrame(rows, index=pd.RangeIndex(len(rows), name="record"))


a, b = table(live), table(beta)
both = a["total_usd"].notna() & b["total_usd"].notna()
differs = both & (a["total_usd"] != b["total_usd"])
only_v1 = sorted(set(live.errors()["record"]) - set(beta.errors()["record"]))
print("orders failed on v1 only:", only_v1)
print("outputs that differ:", int(differs.sum()), "all in", sorted(set(a.loc[differs, "currency"])))
totals = pd.DataFrame({"currency": a["currency"], "v1": a["total_usd"], "v2": b["total_usd"]})
totals[differs].head()
"""),
    md("""
## The canary

Through the weighted alias each invocation lands on v1 or v2; the attempts table records
which version ran (`executed_version`), and the cache stores every batch under that version.
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
canary_settings = {**settings, "batch_size": 10}  # more calls, so both versions get some
canary = lambdakit.run(name, orders, qualifier="canary", cache=False, **canary_settings)
canary.attempts.groupby("executed_version").agg(
    invocations=("batch", "size"), latency_p50_s=("latency_s", "median")
)
"""),
    code("""
# NBVAL_CHECK_OUTPUT
print("executed versions:", canary.meta["executed_versions"])
"""),
    md("""
## The cache is keyed by version

Run `live` again: every successful batch comes from the cache. Then move `live` to v2 and
run it once more: nothing from v1 is reused, but the batches `beta` already computed on v2
are, because the key is the function, the version that ran and the payload.
"""),
    code("""
# NBVAL_CHECK_OUTPUT
def live_run():
    return lambdakit.run(name, orders, qualifier="live", cache=cache_dir, **settings)


def cache_line(label, result):
    s = result.summary()
    cached = result.batches.loc[result.batches["status"] == "cached", "executed_version"]
    print(f"{label}: {s['cached_batches']} of {s['batches']} batches from the cache, "
          f"computed by version {sorted(set(cached))}; {s['invocations']} invocations")


cache_line("live -> v1, again", live_run())
lambdakit.set_alias(client, name, "live", v2)
cache_line("live -> v2", live_run())
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
lambdakit.Cache(cache_dir).entries(name).groupby("executed_version").size()
"""),
    code("""
if local is not None:
    local.stop()
scratch.cleanup()  # the temporary cache and the copy of v2's code
"""),
]

FAILURES = [
    md("""
# Failure modes

What lambdakit does when things go wrong, one case at a time, with the `slow_flaky` function
and its knobs (environment variables): Lambda throttling (429) from reserved concurrency,
timeouts, function errors, partial batch failures, wrong replies, and an interrupted run that
resumes from the cache. Every failed attempt stays in `result.attempts`, and the plots show
them. One section leaves the kernel: a function (`fan_out`) fans a batch out to a throttled
worker itself, and its run is set beside one from the kernel.

With `SEED` set, slow_flaky's failures depend only on the record content, so the same
records fail on every attempt and every run: the counts below are reproducible.
"""),
    code("""
import atexit
import itertools
import os
import tempfile
import time

import pandas as pd

import lambdakit

target = os.environ.get("LAMBDAKIT_TARGET", "local")
endpoint_url = os.environ.get("LAMBDAKIT_ENDPOINT_URL")
records = [{"id": i, "value": i * 1.5} for i in range(120)]
# Every cache made below lives in here, removed at the end (and with the kernel at the latest).
scratch = tempfile.TemporaryDirectory(prefix="lambdakit-failures-")
"""),
    code(CONNECT),
    code('''
def flaky(name, timeout_s=10, **knobs):
    """Deploy slow_flaky as `name` with the given knobs; returns the name."""
    environment = {"SEED": 1, **knobs}
    lambdakit.deploy(
        client, name, "functions/slow_flaky", environment=environment, timeout_s=timeout_s, **role
    )
    return name


def go(name, data=records, **options):
    """Run `data` through `name` with a fresh cache unless one is given."""
    options.setdefault("cache", tempfile.mkdtemp(dir=scratch.name))
    options.setdefault("retry", {"max_attempts": 3, "base_delay": 0.1})
    return lambdakit.run(
        name, data, endpoint_url=endpoint_url, progress=False, **{"batch_size": 10, **options}
    )
'''),
    md("""
## Throttling

The function may run at most 2 copies at once (reserved concurrency), and we ask for 8.
Lambda answers the extra calls with 429 TooManyRequests; lambdakit retries them without
counting them against `max_attempts` and halves its in-flight limit on each throttle
(additive increase, multiplicative decrease), so the run still completes.
"""),
    code("""
# NBVAL_CHECK_OUTPUT
busy = flaky("failures-throttled", SLEEP_MS=150)
client.put_function_concurrency(FunctionName=busy, ReservedConcurrentExecutions=2)
throttled = go(busy, concurrency=8)
s = throttled.summary()
print(throttled)
print("throttled at least once:", s["throttles"] > 0, "| failed records:", s["failed_records"])
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
throttled.plot("concurrency")
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
throttled.plot("timeline")
"""),
    md("""
## Timeouts

A 1-second function timeout, and a quarter of the batches sleep past it: Lambda answers
`Sandbox.Timedout` and throws the environment away. Those batches time out on every attempt,
so they end as failed, with the error and the log tail kept for each record.
"""),
    code("""
# NBVAL_CHECK_OUTPUT
slow = flaky("failures-timeouts", timeout_s=1, TIMEOUT_RATE=0.25)
timeouts = go(slow, data=records[:60], retry={"max_attempts": 2, "base_delay": 0.1})
print(timeouts)
print(timeouts.attempts["error_type"].value_counts().to_dict())
"""),
    md("""
## Function errors

A third of the batches raise. The function error (`Unhandled`) is retried up to
`max_attempts`; with a seeded function the same batches fail again, so their records end up
in `result.errors()` with the exception.
"""),
    code("""
# NBVAL_CHECK_OUTPUT
broken = flaky("failures-errors", FAIL_RATE=0.3)
errors = go(broken)
print(errors)
print(errors.errors()[["error_type", "error_message"]].drop_duplicates().to_string(index=False))
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
errors.plot("errors")
"""),
    md("""
## Partial batch failures

The function reports single records through `batchItemFailures`; the rest of each batch
keeps its output. Such a report is a verdict on the record (a bad price, an unknown
currency), so it is not retried: sending the same record again would get the same answer.
`Retry(item_attempts=N)` allows N attempts in all if you want them.
"""),
    code("""
# NBVAL_CHECK_OUTPUT
partial = go(flaky("failures-partial", ITEM_FAIL_RATE=0.05))
print(partial)
print(partial.attempts.groupby("attempt")["records"].sum().to_dict())
"""),
    md("""
When a handler knows an item's failure is transient (a downstream timeout, a lock), it says
so with `"retryable": true` beside the `itemIdentifier`, lambdakit's extension to the partial
batch response (slow_flaky does with `ITEM_RETRYABLE=1`). Those records, and only they, are
sent again, up to `max_attempts`; seeded, they fail every time, so they end as failed.
"""),
    code("""
# NBVAL_CHECK_OUTPUT
transient = go(flaky("failures-transient", ITEM_FAIL_RATE=0.05, ITEM_RETRYABLE=1))
print(transient.attempts.groupby("attempt")["records"].sum().to_dict())
print("failed records:", transient.summary()["failed_records"])
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
partial.plot()
"""),
    md("""
## Wrong replies

The reply contract is strict: a reply must be JSON, and a list must hold one output per
record. A function that returns one output too few fails every attempt
(`Lambdakit.OutputCountMismatch`, `function_error`) instead of handing its list to every
record, and nothing of it is cached. A function whose reply is one value for the whole batch
(a summary dict, a count) runs with `outputs="per_batch"`, which gives that value to each
record; the default, `outputs="per_record"`, fails it with a message naming the option.
`outputs="raw"` takes any reply as text, for custom runtimes that do not answer JSON.
"""),
    code("""
# NBVAL_CHECK_OUTPUT
replies = tempfile.mkdtemp(dir=scratch.name)
with open(os.path.join(replies, "app.py"), "w") as source:
    source.write(
        "def handler(event, context):\\n"
        "    items = event['Items']\\n"
        "    if event.get('BatchInput', {}).get('summary'):\\n"
        "        return {'records': len(items)}\\n"
        "    return [item['id'] for item in items][:-1]\\n"
    )
lambdakit.deploy(client, "failures-replies", replies, **role)
short = go("failures-replies", data=records[:20])
print(short.attempts[["outcome", "error_type"]].value_counts().to_dict())
print(short.attempts["error_message"].iloc[0])
print("cached entries:", len(lambdakit.Cache(short.meta["params"]["cache"]).entries()))
summaries = dict(data=records[:20], batch_input={"summary": True}, retry=False)
print(go("failures-replies", **summaries).attempts["error_type"].iloc[0])
per_batch = go("failures-replies", outputs="per_batch", **summaries)
print(list(per_batch.outputs())[:3])
"""),
    md("""
## Fan-out from inside a function

Instead of fanning records out from the kernel, a function can do it inside Lambda: the
`fan_out` orchestrator takes a large batch, splits it into chunks and invokes a worker
(here `batch_processor`) for each chunk with boto3, from 8 threads. The worker may run only
2 copies at once, so most of those calls are throttled; the orchestrator retries each 429
itself (backoff with full jitter) and returns one output per record, with
`batchItemFailures` for any chunk that still failed, so lambdakit reads its reply like any
other batch. Below, the same records go through both ways. On AWS the orchestrator's role
needs `lambda:InvokeFunction` on the worker.
"""),
    code("""
# NBVAL_CHECK_OUTPUT
worker = "failures-fan-worker"
lambdakit.deploy(client, worker, "functions/batch_processor", **role)
client.put_function_concurrency(FunctionName=worker, ReservedConcurrentExecutions=2)
orchestrator = "failures-fan-out"
fan_settings = {"WORKER_FUNCTION": worker, "CHUNK_SIZE": 25, "MAX_WORKERS": 8}
lambdakit.deploy(client, orchestrator, "functions/fan_out", memory_mb=512, timeout_s=300,
                 environment=fan_settings, **role)
many = [{"id": i, "value": i * 0.5} for i in range(2000)]
from_kernel = go(worker, data=many, batch_size=25, concurrency=8)
through_orchestrator = go(orchestrator, data=many, batch_size=1000, concurrency=2)
for label, result in [("from the kernel", from_kernel),
                      ("through the orchestrator", through_orchestrator)]:
    s = result.summary()
    print(f"{label}: {s['batches']} batches sent by lambdakit, {s['failed_records']} failed "
          f"records of {s['records']}")
print("same outputs:", list(from_kernel.outputs()) == list(through_orchestrator.outputs()))
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
lambdakit.compare(from_kernel, through_orchestrator,
                  labels=["from the kernel", "through the orchestrator"]).summary
"""),
    md("""
Both functions log to `lambdakit local logs`: the orchestrator's REPORT line and its count of
retried throttles, and one REPORT line per chunk the worker ran.
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
if local is not None:
    print("\\n".join(local.logs(orchestrator, tail=8)))
    print("\\n".join(local.logs(worker, tail=2)))
"""),
    md("""
## Rate limits are not concurrency limits

A 429 says why in its `Reason`. Too much in flight (`ConcurrentInvocationLimitExceeded`) calls
for fewer invocations at once, as above; too many requests per second
(`FunctionInvocationRateLimitExceeded`: Lambda allows 10 x concurrency requests per second, so
functions under 100 ms meet it first) calls for fewer per second, whatever is in flight.
lambdakit paces those through an adaptive token bucket and leaves the in-flight limit alone.
Here lambdakit local refuses more than 40 requests per second (`lambdakit local faults NAME
--max-rps 40`); `benchmarks/failure_modes.py` sets this beside a reason-blind run (most 429s
gone, the in-flight limit never collapsed).
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
if local is not None:
    paced = flaky("failures-rate-limited")
    local.set_faults(paced, max_rps=40)
    fast = go(paced, batch_size=1, concurrency=8)
    local.clear_faults(paced)
    a = fast.attempts
    assert fast.summary()["failed_records"] == 0 and (a["in_flight_limit"] == 8).all()
    print(fast)
    print("429s by reason:", a.loc[a["throttled"], "throttle_reason"].value_counts().to_dict())
    print("rate limit at the end:", round(a["rate_limit"].dropna().iloc[-1], 1), "requests/s")
    fast.plot("concurrency")  # the rate limit, on the right axis, beside the in-flight limit
"""),
    md("""
## Stragglers: `hedge=`

One slow invocation holds up the end of a run. With `SLOW_RATE=0.02`, 2% of slow_flaky's
invocations take 20 times longer (drawn per invocation, as a slow machine would be).
`hedge=lambdakit.Hedge()` sends a batch again once its attempt has run longer than 2 x the
run's p95 latency so far; the first good reply wins and the other is `superseded`. At most 5%
of invocations are backups, and none counts against `max_attempts`. Hedge only idempotent,
deterministic functions: a backup runs the batch twice.
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
straggly = flaky("failures-stragglers", SLEEP_MS=50, SLOW_RATE=0.02)
jobs = [{"id": i} for i in range(400)]
plain = go(straggly, data=jobs, batch_size=1, concurrency=8, cache=False)
hedged = go(straggly, data=jobs, batch_size=1, concurrency=8, cache=False,
            hedge=lambdakit.Hedge())
assert list(hedged.outputs()) == list(plain.outputs()) == [{"echo": r} for r in jobs]
for label, result in [("plain", plain), ("hedged", hedged)]:
    backups = (result.meta["hedge"] or {}).get("backups", 0)
    print(f"{label}: {result.summary()['elapsed_s']:.2f} s, {backups} backups")
"""),
    md("""
## Out of memory: the memory ladder

A batch that runs out of memory fails again at the same memory. With
`on_oom=lambdakit.MemoryLadder([256, 512])` it goes again on a version of the function with the
next size up, which lambdakit publishes from the same code with only MemorySize changed (and
reuses later); `$LATEST` keeps its 128 MB and no alias is touched. On AWS this needs
`lambda:UpdateFunctionConfiguration` and `lambda:PublishVersion` (README, IAM); without them the
OOM is reported as before, with a hint.
"""),
    code("""
# NBVAL_CHECK_OUTPUT
hungry = "failures-oom"
lambdakit.deploy(client, hungry, "functions/slow_flaky", environment={"ALLOCATE_MB": 200},
                 memory_mb=128, **role)
climbed = go(hungry, data=records[:20], on_oom=lambdakit.MemoryLadder([256, 512]))
s = climbed.summary()
print("failed records:", s["failed_records"], "| batches that needed the ladder:",
      s["ladder_batches"], "| memory they finished at:",
      sorted(set(climbed.batches["memory_mb"].dropna())))
print("$LATEST MemorySize:", client.get_function_configuration(FunctionName=hungry)["MemorySize"])
"""),
    md("""
## A fair share across runs: `lambdakit.limits()`

Two notebooks (or two runs in one) sharing a function can cap it together:
`lambdakit.limits(function, max_concurrency=3)` holds every run in this kernel that targets it
to 3 invocations at once, all runs together (`max_rps=` caps requests per second, for a
downstream service's rate limit; `scope="machine"` shares the caps with other processes
through lock files).
"""),
    code("""
# NBVAL_CHECK_OUTPUT
shared = flaky("failures-shared", SLEEP_MS=100)
lambdakit.limits(shared, max_concurrency=3)
both = [lambdakit.start(shared, records, endpoint_url=endpoint_url, progress=False,
                        batch_size=4, concurrency=4, cache=False) for _ in range(2)]
results = [handle.wait(timeout=300) for handle in both]
lambdakit.limits(shared)  # no caps given: removed
spans = pd.concat([r.attempts[["started_at", "ended_at"]] for r in results])
edges = sorted([(t, 1) for t in spans["started_at"]] + [(t, -1) for t in spans["ended_at"]],
               key=lambda e: (e[0], e[1]))
at_once = max(itertools.accumulate(step for _, step in edges))
print("failed records:", sum(r.summary()["failed_records"] for r in results),
      "| most invocations at once, both runs together, within the cap:", at_once <= 3)
"""),
    md("""
## Interrupt, then resume

Start a slow run in the background, cancel it part way (what the form's Cancel button and
Jupyter's stop button do), and run the same job again with the same cache: the batches that
finished are served from the cache and only the rest is invoked.
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
sleepy = flaky("failures-interrupt", SLEEP_MS=200)
resume_cache = tempfile.mkdtemp(prefix="resume-", dir=scratch.name)
options = dict(batch_size=4, concurrency=2, cache=resume_cache, endpoint_url=endpoint_url)
handle = lambdakit.start(sleepy, records, progress=False, **options)
deadline = time.monotonic() + 120
while handle.progress.batches_done < 5 and not handle.done:
    assert time.monotonic() < deadline, "the run made no progress"
    time.sleep(0.05)
handle.cancel()
interrupted = handle.wait(timeout=120)
print(interrupted)
"""),
    code("""
# NBVAL_CHECK_OUTPUT
resumed = lambdakit.run(sleepy, records, progress=False, **options)
done_before = int((interrupted.batches["status"] == "ok").sum())
s = resumed.summary()
assert interrupted.meta["cancelled"] and done_before >= 5
assert s["cached_batches"] == done_before, (s["cached_batches"], done_before)
assert s["invocations"] == s["batches"] - done_before
assert s["failed_records"] == 0 and len(list(resumed.outputs())) == len(records)
print(f"{s['records']} records, {s['failed_records']} failed, in {s['batches']} batches")
print("the batches finished before the interrupt came from the cache, the rest ran now")
"""),
    code("""
if local is not None:
    local.stop()
scratch.cleanup()  # every temporary cache of this notebook
"""),
]

SCHEDULES = [
    md("""
# A nightly job on a timetable

Run a function every night at 02:00 in your time zone, see when it will run next, and see
that it ran. On AWS that is EventBridge Scheduler invoking Lambda; **`lambdakit local`**
serves the same Scheduler API, so `lambdakit.schedule()` is one call for both.

`LAMBDAKIT_TARGET=aws` uses your account: deploying needs `LAMBDAKIT_ROLE_ARN`, scheduling
`LAMBDAKIT_SCHEDULER_ROLE_ARN`, a role EventBridge Scheduler may assume to invoke the
function (the README gives its policy).
"""),
    code("""
import atexit
import datetime as dt
import json
import os
import time

import pandas as pd

import lambdakit

target = os.environ.get("LAMBDAKIT_TARGET", "local")  # "local" or "aws"
endpoint_url = os.environ.get("LAMBDAKIT_ENDPOINT_URL")  # None: start a local service here
analyst_tz = "Europe/Berlin"
"""),
    code(CONNECT),
    md("""
## The job: daily statistics

`daily_stats` summarises a day of meter readings per station (count, mean, min, max). Here
the readings travel in the event; a real job would read them from S3 or a database.
"""),
    code("""
# NBVAL_CHECK_OUTPUT
deployed = lambdakit.deploy(client, "daily-stats", "functions/daily_stats", **role)
print(deployed.function_name, deployed.version)

readings = pd.DataFrame(
    [
        {"station": station, "hour": hour, "value": round(base + (hour % 6) * 0.4, 2)}
        for station, base in (("north", 3.9), ("south", 5.2), ("harbour", 7.1))
        for hour in range(24)
    ]
)
readings.groupby("station")["value"].agg(["count", "mean", "min", "max"]).round(3)
"""),
    md("""
## Schedule it every night at 02:00, Berlin time

`cron(0 2 * * ? *)` is AWS's six-field dialect: minutes, hours, day of month, month, day of
week (`?`: any), year. The payload is the event; `<aws.scheduler.scheduled-time>` becomes
the time of the run it belongs to.
"""),
    code("""
# NBVAL_CHECK_OUTPUT
scheduler_role = os.environ.get("LAMBDAKIT_SCHEDULER_ROLE_ARN")  # needed on AWS only
nightly = lambdakit.schedule(
    "daily-stats",
    "cron(0 2 * * ? *)",
    timezone=analyst_tz,
    payload={"day": "<aws.scheduler.scheduled-time>", "readings": readings.to_dict("records")},
    endpoint_url=endpoint_url,
    role_arn=scheduler_role,
)
info = nightly.describe()
print(nightly.name, info["ScheduleExpression"], info["ScheduleExpressionTimezone"], info["State"])
"""),
    md("The next five runs, in the analyst's time zone:"),
    code("""
# NBVAL_IGNORE_OUTPUT
pd.Series(nightly.next_runs(5), name=f"next runs ({analyst_tz})")
"""),
    md("""
Across the change to summer time (30 March 2025) the run keeps its wall-clock time, 02:00,
so its UTC time moves; and 02:00 does not exist that night in Berlin, so there is no run
then, as on AWS:
"""),
    code("""
# NBVAL_CHECK_OUTPUT
for run in nightly.next_runs(5, after=dt.datetime(2025, 3, 28, tzinfo=dt.timezone.utc)):
    print(run.isoformat(), "=", run.astimezone(dt.timezone.utc).strftime("%H:%M UTC"))
"""),
    md("""
## Did it run? The history of a short `rate()` schedule

Waiting for 02:00 makes a poor demo, and so would waiting minutes for `rate(1 minute)`.
`lambdakit local` can run on a **test clock** that moves only when told: a second local
service starts on one, and moving it three minutes fires every run due meanwhile, in order,
each a real invocation of the function. (`history()` is lambdakit local's record; on AWS
look at the `AWS/Scheduler` CloudWatch metrics and the function's logs.)
"""),
    code("""
# NBVAL_CHECK_OUTPUT
clocked = lambdakit.LocalLambda(test_clock=True).start()
atexit.register(clocked.stop)
clocked_client = lambdakit.make_client(endpoint_url=clocked.endpoint_url)
lambdakit.deploy(clocked_client, "daily-stats", "functions/daily_stats")
every_minute = lambdakit.schedule(
    "daily-stats",
    "rate(1 minute)",
    name="every-minute",
    payload={"day": "<aws.scheduler.scheduled-time>", "readings": readings.to_dict("records")},
    endpoint_url=clocked.endpoint_url,
)
clocked.clock.advance(dt.timedelta(minutes=3))  # runs at +0, +1, +2 and +3 minutes

# Lambda runs the events in the background: wait until each function has reported back.
deadline = time.monotonic() + 60
while (history := every_minute.history())["function_outcome"].isna().any():
    assert time.monotonic() < deadline, "the function did not finish in time"
    time.sleep(0.1)
print(history[["outcome", "function_outcome"]].value_counts().to_string())
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
history[["scheduled_time", "time", "attempt", "outcome", "function_outcome", "request_id"]]
"""),
    md("What the last run computed, from the function's log:"),
    code("""
# NBVAL_CHECK_OUTPUT
last = [line for line in clocked.logs("daily-stats") if line.startswith("daily-stats ")][-1]
stations = pd.DataFrame(json.loads(last.split(" ", 1)[1])["stations"]).T
stations.astype({"count": int})[["count", "mean", "min", "max"]]
"""),
    md("""
`lambdakit local schedules` lists the schedules of a state dir with their next run, and
`lambdakit local schedules history every-minute` prints this history. Clean up:
"""),
    code("""
every_minute.delete()
nightly.delete()
clocked.stop()
if local is not None:
    local.stop()
"""),
]

NOTEBOOKS = {
    "01_quickstart.ipynb": QUICKSTART,
    "02_batch_run.ipynb": BATCH_RUN,
    "03_compare_aliases.ipynb": COMPARE,
    "04_failure_modes.ipynb": FAILURES,
    "05_scheduled_jobs.ipynb": SCHEDULES,
}


def build(name: str, *, execute: bool = True, timeout_s: int = 600) -> Path:
    """Write notebook `name` from its cells and (by default) execute it in place."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.from_dict(dict(cell)) for cell in NOTEBOOKS[name]]
    for number, cell in enumerate(notebook.cells):
        cell.id = f"cell-{number:02d}"  # stable ids: a rebuild only changes what changed
    notebook.metadata["kernelspec"] = KERNELSPEC
    notebook.metadata["language_info"] = LANGUAGE_INFO
    path = HERE / name
    if execute:
        runner = NotebookClient(
            notebook,
            timeout=timeout_s,
            kernel_name="python3",
            record_timing=False,
            resources={"metadata": {"path": str(HERE)}},
        )
        runner.execute()
        notebook.metadata["language_info"] = LANGUAGE_INFO  # no interpreter version noise
    nbformat.validate(notebook)
    nbformat.write(notebook, path)
    return path


def main(argv: list[str] | None = None) -> int:
    """Build the notebooks whose names start with one of the given prefixes (all if none)."""
    prefixes = (argv if argv is not None else sys.argv[1:]) or [""]
    for name in NOTEBOOKS:
        if any(name.startswith(prefix) for prefix in prefixes):
            print("building", build(name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
