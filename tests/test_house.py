"""Keeps the house: wings import one way, no import circles, and each class lives in one file.

The checks read every module's imports with `ast` (nothing is imported, so no side effect
hides a problem) and name the two files of each problem they find. docs/architecture.md
draws the same wings in the same order.
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lambdakit"

# Lowest first: a module may import from its own wing and from the wings before it.
WINGS = ("base", "local", "records", "aws", "results", "engine", "notebook", "cli", "api")
# The embedded service is a program of its own: only the CLI and the public names reach it.
ONLY_FROM = {"local": {"local", "cli", "api"}}
BASE_MODULES = {"errors", "expressions", "invocation"}
# Deprecated aliases of old module paths: as high as the public names.
ALIASES = {"runner", "invoke", "plots"}


@dataclass(frozen=True)
class Import:
    """One import of a lambdakit module by another."""

    source: str  # importing module, dotted
    target: str  # imported module, dotted
    line: int
    top_level: bool  # at module level (not inside a function), so it runs on import
    type_only: bool  # under `if TYPE_CHECKING:`


def wing_of(module: str) -> str:
    """The wing of a dotted module name under lambdakit."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("__init__", "__main__") or parts[1] in ALIASES:
        return "api"
    if parts[1] in BASE_MODULES:
        return "base"
    return parts[1]


def module_names(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    names = {}
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _resolve(names: dict[str, Path], base: str, member: str | None) -> str | None:
    """The module an import names: `base.member` when that is a module, else `base`."""
    if member and f"{base}.{member}" in names:
        return f"{base}.{member}"
    return base if base in names else None


def read_imports(package: Path) -> list[Import]:
    """Every import between modules of the package."""
    names = module_names(package)
    root = package.name
    found: list[Import] = []
    for module, path in names.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"

        def visit(
            node: ast.AST,
            top: bool,
            type_only: bool,
            module: str = module,
            is_package: bool = is_package,
        ) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                    visit(child, False, type_only)
                    continue
                if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                    for stmt in child.body:
                        visit(ast.Module(body=[stmt], type_ignores=[]), top, True)
                    for stmt in child.orelse:
                        visit(ast.Module(body=[stmt], type_ignores=[]), top, type_only)
                    continue
                targets: list[str | None] = []
                if isinstance(child, ast.Import):
                    targets = [
                        _resolve(names, a.name, None)
                        for a in child.names
                        if a.name.split(".")[0] == root
                    ]
                elif isinstance(child, ast.ImportFrom):
                    base = child.module or ""
                    if child.level:
                        anchor = module.split(".")
                        anchor = anchor if is_package else anchor[:-1]
                        anchor = anchor[: len(anchor) - child.level + 1]
                        base = ".".join([*anchor, base] if base else anchor)
                    if base.split(".")[0] == root:
                        # The package root defines __version__ before anything else, and
                        # imports nothing eagerly: reading it is no upward import.
                        members = [a.name for a in child.names if a.name != "__version__"]
                        targets = [_resolve(names, base, m) for m in members]
                for target in targets:
                    if target and target != module:
                        found.append(Import(module, target, child.lineno, top, type_only))
                visit(child, top, type_only)

        visit(tree, True, False)
    return found


def wrong_way(imports: list[Import]) -> list[str]:
    """Imports from a lower wing up to a higher one, and imports of local/ from outside."""
    problems = []
    for imp in imports:
        source, target = wing_of(imp.source), wing_of(imp.target)
        allowed = ONLY_FROM.get(target)
        if allowed is not None and source not in allowed:
            problems.append(f"{imp.source} ({source}) imports {imp.target} ({target})")
        elif WINGS.index(target) > WINGS.index(source):
            problems.append(
                f"{imp.source}:{imp.line} ({source}) imports {imp.target} ({target}), a higher wing"
            )
    return problems


def circles(imports: list[Import]) -> list[list[str]]:
    """Cycles among all imports: top level, inside functions and under TYPE_CHECKING alike.

    A lazy or type-only import still says that one module needs the other; a loop of them
    is two modules that each sit above the other, whether or not Python minds at import.
    """
    graph: dict[str, set[str]] = {}
    for imp in imports:
        graph.setdefault(imp.source, set()).add(imp.target)
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                walk(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node)
    return found


def split_classes(package: Path) -> list[str]:
    """Classes that inherit from a lambdakit class of another module (a class in two files).

    Exceptions may: the one error tree lives in errors.py (and the local service's ApiError
    in local/checks.py) on purpose.
    """
    names = module_names(package)
    problems = []
    for module, path in names.items():
        tree = ast.parse(path.read_text())
        imported: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lambdakit"):
                for alias in node.names:
                    imported[alias.asname or alias.name] = node.module or ""
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            for base in node.bases:
                origin = imported.get(ast.unparse(base))
                if origin and origin not in ("lambdakit.errors", "lambdakit.local.checks"):
                    problems.append(f"{module}.{node.name} inherits {ast.unparse(base)} ({origin})")
    return problems


def test_imports_point_one_way():
    assert wrong_way(read_imports(PACKAGE)) == []


def test_no_import_circles():
    assert circles(read_imports(PACKAGE)) == []


def test_a_class_lives_in_one_file():
    assert split_classes(PACKAGE) == []


def test_every_wing_is_listed():
    wings = {wing_of(m) for m in module_names(PACKAGE)}
    assert wings <= set(WINGS), wings - set(WINGS)


def test_every_wing_says_what_it_is_for():
    for init in PACKAGE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and doc.splitlines()[0].endswith("."), f"{init}: a one-line summary wanted"


def _plant(tmp_path: Path, files: dict[str, str]) -> Path:
    package = tmp_path / "lambdakit"
    for rel, text in {"__init__.py": "", **files}.items():
        path = package / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return package


def test_the_checks_catch_a_planted_circle_and_an_upward_import(tmp_path):
    package = _plant(
        tmp_path,
        {
            "records/__init__.py": "",
            "records/a.py": "from lambdakit.records.b import B\n",
            "records/b.py": "from lambdakit.records import a\nclass B: ...\n",
            "engine/__init__.py": "",
            "engine/c.py": "def late():\n    from lambdakit.notebook.form import Form\n",
            "notebook/__init__.py": "",
            "notebook/form.py": "from lambdakit.engine.c import late\nclass Form: ...\n",
            "aws/__init__.py": "",
            "aws/d.py": "from lambdakit.local.state import Store\n",
            "local/__init__.py": "",
            "local/state.py": "class Store: ...\n",
            "results/__init__.py": "",
            "results/e.py": "from lambdakit.notebook.form import Form\nclass Mixed(Form): ...\n",
        },
    )
    imports = read_imports(package)
    assert circles(imports) == [
        # The upward lazy import closes a loop with notebook.form's import of engine.c.
        ["lambdakit.engine.c", "lambdakit.notebook.form", "lambdakit.engine.c"],
        ["lambdakit.records.a", "lambdakit.records.b", "lambdakit.records.a"],
    ]
    problems = wrong_way(imports)
    assert any("lambdakit.engine.c" in p and "lambdakit.notebook.form" in p for p in problems)
    assert any("lambdakit.aws.d" in p and "lambdakit.local.state" in p for p in problems)
    assert any("lambdakit.results.e" in p for p in problems)
    assert split_classes(package) == [
        "lambdakit.results.e.Mixed inherits Form (lambdakit.notebook.form)"
    ]


def test_lazy_and_type_only_imports_make_circles_too(tmp_path):
    # A method's import of plots and plots' type-only import of result still tie the two.
    package = _plant(
        tmp_path,
        {
            "results/__init__.py": "",
            "results/result.py": "def plot():\n    from lambdakit.results import plots\n",
            "results/plots.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from lambdakit.results.result import plot\n"
            ),
        },
    )
    assert circles(read_imports(package)) == [
        ["lambdakit.results.plots", "lambdakit.results.result", "lambdakit.results.plots"]
    ]
