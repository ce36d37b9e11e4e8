"""Every committed LLM trainer config validates as its trainer's settings (a typo in a key fails:
the settings forbid unknown keys), and each CLLMFS config is its IF-WRANER fold plus the
contrastive settings, so the two methods compare at the same data and budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from nerve.settings import REPO_ROOT
from trainers.cllmfs.config import CllmfsConfig
from trainers.wraner.config import WranerConfig, load_config

CONFIGS = sorted((REPO_ROOT / "trainers" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_each_config_validates(path: Path) -> None:
    config_class = CllmfsConfig if "cllmfs" in path.name else WranerConfig
    config = load_config(path, config_class=config_class)
    assert config.run_dir and (config.steps is None or config.steps > 0)  # None: by epochs


@pytest.mark.parametrize("fold", ["a", "b"])
def test_a_cllmfs_fold_is_its_wraner_fold_plus_the_contrastive_term(fold: str) -> None:
    configs = REPO_ROOT / "trainers" / "configs"
    wraner = load_config(configs / f"gemma3-270m-cpu-fold-{fold}.yaml")
    cllmfs = load_config(
        configs / f"gemma3-270m-cpu-cllmfs-fold-{fold}.yaml", config_class=CllmfsConfig
    )
    shared = wraner.model_dump(exclude={"run_dir"})
    assert {k: v for k, v in cllmfs.model_dump().items() if k in shared} == shared
    assert isinstance(cllmfs, CllmfsConfig) and cllmfs.contrastive_weight > 0


def test_the_lowercase_run_is_fold_a_plus_lowercased_sentences() -> None:
    configs = REPO_ROOT / "trainers" / "configs"
    fold_a = load_config(configs / "gemma3-270m-cpu-fold-a.yaml")
    lowercase = load_config(configs / "gemma3-270m-cpu-fold-a-lowercase.yaml")
    differ = {k for k, v in lowercase.model_dump().items() if fold_a.model_dump()[k] != v}
    assert differ == {"lowercase_share", "run_dir"} and 0 < lowercase.lowercase_share < 1
