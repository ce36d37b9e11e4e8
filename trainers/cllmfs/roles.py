"""Which tokens of a training prompt the contrastive loss sees, and as what.

The prompt is :mod:`nerve.prompting.prompt`'s: blocks ``### Sentence\\n<text>\\n### Entities\\n<answer>``
where each answer line is ``<surface> | <type>``. The gold mentions are read back from the
rendered text with the gateway's own parser (:func:`nerve.prompting.parser.parse_answer`), which
grounds each line in its sentence: so every mention is found twice, in the sentence and in its
answer line. Token roles: the mention's type id (1-based, in prompt order) for tokens of a
mention; 0 for non-entity sentence tokens within ``window`` tokens of a mention token; IGNORE
elsewhere. Anchors are the entity tokens of the trained answer (the query's).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from nerve.prompting.parser import parse_answer
from nerve.prompting.prompt import ANSWER_END, SEPARATOR
from trainers.cllmfs.loss import IGNORE
from trainers.wraner.prompts import TrainPrompt

# The head of one sentence block of nerve.prompting.prompt (its _BLOCK template).
_BLOCK = re.compile(r"### Sentence\n(?P<sentence>[^\n]*)\n### Entities\n")
NON_ENTITY = 0


def prompt_type_names(prompt: TrainPrompt) -> list[str]:
    """The type names as the prompt shows them (renamed ones under their new name)."""
    return [prompt.renamed.get(t, t) for t in prompt.types]


def char_roles(prompt: TrainPrompt) -> tuple[list[int], list[int]]:
    """One role per character of the prompt text and of the answer text: IGNORE, NON_ENTITY
    (a sentence's) or a type id."""
    names = prompt_type_names(prompt)
    ids = {name: i + 1 for i, name in enumerate(names)}
    text, answer = prompt.prompt, prompt.answer
    prompt_roles = [IGNORE] * len(text)
    answer_roles = [IGNORE] * len(answer)
    blocks = list(_BLOCK.finditer(text))
    for index, block in enumerate(blocks):
        start, end = block.span("sentence")
        sentence = block.group("sentence")
        prompt_roles[start:end] = [NON_ENTITY] * (end - start)
        last = index == len(blocks) - 1
        if last:  # the query: its answer is the training target
            raw, raw_start, roles = answer, 0, answer_roles
        else:
            stop = text.find(ANSWER_END, block.end())
            stop = len(text) if stop < 0 else stop
            raw, raw_start, roles = text[block.end() : stop], block.end(), prompt_roles
        parsed = parse_answer(raw, sentence, names)
        for span in parsed.spans:
            type_id = ids[span.type]
            prompt_roles[start + span.start : start + span.end] = [type_id] * (
                span.end - span.start
            )
            line = raw[span.answer_start : span.answer_end]
            surface = len(line.rpartition(SEPARATOR.strip())[0].rstrip())
            a = raw_start + span.answer_start
            roles[a : a + surface] = [type_id] * surface
    return prompt_roles, answer_roles


def token_roles(
    offsets: Sequence[tuple[int, int]], text: str, chars: Sequence[int], window: int
) -> list[int]:
    """Per token: the type id of a mention it overlaps, NON_ENTITY for a sentence token within
    ``window`` tokens of an entity token, else IGNORE. Whitespace carried by a token is not
    looked at (``" Paris"`` is a token of the mention ``Paris``)."""
    roles: list[int] = []
    for start, end in offsets:
        seen = [chars[c] for c in range(start, end) if not text[c].isspace()]
        types = [r for r in seen if r > 0]
        if types:
            roles.append(types[0])
        elif seen and all(r == NON_ENTITY for r in seen):
            roles.append(NON_ENTITY)
        else:
            roles.append(IGNORE)
    entity = [i for i, r in enumerate(roles) if r > 0]
    for i, role in enumerate(roles):
        if role == NON_ENTITY and not any(abs(i - j) <= window for j in entity):
            roles[i] = IGNORE
    return roles


def encode_roles(
    tokenizer: Any, prompt: TrainPrompt, window: int
) -> tuple[list[int], list[int], list[int]]:
    """(input ids, roles, anchor flags) of prompt + answer, tokenised as the trainer encodes them
    (prompt with BOS, answer apart)."""
    prompt_chars, answer_chars = char_roles(prompt)
    head = tokenizer(prompt.prompt, add_special_tokens=True, return_offsets_mapping=True)
    tail = tokenizer(prompt.answer, add_special_tokens=False, return_offsets_mapping=True)
    head_roles = token_roles(head["offset_mapping"], prompt.prompt, prompt_chars, window)
    tail_roles = token_roles(tail["offset_mapping"], prompt.answer, answer_chars, window)
    # Answer tokens are entity tokens or nothing: the answer holds no sentence text.
    tail_roles = [r if r > 0 else IGNORE for r in tail_roles]
    ids = list(head["input_ids"]) + list(tail["input_ids"])
    anchors = [0] * len(head_roles) + [int(r > 0) for r in tail_roles]
    return ids, head_roles + tail_roles, anchors
