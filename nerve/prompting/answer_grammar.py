"""A GBNF grammar (llama.cpp) that admits only answers :mod:`nerve.prompting.parser` reads cleanly.

The answer format is :mod:`nerve.prompting.prompt`'s: ``none`` or one ``<entity text> | <type>`` line
per entity, ending with a blank line. The grammar admits exactly the request's type names
and, given the query text, only entity texts that are runs of the text's consecutive pieces
(words and punctuation marks, joined as the prompt shows them): so every line the model writes
parses, names a requested type and is found in the text. Decoding under it cannot produce a
malformed line, an unknown type, markup or trailing text; a model that would have written one
writes the most likely admissible continuation instead.

The grammar is linear in the text: piece ``i`` starts a rule ``p<i> ::= "piece_i" (sep p<i+1>)?``
so any run of pieces starting at ``i`` is one path, and ``surface`` chooses a start. A run stops
before a second "#" in a row: "###" opens a prompt block, where the parser ends the answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from nerve.prompting.prompt import ANSWER_END, NO_ENTITY, SEPARATOR

GRAMMAR_VERSION = "wraner_answer_grammar.v2"
# Pieces of a text: runs of word characters, or one other non-space character.
_PIECE = re.compile(r"\w+|[^\w\s]")
# Without a text, an entity text is any run of these many characters but "|" and line breaks.
FREE_SURFACE_CHARS = 120


def answer_grammar(types: Sequence[str], text: str | None = None, max_lines: int = 64) -> str:
    """The GBNF of an answer naming only ``types``; entity texts come from ``text`` if given.

    ``max_lines`` bounds the number of entity lines (the answer must end after that many).
    """
    if not types:
        raise ValueError("a grammar needs at least one entity type")
    if max_lines < 1:
        raise ValueError(f"max_lines must be at least 1; got {max_lines}")
    names = list(dict.fromkeys(types))
    rules = [
        f"root ::= ({_literal(NO_ENTITY)} | line ({_literal(chr(10))} line){{0,{max_lines - 1}}})"
        f" {_literal(ANSWER_END)}",
        f"line ::= surface {_literal(SEPARATOR)} type",
        "type ::= " + " | ".join(_literal(n) for n in names),
    ]
    # The text as the prompt shows it (one line, single spaces): the model copies from that.
    shown = " ".join(text.split()) if text is not None else ""
    pieces = list(_PIECE.finditer(shown))
    if not pieces:
        rules.append(f"surface ::= [^|\\n]{{1,{FREE_SURFACE_CHARS}}}")
        return "\n".join(rules) + "\n"
    rules.append("surface ::= " + " | ".join(f"p{i}" for i in range(len(pieces))))
    for i, piece in enumerate(pieces):
        body = _literal(piece.group())
        gap = shown[piece.end() : pieces[i + 1].start()] if i + 1 < len(pieces) else None
        # A run never holds "##": the parser reads "###" as the next prompt block and cuts the
        # answer there ("C#" stays possible).
        if gap is not None and not (gap == "" and piece.group() == pieces[i + 1].group() == "#"):
            body += f" ({_literal(gap) + ' ' if gap else ''}p{i + 1})?"
        rules.append(f"p{i} ::= {body}")
    return "\n".join(rules) + "\n"


def _literal(value: str) -> str:
    """``value`` as a GBNF string literal."""
    out = []
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'
