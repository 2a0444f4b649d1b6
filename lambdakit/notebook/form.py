"""The notebook form: pick a function, qualifier, settings and dataset, then run it live."""

from __future__ import annotations

import dataclasses
import html
import inspect
import logging
import threading
from typing import Any

import ipywidgets as widgets

from lambdakit.aws.reply import PER_BATCH, PER_RECORD, RAW, check_outputs
from lambdakit.engine.cache import DEFAULT
from lambdakit.engine.invokers import check_invoke_path, worker_processes
from lambdakit.errors import InvalidInput, LambdakitError
from lambdakit.notebook.choosers import (
    LATEST,
    DatasetChooser,
    TargetChooser,
    UrlChooser,
    problem_html,
)
from lambdakit.notebook.dashboard import Dashboard, RunLogCapture, guarded, show_error

__all__ = ["BOUNDS", "FINISHED_WITH_FAILURES", "Form", "form"]

log = logging.getLogger("lambdakit.notebook.form")

IDLE, RUNNING, CANCELLING = "idle", "running", "cancelling"
FUNCTION_MODE, URL_MODE = "function", "URL"
FINISHED, CANCELLED, FAILED = "finished", "cancelled", "failed"
# Finished, but some records failed or were rejected: never shown as a clean success.
FINISHED_WITH_FAILURES = "finished with failures"
# Stopped by the run itself before every batch ran ("stopped (outage)"), not by Cancel.
STOPPED = "stopped"
_ENDED = (FINISHED, FINISHED_WITH_FAILURES, CANCELLED, FAILED)

# Limits of the numeric inputs. timeout 0 means "the function's timeout plus a margin".
BOUNDS: dict[str, tuple[float, float]] = {
    "batch_size": (1, 100_000),
    "timeout": (0, 960),
    "concurrency": (1, 1_000),
    "max_attempts": (1, 20),
    "processes": (1, 64),
}
_LABELS = {
    "batch_size": "batch size",
    "timeout": "timeout (s)",
    "concurrency": "concurrency",
    "max_attempts": "max attempts",
    "processes": "processes",
}
# Form fields a caller may preset through form(**defaults); other keywords go to start().
_FIELDS = (
    "function", "qualifier", "path", "url", "auth", "headers", "outputs", "invoke_path", *BOUNDS,
)  # fmt: skip
# How replies are read (run(outputs=...)), as the dropdown offers it.
_OUTPUT_LABELS = {
    PER_RECORD: "one output per record",
    PER_BATCH: "one output per batch",
    RAW: "raw text",
}
# The Invoke path dropdown's "default" stands for invoke_path=None (a Dropdown's None is
# "nothing selected"), which run() reads as lean unless the user gave a client.
_DEFAULT_PATH = "default"
# Arguments of start() that the form itself decides.
_MANAGED = ("function", "records", "qualifier", "progress", "endpoint_url", "client", "cache")
_ERROR_STYLE = "color:#b00020"


def form(
    records: Any = None,
    *,
    endpoint_url: str | None = None,
    client: Any = None,
    cache: Any = DEFAULT,
    **defaults: Any,
) -> Form:
    """Build the run form; `records` is the dataset, else the form offers a file chooser.

    `defaults` preset the fields (function, qualifier, path, batch_size, timeout,
    concurrency, max_attempts, outputs; invoke_path and processes, in its "advanced" part, as
    run() takes them; url, auth and headers start the form in URL mode, which
    POSTs batches to an HTTP endpoint as `lambdakit.run(url=...)` does); any other keyword
    (validate=, payload=, retry=, ...) is passed to `lambdakit.start` unchanged.

    >>> f = lambdakit.form(df, function="echo", endpoint_url=url)  # doctest: +SKIP
    >>> f  # displays itself; click Run (or f.run_button.click()), then f.wait()  # doctest: +SKIP
    """
    return Form(records, endpoint_url=endpoint_url, client=client, cache=cache, **defaults)


class Form(widgets.VBox):
    """An ipywidgets form over `lambdakit.start`, with a live dashboard of the run."""

    def __init__(
        self,
        records: Any = None,
        *,
        endpoint_url: str | None = None,
        client: Any = None,
        cache: Any = DEFAULT,
        **defaults: Any,
    ) -> None:
        fields = {k: defaults.pop(k) for k in _FIELDS if k in defaults}
        numbers = _check_numbers(fields, _base_retry(defaults).max_attempts)
        invoke_path = fields.get("invoke_path")
        # Presets the run would refuse are refused now, in the run's words.
        check_invoke_path(invoke_path, fields.get("url"), None)
        worker_processes(numbers["processes"], invoke_path, fields.get("url"), None, client)
        self._extra = _check_run_kwargs(defaults)
        self._records = records
        self._endpoint_url = endpoint_url
        self._client = client
        self._cache = cache
        self._discovery_client: Any = None
        self._handle: Any = None
        self._started = False
        self._finished = threading.Event()
        self._finished.set()
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._logs: RunLogCapture | None = None
        self.state = IDLE
        self.result: Any = None
        """The last RunResult (partial after a cancel); None until a run ends."""

        self.message = widgets.HTML()
        self.output = widgets.Output()
        self.targets = TargetChooser(
            self._discovery,
            report_error=self.report_error,
            function=fields.get("function"),
            qualifier=fields.get("qualifier"),
        )
        self.function = self.targets.function
        self.qualifier = self.targets.qualifier
        self.refresh_button = self.targets.refresh_button
        self.urls = UrlChooser(
            url=fields.get("url") or "", auth=fields.get("auth"), headers=fields.get("headers")
        )
        self.url = self.urls.url
        self.auth = self.urls.auth
        self.mode = widgets.ToggleButtons(
            options=[FUNCTION_MODE, URL_MODE],
            value=URL_MODE if fields.get("url") else FUNCTION_MODE,
            tooltips=["Invoke a Lambda function", "POST to an HTTP endpoint (a function URL)"],
        )
        self._listed_once = False
        self.dataset = (
            DatasetChooser(
                report_error=self.report_error,
                path=fields.get("path", ""),
                # S3 as the run reaches it: its profile and region, its S3 endpoint.
                s3={
                    "endpoint_url": self._extra.get("s3_endpoint_url"),
                    "region": self._extra.get("region"),
                    "profile": self._extra.get("profile"),
                },
            )
            if records is None
            else None
        )
        style = {"description_width": "110px"}
        self.batch_size = widgets.BoundedIntText(description=_LABELS["batch_size"], style=style)
        self.timeout = widgets.BoundedFloatText(
            description=_LABELS["timeout"],
            style=style,
            tooltip="per-invocation client timeout; 0 = the function's timeout + a margin",
        )
        self.concurrency = widgets.BoundedIntText(description=_LABELS["concurrency"], style=style)
        self.max_attempts = widgets.BoundedIntText(description=_LABELS["max_attempts"], style=style)
        # Advanced: how Invoke is sent (run(invoke_path=, processes=)); Lambda functions only.
        self.processes = widgets.BoundedIntText(
            description=_LABELS["processes"],
            style=style,
            tooltip="worker processes carrying the Invokes (run(processes=N)); more than 1 "
            "pays with many cores, small batches and high concurrency, and needs the lean path",
        )
        default_path = "boto3: client=" if client is not None else "lean"
        self.invoke_path = widgets.Dropdown(
            options=[
                (f"default ({default_path})", _DEFAULT_PATH),
                ("lean", "lean"),
                ("boto3", "boto3"),
            ],
            value=invoke_path or _DEFAULT_PATH,
            description="Invoke path",
            style=style,
            tooltip="how Invoke is sent (run(invoke_path=)): lambdakit's lean path, or boto3's "
            "own client.invoke",
        )
        for name, (low, high) in BOUNDS.items():
            box = getattr(self, name)
            # max first: a bounded widget's default max (100) is below some of ours.
            box.max, box.min, box.value = high, low, numbers[name]
        self.outputs = widgets.Dropdown(
            options=[(label, mode) for mode, label in _OUTPUT_LABELS.items()],
            value=check_outputs(fields.get("outputs") or PER_RECORD),
            description="replies",
            style=style,
            tooltip="how a reply is read: strictly one output per record (a list as long as "
            "the batch), one output for the whole batch, or its raw text (custom runtimes)",
        )
        self.cache = widgets.Checkbox(
            value=cache is not False and cache is not None, description="use the cache"
        )
        self.run_button = widgets.Button(description="Run", button_style="primary", icon="play")
        self.cancel_button = widgets.Button(
            description="Cancel", button_style="warning", icon="stop", disabled=True
        )
        self.status = widgets.HTML(_status_html(IDLE))
        self.summary = widgets.HTML()
        self.figure = widgets.Image(format="png", layout=widgets.Layout(display="none"))
        self.dashboard = Dashboard(report_error=self.report_error)
        self.advanced = widgets.Accordion(
            children=[widgets.HBox([self.invoke_path, self.processes])], titles=("advanced",)
        )
        super().__init__(
            children=[
                widgets.HTML("<b>lambdakit run</b>"),
                self.mode,
                self.targets.widget,
                self.urls.widget,
                widgets.HBox([self.batch_size, self.timeout]),
                widgets.HBox([self.concurrency, self.max_attempts]),
                widgets.HBox([self.outputs, self.cache]),
                self.advanced,
                *([self.dataset.widget] if self.dataset is not None else []),
                widgets.HBox([self.run_button, self.cancel_button, self.status]),
                self.message,
                self.dashboard.widget,
                self.summary,
                self.figure,
                self.output,
            ]
        )
        # Stable CSS classes (lambdakit-<part>) for users' styles and the browser test.
        self.add_class("lambdakit-form")
        parts = (
            "function qualifier refresh_button cache run_button cancel_button status message "
            "mode url auth outputs invoke_path advanced"
        )
        for name in [*parts.split(), *BOUNDS, "summary", "figure", "output"]:
            getattr(self, name).add_class("lambdakit-" + name.replace("_", "-"))
        self.run_button.on_click(self._on_run)
        self.cancel_button.on_click(self._on_cancel)
        self.mode.observe(self._on_mode, names="value")
        self._on_mode({"new": self.mode.value})

    @property
    def _inputs(self) -> list[Any]:
        # A property: header rows can be added after the form is built.
        return [
            self.mode,
            *self.targets.inputs,
            *self.urls.inputs,
            *(getattr(self, name) for name in BOUNDS),
            self.outputs,
            self.cache,
            self.invoke_path,
            *([self.dataset.path] if self.dataset is not None else []),
            self.run_button,
        ]

    @guarded
    def _on_mode(self, change: dict[str, Any]) -> None:
        """Show the function choosers or the URL inputs; list functions when first needed."""
        url_mode = change["new"] == URL_MODE
        self.targets.widget.layout.display = "none" if url_mode else ""
        self.urls.widget.layout.display = "" if url_mode else "none"
        # Invoke path and processes choose how Lambda's Invoke is sent: not for a URL.
        self.advanced.layout.display = "none" if url_mode else ""
        if not url_mode and not self._listed_once:
            self._listed_once = True
            self.targets.refresh()

    @property
    def handle(self) -> Any:
        """The RunHandle of the current or last run (None before the first run starts)."""
        return self._handle

    @property
    def path(self) -> widgets.Text | None:
        """The dataset path input (None when the form was given `records`)."""
        return self.dataset.path if self.dataset is not None else None

    @property
    def preview(self) -> widgets.HTML | None:
        """The preview of the dataset's first rows (None when the form was given `records`)."""
        return self.dataset.preview if self.dataset is not None else None

    def __repr__(self) -> str:
        # Stable for nbval: no widget ids, no timestamps; never a header value or a query.
        if self.mode.value == URL_MODE:
            from lambdakit.aws.function_urls import safe_url

            return f"Form(url={safe_url(self.url.value.strip())!r}, state={self.state!r})"
        return (
            f"Form(function={self.function.value!r}, qualifier={self.qualifier.value!r}, "
            f"state={self.state!r})"
        )

    def report_error(self, exc: BaseException, *, where: str = "") -> None:
        """Show an exception in the form: a message line, and the traceback in `output`."""
        log.debug("form: %s failed", where, exc_info=exc)
        # One writer at a time: Output.outputs is replaced, not appended to, under the hood.
        with self._lock:
            show_error(self.output, exc, where=where)
        text = str(exc) if isinstance(exc, LambdakitError) else f"{type(exc).__name__}: {exc}"
        self.message.value = f'<span style="{_ERROR_STYLE}">{html.escape(text, quote=False)}</span>'

    def _write_stderr(self, text: str) -> None:
        with self._lock:
            self.output.append_stderr(text)

    def _discovery(self) -> Any:
        from lambdakit.aws.connection import make_client

        if self._discovery_client is None:
            self._discovery_client = make_client(
                endpoint_url=self._endpoint_url, client=self._client
            )
        return self._discovery_client

    def validate(self) -> list[str]:
        """Problems that prevent a run, in words; empty when the inputs are usable."""
        url_mode = self.mode.value == URL_MODE
        problems = self.urls.problems() if url_mode else self.targets.problems()
        for name, (low, high) in BOUNDS.items():
            value = getattr(self, name).value
            if not low <= value <= high:
                problems.append(f"{_LABELS[name]} must be between {low:g} and {high:g}.")
        if self.dataset is not None:
            problems += self.dataset.problems()
        if self.state in (RUNNING, CANCELLING):
            problems.append("A run is already in progress: cancel it or wait for it.")
        return problems

    def run_kwargs(self) -> dict[str, Any]:
        """The keyword arguments that a Run click passes to `lambdakit.start`."""
        kwargs = dict(self._extra)
        url_mode = self.mode.value == URL_MODE
        qualifier = None if self.qualifier.value == LATEST else self.qualifier.value
        kwargs.update(
            function=None if url_mode else self.function.value,
            records=self._records if self.dataset is None else self.dataset.source,
            qualifier=None if url_mode else qualifier,
            batch_size=self.batch_size.value,
            concurrency=self.concurrency.value,
            timeout=self.timeout.value or None,
            retry=dataclasses.replace(
                _base_retry(self._extra), max_attempts=self.max_attempts.value
            ),
            outputs=self.outputs.value,
            cache=self._cache if self.cache.value else False,
            # The dashboard is the progress display; a tqdm bar would land in another cell.
            progress=False,
        )
        if not url_mode:
            path = self.invoke_path.value
            kwargs.update(
                invoke_path=None if path == _DEFAULT_PATH else path,
                processes=self.processes.value,
            )
        else:
            kwargs.update(
                url=self.url.value.strip(),
                auth=self.auth.value,
                headers=self.urls.headers() or None,
            )
        if self._client is not None:
            kwargs["client"] = self._client
        else:
            kwargs["endpoint_url"] = self._endpoint_url
        return kwargs

    @guarded
    def _on_run(self, _button: Any) -> None:
        """Validate, then start the run in the background and return at once."""
        from lambdakit.engine.runner import start

        problems = self.validate()
        if problems:
            self.message.value = problem_html(problems)
            return
        kwargs = self.run_kwargs()
        self.message.value = ""
        self.summary.value = ""
        self.figure.layout.display = "none"
        self._error = None
        self._handle = None
        self._started = True
        self._set_running(True)
        self._logs = RunLogCapture(self._write_stderr).attach()
        try:
            handle = start(**kwargs)
        except BaseException as exc:
            # e.g. FunctionNotFound: the function went away since it was listed.
            self._logs.detach()
            self._error = exc
            self._set_running(False)
            self._set_state(FAILED)
            raise
        self._handle = handle
        self._finished.clear()
        self.dashboard.follow(handle, on_end=self._on_end)

    @guarded
    def _on_cancel(self, _button: Any) -> None:
        """Stop submitting batches; the run ends with a partial result."""
        if self._handle is not None and self.state == RUNNING:
            self._set_state(CANCELLING)
            self.cancel_button.disabled = True
            self._handle.cancel()

    def _on_end(self, result: Any, error: BaseException | None) -> None:
        # Called once from the updater thread when the run is over, however it ended.
        from lambdakit.results.plots import to_png

        try:
            self._error = error
            if result is not None:
                self.result = result
                self.summary.value = result._repr_html_()
                self.figure.value = to_png(result.plot(), dpi=72)
                self.figure.layout.display = ""
            if error is not None:
                self.report_error(error, where="run")
                self._set_state(FAILED)
            elif result is not None and result.meta.get("cancelled"):
                # Stopped by the run itself (an outage), not by Cancel: said as the card says it.
                reason = result.meta.get("stop_reason") or CANCELLED
                self._set_state(CANCELLED if reason == CANCELLED else _stopped(reason))
            elif result is not None and _has_failures(result):
                self._set_state(FINISHED_WITH_FAILURES)
            else:
                self._set_state(FINISHED)
        except Exception as exc:
            self.report_error(exc, where="end of run")
            self._set_state(FAILED)
        finally:
            if self._logs is not None:
                self._logs.detach()
            self._set_running(False)
            self._finished.set()

    def cancel(self) -> None:
        """Cancel the current run, as the Cancel button does."""
        self._on_cancel(None)

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the current run has ended and been shown; return its RunResult."""
        if not self._started:
            raise InvalidInput("No run was started from this form: click Run first.")
        try:
            ended = self._finished.wait(timeout)
        except KeyboardInterrupt:
            # Jupyter's stop button while waiting stops the run too, keeping what is done.
            self.cancel()
            raise
        if not ended:
            raise TimeoutError(f"the run did not end within {timeout} s; it goes on")
        if self._error is not None:
            raise self._error
        return self.result

    # -- state ----------------------------------------------------------------------------

    def _set_state(self, state: str) -> None:
        self.state = state
        self.status.value = _status_html(state)
        if _ended(state):
            self.dashboard.show_end(state)

    def _set_running(self, running: bool) -> None:
        for box in self._inputs:
            box.disabled = running
        self.cancel_button.disabled = not running
        if running:
            self._set_state(RUNNING)


def _check_numbers(fields: dict[str, Any], max_attempts: int) -> dict[str, float]:
    """The numeric fields' start values, refusing presets outside the inputs' bounds."""
    numbers: dict[str, float] = {
        "batch_size": 100,
        "timeout": 0,
        "concurrency": 16,
        "max_attempts": max_attempts,
        "processes": 1,
    }
    for name, (low, high) in BOUNDS.items():
        value = fields.get(name)
        if value is None:
            continue  # timeout=None is the default: the function's timeout + a margin
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidInput(f"{name} must be a number, got {value!r}")
        if name != "timeout" and value != int(value):
            raise InvalidInput(f"{name} must be a whole number, got {value!r}")
        if not low <= value <= high:
            raise InvalidInput(f"{name} must be between {low:g} and {high:g}, got {value!r}")
        numbers[name] = value
    return numbers


def _check_run_kwargs(extra: dict[str, Any]) -> dict[str, Any]:
    """Refuse keywords that are neither form fields nor arguments of lambdakit.start."""
    from lambdakit.engine.runner import start

    accepted = inspect.signature(start).parameters
    unknown = sorted(k for k in extra if k not in accepted or k in _MANAGED)
    if unknown:
        raise InvalidInput(
            f"form() does not accept {', '.join(unknown)}; fields are {', '.join(_FIELDS)} "
            f"and other keywords must be arguments of lambdakit.start"
        )
    return extra


def _base_retry(extra: dict[str, Any]) -> Any:
    from lambdakit.engine.retry import Retry

    return Retry.coerce(extra.get("retry"))


def _has_failures(result: Any) -> bool:
    """Whether any record of a finished run failed or was rejected."""
    summary = result.summary()
    return bool(summary["failed_records"] or summary["rejected_records"])


def _stopped(reason: str) -> str:
    """The state of a run that stopped itself before every batch ran (an outage)."""
    return f"{STOPPED} ({reason})"


def _ended(state: str) -> bool:
    return state in _ENDED or state.startswith(f"{STOPPED} (")


def _status_html(state: str) -> str:
    # A run that ended badly says so in the error colour, never in a neutral one.
    bad = state in (FINISHED_WITH_FAILURES, FAILED) or state.startswith(f"{STOPPED} (")
    style = f' style="{_ERROR_STYLE}"' if bad else ""
    return f"<code{style}>{state}</code>"
