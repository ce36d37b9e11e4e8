"""Strict filling of the Triton ``config.pbtxt`` templates: ``${name}`` placeholders.

Unlike ``string.Template.safe_substitute``, nothing is left silently: a placeholder without a
value, a value no template uses, or a ``${`` surviving the substitution is an error.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from pathlib import Path

PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
CONFIG_NAME = "config.pbtxt"


class TemplateError(ValueError):
    """A template and its values do not match."""


def placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


def fill_template(text: str, values: Mapping[str, str], *, source: str = "template") -> str:
    missing = sorted(placeholders(text) - set(values))
    if missing:
        raise TemplateError(f"{source}: no value for {', '.join('${' + m + '}' for m in missing)}")
    filled = PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)
    if "${" in filled:
        raise TemplateError(f"{source}: a '${{' is left after filling (a malformed placeholder?)")
    return filled


def repository_placeholders(templates: Path) -> set[str]:
    names: set[str] = set()
    for config in sorted(templates.glob(f"*/{CONFIG_NAME}")):
        names |= placeholders(config.read_text())
    return names


def fill_repository(
    templates: Path, target: Path, values: Mapping[str, str], *, suffix: str = ""
) -> list[Path]:
    """Copy the template repository to ``target`` with every ``config.pbtxt`` filled.

    Every value must be used by some template (a misspelt option would otherwise be ignored).
    Each model directory is named the template's name plus ``suffix`` (the configs name their
    models with the same suffix). Returns the filled config files.
    """
    configs = sorted(templates.glob(f"*/{CONFIG_NAME}"))
    if not configs:
        raise TemplateError(f"no */{CONFIG_NAME} under {templates}")
    unused = sorted(set(values) - repository_placeholders(templates))
    if unused:
        raise TemplateError(f"values that no template uses: {', '.join(unused)}")
    filled = {
        config.relative_to(templates): fill_template(
            config.read_text(), values, source=str(config.relative_to(templates))
        )
        for config in configs
    }
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for config in configs:
        model_dir = config.parent
        out_dir = target / (model_dir.name + suffix)
        shutil.copytree(
            model_dir,
            out_dir,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns(CONFIG_NAME, "__pycache__", ".gitkeep"),
        )
        out = out_dir / CONFIG_NAME
        out.write_text(filled[config.relative_to(templates)])
        written.append(out)
    return written
