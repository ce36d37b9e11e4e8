"""Process lines: the gateway (app/) never depends on the offline packages (tools/, trainers/).

The one exception is the `nerve` command, whose `eval`, `train` and `bench serve` subcommands run
offline code: they import it inside their own function, when they run, never at module level.
"""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from app.settings import REPO_ROOT

# Packages the gateway process never imports: offline code, and code that runs only inside
# tritonserver.
OFFLINE = ("tools", "trainers", "triton_models")
# (file, function) where an import of an offline package is allowed: lazily, in that function.
ALLOWED = {
    ("app/cli.py", "eval_command"),
    ("app/cli.py", "train"),
    ("app/cli.py", "bench_serve"),
}


def offline_imports(source: str) -> list[tuple[int, str, str | None]]:
    """(line, module, enclosing function or None) of each import of an offline package."""
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
        found.extend((node.lineno, m, function) for m in modules if m.split(".")[0] in OFFLINE)
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
        "import app.methods.baner",
        "x = 'trainers.baner'",
    ],
)
def test_the_check_ignores_other_modules(source: str) -> None:
    assert offline_imports(source) == []


def test_the_check_names_the_enclosing_function() -> None:
    source = "import tools\n\ndef train():\n    import trainers.registry\n"
    assert offline_imports(source) == [(1, "tools", None), (4, "trainers.registry", "train")]


def test_nothing_under_app_imports_an_offline_package() -> None:
    files = sorted((REPO_ROOT / "app").rglob("*.py"))
    assert len(files) > 20
    wrong = [
        f"{path}:{line} imports {module}" + (f" (in {function})" if function else "")
        for file in files
        for path in [file.relative_to(REPO_ROOT).as_posix()]
        for line, module, function in offline_imports(file.read_text())
        if (path, function) not in ALLOWED
    ]
    assert wrong == [], "the gateway must not depend on offline code:\n" + "\n".join(wrong)


def test_the_gateway_process_loads_no_offline_module() -> None:
    """What `nerve serve` imports, run from the repository root (where tools/ and trainers/
    are importable, so an import would succeed and show up)."""
    code = (
        "import sys\n"
        "import app.cli, app.main, app.components\n"
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
