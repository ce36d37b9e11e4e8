"""Process lines (docs/architecture.md, "Process lines"): which package may import which.

- ``nerve/``: the shared library (vocabulary, each method's inference code, engines, wire formats,
  retrieval). It imports only itself, so every process can load it.
- ``app/``: the gateway (routes, pipeline, components): the library and itself.
- ``triton_models/``, ``trainers/``, ``build_engines/``: the library and themselves.
- ``tools/``: evaluation and benchmarks: anything but ``cli/``.
- ``cli/``: the operator commands (``nerve``, the Triton launcher): anything, but the offline
  packages only inside the subcommand that runs them, so that ``nerve serve`` never loads them.

The named exceptions, each a lazy import inside one function, are :data:`ALLOWED`; the
architecture document lists the same ones.
"""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from nerve.settings import REPO_ROOT

PROJECT = ("nerve", "app", "cli", "tools", "trainers", "triton_models", "build_engines")
# Packages the gateway process never imports: offline code, and code that runs only inside
# tritonserver.
OFFLINE = ("tools", "trainers", "triton_models")
# What each package may import at module level (besides itself).
LINES: dict[str, tuple[str, ...]] = {
    "nerve": (),
    "app": ("nerve",),
    "triton_models": ("nerve",),
    "trainers": ("nerve",),
    "build_engines": ("nerve",),
    "tools": ("nerve", "app", "trainers"),
    "cli": ("nerve", "app"),
}
# (file, function, package): an import of that package allowed lazily, in that function only.
ALLOWED = {
    ("cli/main.py", "eval_command", "tools"),
    ("cli/main.py", "train", "trainers"),
    ("cli/main.py", "bench_serve", "tools"),
    # The paths benchmark starts a real tritonserver, with the operator's launcher.
    ("tools/bench_paths.py", "run", "cli"),
}


def offline_imports(source: str) -> list[tuple[int, str, str | None]]:
    """(line, module, enclosing function or None) of each import of an offline package."""
    return project_imports(source, OFFLINE)


def project_imports(
    source: str, packages: tuple[str, ...] = PROJECT
) -> list[tuple[int, str, str | None]]:
    """(line, module, enclosing function or None) of each import of one of ``packages``."""
    found: list[tuple[int, str, str | None]] = []

    def visit(node: ast.AST, function: str | None) -> None:
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (
                    isinstance(node.func, ast.Name)
                    and node.func.id in ("__import__", "import_module")
                )
                or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
            )
        ):
            modules = [node.args[0].value]
        found.extend((node.lineno, m, function) for m in modules if m.split(".")[0] in packages)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            function = node.name
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(ast.parse(source), None)
    return found


@pytest.mark.parametrize(
    "source",
    [
        "import tools.bench_table",
        "import trainers",
        "from tools import evaluation",
        "from trainers.registry import TRAINERS",
        "import numpy as np, trainers.baner as baner",
        "def f():\n    from tools.evaluation import evaluate",
        "class A:\n    async def f(self):\n        import trainers.lar",
        "import importlib\nimportlib.import_module('trainers.wraner.cli')",
        "from importlib import import_module\nimport_module('tools.bench_paths')",
        "__import__('tools')",
    ],
)
def test_the_check_finds_every_form_of_import(source: str) -> None:
    assert len(offline_imports(source)) == 1, source


@pytest.mark.parametrize(
    "source",
    [
        "import toolsy",
        "from app.tools import x",
        "from .trainers import x",
        "import nerve.methods.baner",
        "x = 'trainers.baner'",
    ],
)
def test_the_check_ignores_other_modules(source: str) -> None:
    assert offline_imports(source) == []


def test_the_check_names_the_enclosing_function() -> None:
    source = "import tools\n\ndef train():\n    import trainers.registry\n"
    assert offline_imports(source) == [(1, "tools", None), (4, "trainers.registry", "train")]


@pytest.mark.parametrize("package", sorted(LINES))
def test_each_package_imports_only_what_its_line_allows(package: str) -> None:
    files = sorted((REPO_ROOT / package).rglob("*.py"))
    assert files, package
    allowed = (package, *LINES[package])
    wrong = [
        f"{path}:{line} imports {module}" + (f" (in {function})" if function else "")
        for file in files
        for path in [file.relative_to(REPO_ROOT).as_posix()]
        for line, module, function in project_imports(file.read_text())
        if module.split(".")[0] not in allowed
        and (path, function, module.split(".")[0]) not in ALLOWED
    ]
    assert wrong == [], f"{package}/ crosses its process line:\n" + "\n".join(wrong)


def test_nothing_under_app_imports_an_offline_package() -> None:
    files = sorted((REPO_ROOT / "app").rglob("*.py"))
    assert len(files) > 20
    wrong = [
        f"{path}:{line} imports {module}"
        for file in files
        for path in [file.relative_to(REPO_ROOT).as_posix()]
        for line, module, _ in offline_imports(file.read_text())
    ]
    assert wrong == [], "the gateway must not depend on offline code:\n" + "\n".join(wrong)


def test_every_allowed_exception_is_still_needed() -> None:
    """An exception the code no longer takes is removed from the list (and the docs)."""
    taken = {
        (path, function, module.split(".")[0])
        for path, _, _ in ALLOWED
        for line, module, function in project_imports((REPO_ROOT / path).read_text())
    }
    assert taken >= ALLOWED


def test_the_exceptions_are_documented() -> None:
    text = (REPO_ROOT / "docs" / "architecture.md").read_text()
    for path, function, package in ALLOWED:
        assert f"`{path}` `{function}`" in text, (path, function, package)


def test_the_gateway_process_loads_no_offline_module() -> None:
    """What `nerve serve` imports, run from the repository root (where tools/ and trainers/
    are importable, so an import would succeed and show up)."""
    code = (
        "import sys\n"
        "import cli.main, app.main, app.components\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tools', 'trainers')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
