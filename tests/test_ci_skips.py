"""Under CI=true a skip fails the run (tests/fixtures/ci_skips.py); elsewhere it stays a skip."""

from __future__ import annotations

import pytest

SKIPPING = {
    "test_module_skip": """
        import pytest
        pytest.importorskip("no_such_module_nerve")

        def test_never_runs():
            pass
    """,
    "test_skips": """
        import pytest

        @pytest.fixture
        def redis_binary():
            pytest.skip("redis-server is not installed")

        def test_in_a_fixture(redis_binary):
            pass

        def test_in_the_body():
            pytest.importorskip("no_such_module_nerve")

        @pytest.mark.skipif(True, reason="no data")
        def test_by_marker():
            pass

        @pytest.mark.xfail(reason="known", strict=True)
        def test_an_expected_failure():
            assert False

        def test_passes():
            pass
    """,
}


def _run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str | None):  # type: ignore[no-untyped-def]
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    pytester.makepyfile(**SKIPPING)
    # A real run stops at a collection error; here the other files still run.
    options = ["-p", "no:cacheprovider", "-rs", "--continue-on-collection-errors"]
    return pytester.runpytest("-p", "tests.fixtures.ci_skips", *options)


def test_under_ci_every_skip_fails_the_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run(pytester, monkeypatch, "true")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    # Skips at collection and at setup (a fixture, a skipif marker) become errors, one in a
    # test body a failure; an expected failure is no skip and stays one.
    result.assert_outcomes(passed=1, failed=1, errors=3, xfailed=1)
    result.stdout.fnmatch_lines_random(
        [
            "*skipped under CI=true*no_such_module_nerve*",
            "*skipped under CI=true*redis-server is not installed*",
            "*skipped under CI=true*no data*",
        ]
    )


def test_elsewhere_a_skip_stays_a_skip_with_its_reason(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run(pytester, monkeypatch, None)
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=1, skipped=4, xfailed=1)
    result.stdout.fnmatch_lines_random(
        ["SKIPPED*redis-server is not installed", "SKIPPED*no data", "SKIPPED*no_such_module*"]
    )
