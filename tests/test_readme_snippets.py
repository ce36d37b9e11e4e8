"""Every ```python block of clients/python/README.md (and of README.md's "Use it from Python /
spaCy" section) runs, as written, against a real ``nerve serve`` with the demo domain, each in
a fresh interpreter with NERVE_URL pointing at the server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.client_server import REPO, NerveServer

CLIENT_README = REPO / "clients" / "python" / "README.md"
# The project README's section on the client, once it has one: its snippets run too.
PROJECT_README = REPO / "README.md"
SECTION = "## Use it from Python / spaCy"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)


def section(text: str) -> str:
    """The SECTION of a README, up to the next heading of its level ('' when absent)."""
    start = text.find(SECTION + "\n")
    if start < 0:
        return ""
    end = text.find("\n## ", start + len(SECTION))
    return text[start : end if end >= 0 else len(text)]


def snippets() -> list[tuple[str, str]]:
    """(where, code) of every python block to run."""
    found = [
        ("clients/python/README.md", code)
        for code in BLOCK.findall(CLIENT_README.read_text(encoding="utf-8"))
    ]
    project = section(PROJECT_README.read_text(encoding="utf-8"))
    found += [("README.md", code) for code in BLOCK.findall(project)]
    return found


# Each module starts one server (~20-30 s here); the rest is quick.
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def server(demo_server: NerveServer) -> NerveServer:
    return demo_server


def test_the_readme_has_snippets() -> None:
    found = [code for where, code in snippets() if where.startswith("clients")]
    assert len(found) >= 5, "the client's README lost its Python / spaCy snippets"
    assert any("spacy" in s for s in found) and any("NerveClient" in s for s in found)


def test_only_the_section_of_the_project_readme_counts() -> None:
    text = f"# nerve\n```python\nno()\n```\n{SECTION}\n```python\nyes()\n```\n## Next\n```python\nno()\n```\n"
    assert BLOCK.findall(section(text)) == ["yes()\n"]
    assert section("# nerve\nnothing here\n") == ""


@pytest.mark.integration
@pytest.mark.parametrize(
    ("where", "code"), snippets(), ids=[f"{w}#{i + 1}" for i, (w, _) in enumerate(snippets())]
)
def test_snippet_runs(server: NerveServer, where: str, code: str, tmp_path: Path) -> None:
    script = tmp_path / "snippet.py"
    script.write_text(code, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, "NERVE_URL": server.url},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"a snippet of {where} failed:\n{code}\n--- stderr\n{done.stderr}"
    assert done.stdout.strip(), f"a snippet of {where} printed nothing:\n{code}"
