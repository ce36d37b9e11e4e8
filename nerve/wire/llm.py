"""The tensor contract between the gateway and a Triton LLM (``nerve_llm_tensors.v2``).

It is the TensorRT-LLM ensemble's interface (``text_input``, ``max_tokens``, ``stop_words``,
``bad_words``, ``return_log_probs``, ``guided_decoding_guide_type``, ``guided_decoding_guide``
→ ``text_output``, ``cum_log_probs``, ``output_log_probs``) plus one output of ours,
``output_token_offsets``: the character offset of every generated token in ``text_output``, so
per-token log-probabilities can be mapped onto entity spans. The CPU model
(``model_repository/llm_cpu``) and the GPU ensemble (``model_repository/gpu_templates``) both
serve it; this module encodes and decodes it for both sides.

v2 added the two guided-decoding inputs (optional): the answer grammar
(:mod:`nerve.prompting.answer_grammar`) as guide type ``ebnf_grammar``. Its text is in the subset of
GBNF that llama.cpp (the CPU model) and XGrammar (TensorRT-LLM's guided decoding) both read. A
v1 model would refuse them as unknown inputs, hence the new version.

Shapes follow the ensemble: a leading batch dimension, then ``[1]`` for scalars, ``[beam]`` for
``text_output``/``cum_log_probs`` and ``[beam, tokens]`` for the per-token outputs (beam 1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from nerve.errors import BackendTimeout, InvalidRequest
from nerve.generation.base import Generation, TokenLogprob

CONTRACT_VERSION = "nerve_llm_tensors.v2"

TEXT_INPUT = "text_input"
MAX_TOKENS = "max_tokens"
STOP_WORDS = "stop_words"
BAD_WORDS = "bad_words"
RETURN_LOG_PROBS = "return_log_probs"
# Guided decoding, named and typed as TensorRT-LLM's ensemble and tensorrt_llm model name them.
GUIDE_TYPE = "guided_decoding_guide_type"
GUIDE = "guided_decoding_guide"
# The one guide type nerve sends (and the CPU model accepts): a grammar.
EBNF_GRAMMAR = "ebnf_grammar"

TEXT_OUTPUT = "text_output"
CUM_LOG_PROBS = "cum_log_probs"
OUTPUT_LOG_PROBS = "output_log_probs"
OUTPUT_TOKEN_OFFSETS = "output_token_offsets"
OUTPUTS = (TEXT_OUTPUT, CUM_LOG_PROBS, OUTPUT_LOG_PROBS, OUTPUT_TOKEN_OFFSETS)

# A request parameter (not a tensor: TensorRT-LLM has no such input): the caller's remaining
# time in milliseconds, after which the CPU model stops generating.
TIMEOUT_PARAMETER = "timeout_ms"

# An error the model sends for a request the caller must change (the prompt does not fit):
# the gateway turns messages carrying this marker into a 422, everything else into a 503.
INVALID_REQUEST_MARKER = "invalid_request: "
# An error the model sends when it stopped at the caller's deadline: the gateway answers it as a
# timeout, exactly as when its own gRPC deadline fires first (which one wins is a race).
TIMEOUT_MARKER = "deadline_exceeded: "


class MalformedTensors(ValueError):
    """Tensors that do not follow the contract (wrong names, shapes or lengths)."""


def error_message(exc: Exception) -> tuple[str, bool]:
    """A model's error for one request: (message, whether the caller must change the request).

    Requests the caller must change carry :data:`INVALID_REQUEST_MARKER` (a 422 at the gateway,
    ``nerve.generation.triton``, even when an ensemble prefixes the failing step), a passed
    deadline carries :data:`TIMEOUT_MARKER` (a timeout); anything else is the backend's fault.
    """
    if isinstance(exc, InvalidRequest | MalformedTensors):
        return INVALID_REQUEST_MARKER + str(exc), True
    if isinstance(exc, BackendTimeout):
        return TIMEOUT_MARKER + str(exc), False
    return str(exc), False


@dataclass(frozen=True)
class LLMCall:
    """One decoded request row."""

    prompt: str
    max_tokens: int
    stop: tuple[str, ...] = ()
    return_log_probs: bool = True
    # The grammar the answer must match (guide type ebnf_grammar), or None.
    grammar: str | None = None


def _strings(array: np.ndarray) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in array.reshape(-1)]


def encode_request(
    prompt: str,
    max_tokens: int,
    stop: Sequence[str],
    *,
    return_log_probs: bool = True,
    grammar: str | None = None,
) -> dict[str, np.ndarray]:
    """The input tensors of one request (batch of one); ``grammar``: GBNF the answer must match."""
    tensors = {
        TEXT_INPUT: np.array([[prompt.encode("utf-8")]], dtype=np.object_),
        MAX_TOKENS: np.array([[max_tokens]], dtype=np.int32),
        RETURN_LOG_PROBS: np.array([[return_log_probs]], dtype=np.bool_),
    }
    if stop:
        tensors[STOP_WORDS] = np.array([[s.encode("utf-8") for s in stop]], dtype=np.object_)
    if grammar is not None:
        tensors[GUIDE_TYPE] = np.array([[EBNF_GRAMMAR.encode()]], dtype=np.object_)
        tensors[GUIDE] = np.array([[grammar.encode("utf-8")]], dtype=np.object_)
    return tensors


def decode_request(tensors: Mapping[str, np.ndarray | None]) -> list[LLMCall]:
    """Request rows from input tensors (``None`` for an optional input that was not sent)."""
    texts = tensors.get(TEXT_INPUT)
    limits = tensors.get(MAX_TOKENS)
    if texts is None or limits is None:
        raise MalformedTensors(f"{TEXT_INPUT} and {MAX_TOKENS} are required")
    prompts = _strings(texts)
    max_tokens = [int(v) for v in np.asarray(limits).reshape(len(prompts), -1)[:, 0]]
    stops = _per_row_strings(tensors.get(STOP_WORDS), len(prompts))
    bad = _per_row_strings(tensors.get(BAD_WORDS), len(prompts))
    if any(bad):
        raise MalformedTensors(f"{BAD_WORDS} is not supported by this model; send it empty")
    flags = tensors.get(RETURN_LOG_PROBS)
    want = [True] * len(prompts) if flags is None else [bool(v) for v in flags.reshape(-1)]
    grammars = _grammars(tensors.get(GUIDE_TYPE), tensors.get(GUIDE), len(prompts))
    return [LLMCall(*row) for row in zip(prompts, max_tokens, stops, want, grammars, strict=True)]


def _grammars(types: np.ndarray | None, guides: np.ndarray | None, rows: int) -> list[str | None]:
    """Each row's grammar: guide type ``ebnf_grammar`` with its guide, or neither."""
    kinds = [None] * rows if types is None else [s or None for s in _strings(types)]
    texts = [None] * rows if guides is None else [s or None for s in _strings(guides)]
    if len(kinds) != rows or len(texts) != rows:
        raise MalformedTensors(f"{GUIDE_TYPE} and {GUIDE} need one value per prompt")
    grammars: list[str | None] = []
    for kind, text in zip(kinds, texts, strict=True):
        if kind is None and text is None:
            grammars.append(None)
        elif kind is None:
            raise MalformedTensors(f"{GUIDE} needs {GUIDE_TYPE} {EBNF_GRAMMAR!r}")
        elif kind != EBNF_GRAMMAR:
            raise MalformedTensors(
                f"{GUIDE_TYPE} {kind!r} is not supported by this model; send {EBNF_GRAMMAR!r}"
            )
        elif text is None:
            raise MalformedTensors(f"{GUIDE_TYPE} {EBNF_GRAMMAR!r} needs a {GUIDE}")
        else:
            grammars.append(text)
    return grammars


def _per_row_strings(array: np.ndarray | None, rows: int) -> list[tuple[str, ...]]:
    if array is None:
        return [()] * rows
    matrix = np.asarray(array).reshape(rows, -1)
    return [tuple(s for s in _strings(row) if s) for row in matrix]


def encode_response(generation: Generation) -> dict[str, np.ndarray]:
    """The output tensors of one generation (batch of one, beam of one).

    When generation ran out of tokens (``finish_reason`` ``length``), the tokens cut off the
    text (``completion_tokens`` past ``tokens``: a grammar-constrained answer ends at its last
    complete line) are sent at the text's end with log-prob 0, as the GPU engine sends tokens
    past a stop word: their count is how the gateway tells that ``max_tokens`` ran out.
    """
    cut = 0
    if generation.finish_reason == "length":
        cut = max(0, generation.completion_tokens - len(generation.tokens))
    end = len(generation.text)
    logprobs = np.array(
        [[[*(t.logprob for t in generation.tokens), *([0.0] * cut)]]], dtype=np.float32
    )
    offsets = np.array([[[*(t.offset for t in generation.tokens), *([end] * cut)]]], dtype=np.int32)
    return {
        TEXT_OUTPUT: np.array([[generation.text.encode("utf-8")]], dtype=np.object_),
        CUM_LOG_PROBS: np.array([[logprobs.sum()]], dtype=np.float32),
        OUTPUT_LOG_PROBS: logprobs.reshape(1, 1, -1),
        OUTPUT_TOKEN_OFFSETS: offsets.reshape(1, 1, -1),
    }


def decode_response(
    tensors: Mapping[str, np.ndarray | None], *, max_tokens: int, stop: Sequence[str] = ()
) -> Generation:
    """A :class:`Generation` from output tensors, cut before the first stop sequence.

    The GPU engine keeps a stop word in its output (it generated it); the CPU model has already
    cut it. Cutting here makes both paths give the same text.
    """
    missing = [name for name in OUTPUTS if tensors.get(name) is None]
    if missing:
        raise MalformedTensors(f"missing outputs {missing}")
    texts = _strings(tensors[TEXT_OUTPUT])  # type: ignore[arg-type]
    if len(texts) != 1:
        raise MalformedTensors(f"{TEXT_OUTPUT} holds {len(texts)} texts, expected 1")
    text = texts[0]
    logprobs = np.asarray(tensors[OUTPUT_LOG_PROBS], dtype=np.float64).reshape(-1)
    offsets = np.asarray(tensors[OUTPUT_TOKEN_OFFSETS]).reshape(-1).astype(np.int64)
    if len(logprobs) != len(offsets):
        raise MalformedTensors(f"{len(logprobs)} log-probs but {len(offsets)} token offsets")
    if len(offsets) and (np.any(np.diff(offsets) < 0) or offsets[0] < 0):
        raise MalformedTensors("token offsets are not ascending from 0")
    if len(offsets) and offsets[-1] > len(text):
        raise MalformedTensors(f"token offset {offsets[-1]} is past the text ({len(text)} chars)")
    n_generated = len(offsets)
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=None)
    stopped = cut is not None
    if cut is not None:
        text = text[:cut]
    ends = [*offsets[1:].tolist(), len(text)][: len(offsets)]
    tokens = [
        TokenLogprob(text=text[start : min(end, len(text))], logprob=float(value), offset=start)
        for start, end, value in zip(offsets.tolist(), ends, logprobs.tolist(), strict=True)
        if start < len(text)
    ]
    finish = "length" if n_generated >= max_tokens and not stopped else "stop"
    return Generation(text=text, tokens=tokens, finish_reason=finish, completion_tokens=n_generated)
