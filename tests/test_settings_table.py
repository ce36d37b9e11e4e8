"""docs/settings.md is the generated table of every NERVE_ name; the flat names of the release
before the groups still work, with a warning naming the new one."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from nerve.settings import (
    LEGACY_NAMES,
    REPO_ROOT,
    Settings,
    env_name,
    env_names,
    load_settings,
    settings_table,
)


def test_docs_settings_md_is_the_generated_table() -> None:
    committed = (REPO_ROOT / "docs" / "settings.md").read_text()
    assert committed == settings_table(), (
        "docs/settings.md is stale: python -m nerve.settings --markdown > docs/settings.md"
    )


def test_the_module_prints_the_table() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "nerve.settings", "--markdown"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
    ).stdout
    assert printed == settings_table()


def test_every_setting_is_in_the_table_once() -> None:
    table = settings_table()
    names = env_names()
    assert len(names) == len(set(names))
    for name in names:
        assert f"| `{name}` |" in table, name


def test_a_group_reads_its_fields_from_NERVE_GROUP_FIELD(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NERVE_CASCADE_RULE", "union")
    monkeypatch.setenv("NERVE_CASCADE_ROUTE_THRESHOLD", "0.3")  # the field's own underscore
    monkeypatch.setenv("NERVE_JOBS_MAX_RUNNING", "5")
    monkeypatch.setenv("NERVE_PORT", "8123")
    settings = load_settings()
    assert (settings.cascade.rule, settings.cascade.route_threshold) == ("union", 0.3)
    assert (settings.jobs.max_running, settings.port) == (5, 8123)


@pytest.mark.parametrize(
    ("old", "new", "value", "read"),
    [
        ("NERVE_MAX_JOBS", "NERVE_JOBS_MAX_RUNNING", "7", lambda s: s.jobs.max_running == 7),
        ("NERVE_GAZETTEER", "NERVE_GAZETTEER_ENABLED", "false", lambda s: not s.gazetteer.enabled),
        ("NERVE_RETRIEVAL", "NERVE_RETRIEVAL_MODE", "sentence", lambda s: s.retrieval.mode == "sentence"),
        ("NERVE_TRUECASE", "NERVE_GAZETTEER_TRUECASE", "true", lambda s: s.gazetteer.truecase),
        ("NERVE_GENERATION_TIMEOUT_S", "NERVE_LLM_TIMEOUT_S", "9", lambda s: s.llm.timeout_s == 9),
        ("NERVE_API_KEYS_FILE", "NERVE_AUTH_API_KEYS_FILE", "k.json", lambda s: str(s.auth.api_keys_file) == "k.json"),
    ],
)  # fmt: skip
def test_an_old_environment_name_still_works_and_warns(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    old: str,
    new: str,
    value: str,
    read: object,
) -> None:
    monkeypatch.setenv(old, value)
    monkeypatch.setenv("NERVE_GAZETTEER_WAIT_S", "5")  # the group's other fields still read
    with caplog.at_level(logging.WARNING), pytest.warns(DeprecationWarning, match=new):
        settings = load_settings()
    assert callable(read) and read(settings)
    assert settings.gazetteer.wait_s == 5
    assert any(old in r.message and new in r.message for r in caplog.records)


def test_the_new_environment_name_wins_over_the_old(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NERVE_MAX_JOBS", "7")
    monkeypatch.setenv("NERVE_JOBS_MAX_RUNNING", "3")
    with pytest.warns(DeprecationWarning, match="NERVE_JOBS_MAX_RUNNING"):
        assert load_settings().jobs.max_running == 3


def test_every_renamed_environment_name_still_works(monkeypatch: pytest.MonkeyPatch) -> None:
    renamed = {
        env_name(None, old): (group, field)
        for old, (group, field) in LEGACY_NAMES.items()
        if env_name(None, old) != env_name(group, field)
    }
    assert len(renamed) == 19
    defaults = Settings()
    for old, (group, field) in renamed.items():
        with monkeypatch.context() as patch:
            current = getattr(getattr(defaults, group), field)
            patch.setenv(old, _unlike(current, field))
            with pytest.warns(DeprecationWarning, match=env_name(group, field)):
                read = getattr(getattr(load_settings(), group), field)
            assert read != current, old


def _unlike(current: object, field: str) -> str:
    """An environment value of the field's type unlike its default ``current``."""
    if isinstance(current, bool):
        return str(not current).lower()
    if isinstance(current, int | float):
        return str(current + 1)
    return {"mode": "sentence", "word_mode": "alone"}.get(field, "x")


@pytest.mark.parametrize(
    ("kwargs", "read"),
    [
        ({"max_jobs": 3}, lambda s: s.jobs.max_running == 3),
        ({"segment_chars": 100}, lambda s: s.segment.chars == 100),
        ({"gazetteer": False}, lambda s: not s.gazetteer.enabled),
        ({"retrieval": "sentence"}, lambda s: s.retrieval.mode == "sentence"),
        ({"encoder_support_k": 3, "encoder": {"timeout_s": 2.0}}, lambda s: (s.encoder.support_k, s.encoder.timeout_s) == (3, 2.0)),
        ({"llm_adapter": "none", "llm_threads": 1}, lambda s: (s.llm.adapter, s.llm.threads) == ("none", 1)),
    ],
)  # fmt: skip
def test_an_old_keyword_still_works_and_warns(kwargs: dict[str, object], read: object) -> None:
    with pytest.warns(DeprecationWarning, match="is deprecated"):
        settings = load_settings(**kwargs)
    assert callable(read) and read(settings)
    with pytest.warns(DeprecationWarning, match="is deprecated"):
        assert callable(read) and read(Settings(**kwargs))  # type: ignore[arg-type]


def test_the_old_keyword_keeps_its_validation() -> None:
    with pytest.raises(ValueError, match="llm adapter"), pytest.warns(DeprecationWarning):
        load_settings(llm_adapter="/no/such/adapter.gguf")
    with pytest.raises(ValueError, match="llm adapter"):
        load_settings(llm={"adapter": "/no/such/adapter.gguf"})


def test_nested_keywords_do_not_warn(recwarn: pytest.WarningsRecorder) -> None:
    settings = load_settings(encoder={"support_k": 3}, gazetteer={"enabled": False})
    assert (settings.encoder.support_k, settings.gazetteer.enabled) == (3, False)
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]


def test_the_settings_import_no_method_code() -> None:
    """The method packages' settings groups are pydantic only: loading the settings loads no
    handler, model or engine."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, nerve.settings; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
    ).stdout.split()
    ours = {name for name in loaded if name.split(".")[0] == "nerve"}
    packages = {"nerve", "nerve.methods", "nerve.methods.auto", "nerve.methods.cllmfs"}
    packages |= {"nerve.methods.encoders", "nerve.methods.wraner"}
    assert ours - packages == {
        "nerve.settings",
        "nerve.methods.auto.settings",
        "nerve.methods.cllmfs.settings",
        "nerve.methods.encoders.settings",
        "nerve.methods.wraner.settings",
    }
    assert not {"torch", "numpy", "onnxruntime"} & set(loaded)
