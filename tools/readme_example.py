"""The README's example answer, as the shipped default gives it today (not pasted by hand).

The README shows one ``curl`` request and the answer below it, between two markers. This module
reads the request out of the README, renders an answer the way the README shows it (one line
per entity, the timings on one line) and puts it between the markers. ``tests/
test_readme_example.py`` sends the request to a real ``nerve serve --demo`` with the shipped
defaults and fails when the README's answer differs; ``python -m tools.readme_example --url
http://localhost:8000 --write`` (a server started by ``make run``) writes the current one.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

README = Path(__file__).resolve().parents[1] / "README.md"
START = "<!-- example-answer: written by tools/readme_example.py -->"
END = "<!-- /example-answer -->"
_REQUEST = re.compile(r"curl -s localhost:8000/v1/ner [^\n]*-d '(\{.*?\})'", re.S)
_ANSWER = re.compile(re.escape(START) + r"\n```json\n(.*?)\n```\n" + re.escape(END), re.S)
# What an answer of the same request on another machine may change: ids and times.
VOLATILE = ("request_id", "timings_ms")


def example_request(readme: str) -> dict[str, Any]:
    """The JSON body of the README's curl example."""
    found = _REQUEST.search(readme)
    if found is None:
        raise ValueError("README.md has no `curl -s localhost:8000/v1/ner ... -d '{...}'` example")
    body: dict[str, Any] = json.loads(found.group(1))
    return body


def example_answer(readme: str) -> dict[str, Any]:
    """The answer the README shows between its markers."""
    found = _ANSWER.search(readme)
    if found is None:
        raise ValueError(f"README.md has no answer between {START!r} and {END!r}")
    answer: dict[str, Any] = json.loads(found.group(1))
    return answer


def render(answer: dict[str, Any]) -> str:
    """The answer as the README lays it out: one line per entity, the timings on one line."""
    lines = ["{"]
    items = list(answer.items())
    for i, (key, value) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        if key == "entities" and value:
            rows = [f"    {json.dumps(e, ensure_ascii=False)}" for e in value]
            lines.append('  "entities": [\n' + ",\n".join(rows) + f"\n  ]{comma}")
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}{comma}")
    lines.append("}")
    return "\n".join(lines)


def with_answer(readme: str, answer: dict[str, Any]) -> str:
    """``readme`` with ``answer`` between the markers."""
    block = f"{START}\n```json\n{render(answer)}\n```\n{END}"
    if _ANSWER.search(readme) is None:
        raise ValueError(f"README.md has no answer between {START!r} and {END!r}")
    return _ANSWER.sub(lambda _: block, readme, count=1)


def stable(answer: dict[str, Any]) -> dict[str, Any]:
    """What must be the same on every run of the default: all but ids and times, the scores
    to two decimals (llama.cpp's sums may differ in the last bits across CPUs)."""
    kept = {k: v for k, v in answer.items() if k not in VOLATILE}
    kept["entities"] = [{**e, "score": round(e["score"], 2)} for e in answer["entities"]]
    return kept


def ask(url: str, readme: str, timeout_s: float = 300.0) -> dict[str, Any]:
    """The server's answer to the README's request, fresh (the example's domain must exist)."""
    response = httpx.post(f"{url}/v1/ner", json=example_request(readme), timeout=timeout_s)
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    return answer


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.readme_example", description=__doc__)
    parser.add_argument("--url", default="http://localhost:8000", help="a `nerve serve --demo`")
    parser.add_argument("--write", action="store_true", help="write the answer into README.md")
    args = parser.parse_args(argv)
    readme = README.read_text(encoding="utf-8")
    answer = ask(args.url, readme)
    print(render(answer))
    if args.write:
        README.write_text(with_answer(readme, answer), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
