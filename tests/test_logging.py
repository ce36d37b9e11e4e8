"""The command line's logging: one JSON object per line with the request id, written to the
``sys.stderr`` of the moment (a command run in process must not keep a stream since closed)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from app.logging import configure_logging, request_id_var


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def test_a_line_is_json_with_the_request_id_and_the_extras(
    root_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stderr", stream := io.StringIO())
    configure_logging("INFO", as_json=True)
    token = request_id_var.set("req-42")
    try:
        logging.getLogger("nerve.test").info("hello %s", "there", extra={"domain": "music"})
    finally:
        request_id_var.reset(token)
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert line["msg"] == "hello there" and line["request_id"] == "req-42"
    assert line["domain"] == "music" and line["level"] == "INFO"


def test_the_handler_writes_to_the_stderr_of_the_moment(
    root_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = io.StringIO()
    monkeypatch.setattr("sys.stderr", first)
    configure_logging("INFO", as_json=False)
    first.close()  # e.g. the capture of the test that ran the command
    monkeypatch.setattr("sys.stderr", second := io.StringIO())
    logging.getLogger("nerve.test").warning("after the first stream closed")
    lines = second.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].endswith("nerve.test: after the first stream closed")
