"""The IF-WRANER style instruction prompt (``wraner_prompt.v1``).

One module builds every prompt nerve ever sends or trains on: the gateway, the trainers and the
Triton models import it, so training and serving prompts cannot drift apart. The answer format
is one entity per line, ``<entity text> | <type>``, in textual order, or ``none``; the answer
ends with a blank line, which is also the generation's stop sequence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nerve.vocab.types import EntityType, Example

PROMPT_VERSION = "wraner_prompt.v1"
SEPARATOR = " | "
NO_ENTITY = "none"
ANSWER_END = "\n\n"
STOP_SEQUENCES: tuple[str, ...] = ("\n\n", "###")

_INSTRUCTION = (
    "### Instruction\n"
    "Find the named entities in the last sentence. Use only these entity types:\n"
    "{types}\n"
    'Answer with one entity per line as "<entity text>{sep}<type>", in the order they appear '
    'in the sentence, copying the text exactly. Answer "{none}" if there is no entity.\n\n'
)
_BLOCK = "### Sentence\n{sentence}\n### Entities\n"


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt; ``prefix`` is its query-independent head (worth caching)."""

    text: str
    prefix: str
    version: str = PROMPT_VERSION


def render_types(entity_types: Sequence[EntityType]) -> str:
    lines = []
    for etype in entity_types:
        desc = " ".join(etype.description.split())
        lines.append(f"- {etype.name}: {desc}" if desc else f"- {etype.name}")
    return "\n".join(lines)


def render_answer(example: Example, allowed: Sequence[str] | None = None) -> str:
    """The gold answer of ``example`` (restricted to ``allowed`` types), including ANSWER_END."""
    allowed_set = set(allowed) if allowed is not None else None
    # The sentence is shown on one line (_one_line); a surface spanning a line break must be
    # written the same way, or the answer breaks the one-entity-per-line format.
    lines = [
        f"{_one_line(surface)}{SEPARATOR}{etype}"
        for surface, etype in example.mentions()
        if allowed_set is None or etype in allowed_set
    ]
    return ("\n".join(lines) if lines else NO_ENTITY) + ANSWER_END


def build_prompt(
    entity_types: Sequence[EntityType],
    examples: Sequence[Example],
    query: str,
) -> Prompt:
    """Instruction with the entity types, the retrieved examples with answers, then the query.

    Each example's answer keeps only the requested types, so the model sees the types it is
    asked for and nothing else. Examples come most similar last: nearest to the query.
    """
    if not entity_types:
        raise ValueError("a prompt needs at least one entity type")
    names = [t.name for t in entity_types]
    prefix = _INSTRUCTION.format(types=render_types(entity_types), sep=SEPARATOR, none=NO_ENTITY)
    parts = [prefix]
    for example in examples:
        parts.append(_BLOCK.format(sentence=_one_line(example.text)))
        parts.append(render_answer(example, names))
    parts.append(_BLOCK.format(sentence=_one_line(query)))
    return Prompt(text="".join(parts), prefix=prefix)


def instruction_prefix(prompt: str) -> str:
    """The instruction at the head of a prompt :func:`build_prompt` wrote (what
    ``Prompt.prefix`` holds), or "" for a prompt of another shape."""
    if not prompt.startswith(_INSTRUCTION[: _INSTRUCTION.index("\n") + 1]):
        return ""
    end = prompt.find("\n\n" + _BLOCK[: _BLOCK.index("\n") + 1])
    return prompt[: end + 2] if end >= 0 else ""


def fit_prompt(
    entity_types: Sequence[EntityType],
    examples: Sequence[Example],
    query: str,
    fits: Callable[[str], bool],
) -> tuple[Prompt, int]:
    """:func:`build_prompt` with as many of ``examples`` (most similar last) as ``fits`` the
    prompt text: the least similar go first, down to none. Returns the prompt and how many
    examples it holds. Training and serving size their prompts the same way."""
    kept = list(examples)
    while True:
        prompt = build_prompt(entity_types, kept, query)
        if not kept or fits(prompt.text):
            return prompt, len(kept)
        kept.pop(0)


def _one_line(text: str) -> str:
    # The prompt is line-structured; a newline inside a sentence would break it. The parser
    # grounds spans against the original text, so this normalisation never shifts offsets.
    return " ".join(text.split())
