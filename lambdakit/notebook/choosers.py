"""The form's choosers: which function and qualifier to run, and which dataset to read."""

from __future__ import annotations

import glob
import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from lambdakit.errors import InvalidInput, LambdakitError
from lambdakit.notebook.dashboard import guarded
from lambdakit.records.datasets import format_of, is_s3_url, local_dataset

__all__ = [
    "LATEST",
    "PREVIEW_ROWS",
    "SUFFIXES",
    "DatasetChooser",
    "TargetChooser",
    "UrlChooser",
    "dataset_preview_html",
    "open_dataset",
    "path_problem",
    "preview_html",
    "problem_html",
]

LATEST = "$LATEST"
SUFFIXES = (".jsonl", ".ndjson", ".csv", ".parquet", ".json")
PREVIEW_ROWS = 5
_NOT_FOUND = " (not found)"
_LABEL_STYLE = {"description_width": "110px"}
_ERROR_STYLE = "color:#b00020"


class TargetChooser:
    """A function Dropdown (ListFunctions, every page) with Refresh, and its qualifiers."""

    def __init__(
        self,
        client: Callable[[], Any],
        *,
        report_error: Callable[..., None],
        function: str | None = None,
        qualifier: str | None = None,
    ) -> None:
        from lambdakit.aws.discovery import split_function_name

        self._client = client
        self.report_error = report_error
        if function is not None:
            # "name:alias" and ARNs are accepted as lambdakit.run accepts them.
            function, embedded = split_function_name(function)
            qualifier = qualifier or embedded
        self._wanted_function = function
        self._wanted_qualifier = qualifier
        self._listed: dict[str, Any] = {}
        self._quiet = False
        full = widgets.Layout(width="auto")
        self.function = widgets.Dropdown(
            description="function", style=_LABEL_STYLE, layout=widgets.Layout(width="60%")
        )
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.info = widgets.HTML()
        self.qualifier = widgets.Dropdown(description="qualifier", style=_LABEL_STYLE, layout=full)
        self.widget = widgets.VBox(
            [widgets.HBox([self.function, self.refresh_button, self.info]), self.qualifier]
        )
        self.refresh_button.on_click(self.refresh)
        self.function.observe(self._on_function, names="value")

    @guarded
    def refresh(self, _button: Any = None) -> None:
        """List the functions again, keeping the current choice when it still exists."""
        from lambdakit.aws.discovery import list_functions

        listed = {info.name: info for info in list_functions(self._client())}
        preset, self._wanted_function = self._wanted_function, None
        self._listed = listed
        names = list(listed)
        wanted = _listed_name(listed, preset) if preset else self.function.value
        if wanted is not None and wanted not in listed:
            if preset is not None:
                # Keep a preset that is not listed visible, so validation can name it.
                names.append(wanted)
            else:
                wanted = None  # the chosen function is gone: fall back to the first one
        chosen = wanted if wanted is not None else (names[0] if names else None)
        # Setting options makes the Dropdown jump to its first entry; that transient value
        # must not list qualifiers (nor consume a preset one), so events are ignored meanwhile.
        self._quiet = True
        try:
            self.function.options = names
            self.function.value = chosen
        finally:
            self._quiet = False
        self._on_function({"new": chosen})

    @guarded
    def _on_function(self, change: dict[str, Any]) -> None:
        """Fill the qualifier list for the chosen function: $LATEST, aliases, versions."""
        from lambdakit.aws.discovery import list_aliases, list_versions

        if self._quiet:
            return
        function = change["new"]
        preset, self._wanted_qualifier = self._wanted_qualifier, None
        wanted = preset or self.qualifier.value or LATEST
        info = self._listed.get(function)
        if info is not None:
            runtime = html.escape(str(info.runtime or "custom runtime"))
            self.info.value = (
                f"<small>{runtime}, {info.memory_mb} MB, timeout {info.timeout_s} s</small>"
            )
        else:
            self.info.value = "" if self._listed else "<small>no functions found</small>"
        if info is None:
            # Nothing to list; a preset qualifier waits for a Refresh that finds the function.
            self._wanted_qualifier = preset
            self.qualifier.options = []
            return
        options: list[tuple[str, str]] = [(LATEST, LATEST)]
        client = self._client()
        for alias in list_aliases(client, function):
            options.append((_alias_label(alias), alias.name))
        for version in list_versions(client, function):
            if version.version != LATEST:
                options.append((f"version {version.version}", version.version))
        if wanted not in [value for _, value in options]:
            if preset is None:
                wanted = LATEST  # the previous function's alias: start again from $LATEST
            else:
                # A preset stays visible, marked, so that validation can name it.
                options.append((f"{wanted}{_NOT_FOUND}", wanted))
        self.qualifier.options = options
        self.qualifier.value = wanted

    def problems(self) -> list[str]:
        """What is wrong with the current choice, in words."""
        function, qualifier = self.function.value, self.qualifier.value
        if function is None:
            return ["Choose a function (none is listed: deploy one, or check the endpoint)."]
        if function not in self._listed:
            return [
                f"Function {function!r} was not found at this endpoint "
                "(check its name and the region, or deploy it)."
            ]
        if qualifier is None:
            return ["Choose a qualifier ($LATEST, an alias or a version)."]
        if self.qualifier.label.endswith(_NOT_FOUND):
            return [f"{function!r} has no alias or version {qualifier!r}."]
        return []

    @property
    def inputs(self) -> list[widgets.DOMWidget]:
        """The widgets to disable while a run goes on."""
        return [self.function, self.refresh_button, self.qualifier]


class UrlChooser:
    """The form's URL mode: the endpoint, its auth, and headers whose values are masked."""

    AUTH_CHOICES = (("none", None), ("AWS IAM (SigV4)", "aws_iam"))

    def __init__(
        self,
        *,
        url: str = "",
        auth: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if auth not in (None, "aws_iam"):
            raise InvalidInput(f"the form's auth is None or 'aws_iam', got {auth!r}")
        self.url = widgets.Text(
            value=str(url or ""),
            description="URL",
            placeholder="https://<id>.lambda-url.<region>.on.aws/ or a lambdakit local URL",
            style=_LABEL_STYLE,
            layout=widgets.Layout(width="auto"),
        )
        self.auth = widgets.Dropdown(
            options=list(self.AUTH_CHOICES), value=auth, description="auth", style=_LABEL_STYLE
        )
        self.add_button = widgets.Button(description="add header", icon="plus")
        self.rows = widgets.VBox()
        self.header_rows: list[tuple[widgets.Text, widgets.Password]] = []
        self.widget = widgets.VBox(
            [self.url, widgets.HBox([self.auth, self.add_button]), self.rows]
        )
        self.add_button.on_click(lambda _button: self.add_header())
        for name, value in (headers or {}).items():
            self.add_header(name, value)

    def add_header(self, name: str = "", value: str = "") -> tuple[widgets.Text, widgets.Password]:
        """Add a header row: its name in clear, its value in a Password box (shown masked)."""
        name_box = widgets.Text(value=name, placeholder="header, e.g. x-api-key")
        value_box = widgets.Password(value=value, placeholder="value (masked)")
        self.header_rows.append((name_box, value_box))
        self.rows.children = [widgets.HBox(list(row)) for row in self.header_rows]
        return name_box, value_box

    def headers(self) -> dict[str, str]:
        """The headers to send: rows with a name (a row left empty is ignored)."""
        return {n.value.strip(): v.value for n, v in self.header_rows if n.value.strip()}

    def problems(self) -> list[str]:
        """What is wrong with the URL or the headers, in words."""
        from urllib.parse import urlsplit

        found = []
        parts = urlsplit(self.url.value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            found.append("Enter the URL to POST batches to (http:// or https://).")
        for name, value in self.header_rows:
            if value.value and not name.value.strip():
                found.append("A header has a value but no name.")
        return found

    @property
    def inputs(self) -> list[widgets.DOMWidget]:
        """The widgets to disable while a run goes on."""
        boxes = [box for row in self.header_rows for box in row]
        return [self.url, self.auth, self.add_button, *boxes]


class DatasetChooser:
    """The files to read (a path, folder, glob or s3:// URL) and a preview: the first rows,
    the object count and total bytes, read without reading the whole dataset.

    `s3`: how S3 is reached (endpoint_url, region, profile), as the run will reach it.
    """

    def __init__(
        self,
        *,
        report_error: Callable[..., None],
        path: str = "",
        s3: dict[str, Any] | None = None,
    ) -> None:
        self.report_error = report_error
        self.s3 = dict(s3 or {})
        self._problem: str | None = None  # found when the files were listed or read
        self.path = widgets.Text(
            value=str(path),
            description="dataset",
            placeholder="a .jsonl, .csv, .parquet or .json file, a folder, a glob, or s3://...",
            continuous_update=False,
            style=_LABEL_STYLE,
            layout=widgets.Layout(width="auto"),
        )
        self.preview = widgets.HTML()
        self.widget = widgets.VBox([self.path, self.preview])
        self.path.observe(self._on_path, names="value")
        if path:
            self._on_path({"new": path})

    @guarded
    def _on_path(self, change: dict[str, Any]) -> None:
        """Show the first rows of the chosen files, or what is wrong with the path."""
        path = str(change["new"]).strip()
        self._problem = None
        problem = path_problem(path)
        if problem:
            self.preview.value = problem_html([problem]) if path else ""
            return
        try:
            dataset = open_dataset(self.source, self.s3)
            self.preview.value = dataset_preview_html(dataset)
        except LambdakitError as exc:  # a missing bucket, access denied, a mixed folder ...
            self._problem = str(exc)
            self.preview.value = problem_html([self._problem])

    def problems(self) -> list[str]:
        """What is wrong with the path, in words."""
        problem = path_problem(self.path.value.strip()) or self._problem
        return [problem] if problem else []

    @property
    def source(self) -> str:
        """The path or URL to hand to the run (lambdakit streams the files)."""
        value = self.path.value.strip()
        return value if is_s3_url(value) else str(Path(value).expanduser())


def open_dataset(source: str, s3: dict[str, Any] | None = None) -> Any:
    """The Dataset a path, folder, glob or s3:// URL names (only listed: nothing is read)."""
    if is_s3_url(source):
        from lambdakit.aws.s3 import open_dataset as open_s3

        return open_s3(source, **(s3 or {}))
    return local_dataset(source)


def dataset_preview_html(dataset: Any, rows: int = PREVIEW_ROWS) -> str:
    """The first `rows` records as an HTML table, captioned with the object count and bytes.

    Only the first object(s) are opened, and only as far as those rows (a Parquet file:
    its first row group).
    """
    import pandas as pd

    from lambdakit.records.formats import BadLine

    records = [r.text if isinstance(r, BadLine) else r for r in dataset.preview(rows)]
    if records and all(isinstance(r, dict) for r in records):
        frame = pd.DataFrame.from_records(records)
    else:
        frame = pd.DataFrame({"record": pd.Series(records, dtype=object)})
    objects = dataset.objects
    if len(objects) == 1 and objects[0].local:
        where = objects[0].name
    else:
        count = f"{len(objects):,} object{'s' if len(objects) != 1 else ''}"
        where = f"{dataset.location} ({count}, {_size_text(dataset.total_bytes)})"
    caption = f"first {len(frame)} rows of {html.escape(where)}"
    return f"<small>{caption}</small>" + frame.to_html(max_rows=rows, border=0, index=False)


def preview_html(path: Path, rows: int = PREVIEW_ROWS) -> str:
    """The first `rows` records of a file, folder or glob as an HTML table."""
    return dataset_preview_html(local_dataset(path), rows)


def _size_text(size: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:,} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000  # type: ignore[assignment]
    return f"{size} bytes"  # pragma: no cover


def path_problem(path: str) -> str | None:
    """Why `path` cannot be a dataset, or None when it can (S3 is checked when listed)."""
    if not path:
        return "Enter the path of the dataset (.jsonl, .csv, .parquet, a folder or s3://...)."
    if is_s3_url(path):
        return None
    target = Path(path).expanduser()
    if glob.has_magic(path) or target.is_dir():
        return None
    try:
        format_of(target.name)
    except InvalidInput:
        return (
            f"Unsupported file type {target.suffix or '(none)'!r}: use .jsonl, .csv, .parquet "
            f"or .json (optionally .gz, .bz2, .zst), a folder or an s3:// URL."
        )
    if not target.is_file():
        return f"File not found: {path}"
    return None


def problem_html(problems: list[str]) -> str:
    """Problems as a red HTML list."""
    items = "".join(f"<li>{html.escape(p, quote=False)}</li>" for p in problems)
    return f'<ul style="{_ERROR_STYLE};margin:0">{items}</ul>'


def _listed_name(listed: dict[str, Any], ref: str) -> str:
    """The listed function a name, ARN or partial ARN refers to (else `ref` itself)."""
    for name, info in listed.items():
        if ref in (name, info.arn) or info.arn.endswith(f":{ref}"):
            return name
    return ref


def _alias_label(alias: Any) -> str:
    """`live → 3`, or `live → 3 (90%), 4 (10%)` for a weighted alias."""
    if len(alias.weights) <= 1:
        return f"{alias.name} → {alias.function_version}"
    shares = ", ".join(f"{v} ({w:.0%})" for v, w in alias.weights.items())
    return f"{alias.name} → {shares}"
