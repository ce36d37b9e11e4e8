"""The suite's split across xdist workers (tests/fixtures/workers.py) holds: a file's tests run on
one worker (its module fixtures built once), and the files of a shared server run together."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

RECORDING = """
    import json, os
    from pathlib import Path
    import pytest

    @pytest.mark.parametrize("n", range(8))
    def test_records_its_worker(n, {fixture}):
        line = {{"file": __file__, "worker": os.environ.get("PYTEST_XDIST_WORKER")}}
        with Path(os.environ["WORKER_TRACE"]).open("a") as trace:
            trace.write(json.dumps(line) + "\\n")
"""


def test_a_file_and_a_shared_server_stay_on_one_worker(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    trace = tmp_path / "trace.jsonl"
    monkeypatch.setenv("WORKER_TRACE", str(trace))
    repo_root = str(Path(__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([repo_root, os.environ.get("PYTHONPATH", "")]))
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture(scope="session")
        def triton_server():
            return "a shared server"

        @pytest.fixture
        def nothing():
            return None
        """
    )
    pytester.makepyfile(
        test_alone_a=RECORDING.format(fixture="nothing"),
        test_alone_b=RECORDING.format(fixture="nothing"),
        test_server_a=RECORDING.format(fixture="triton_server"),
        test_server_b=RECORDING.format(fixture="triton_server"),
    )
    result = pytester.runpytest_subprocess(
        "-p", "tests.fixtures.workers", "-p", "no:cacheprovider", "-n", "2", "--dist", "loadgroup"
    )
    result.assert_outcomes(passed=32)
    workers: dict[str, set[str]] = {}
    for line in trace.read_text().splitlines():
        record = json.loads(line)
        workers.setdefault(Path(record["file"]).stem, set()).add(record["worker"])
    assert all(len(seen) == 1 for seen in workers.values()), workers
    assert workers["test_server_a"] == workers["test_server_b"], workers
    assert len(set().union(*workers.values())) == 2, workers  # and both workers got work
