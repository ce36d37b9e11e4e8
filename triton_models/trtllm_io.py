"""Tokenizer-side logic of the GPU ensemble's ``preprocessing`` and ``postprocessing`` models.

The TensorRT-LLM engine speaks token ids; these two Python models turn the ensemble's text
tensors into ids and back. Their ``model.py`` files (``model_repository/gpu_templates``) are
:class:`triton_models.adapter.PythonModel` over :class:`Preprocessing` and :class:`Postprocessing`,
which run anywhere with a Hugging Face tokenizer (the tests use packaged or locally trained
ones: TensorRT-LLM itself needs a GPU).

Two things the engine cannot do for itself are done here:

- **Stop words as the engine will see them.** TensorRT-LLM stops when the *token ids* of a stop
  word appear at the end of the output. Tokenizing ``"\\n\\n"`` or ``"###"`` on their own (what
  tensorrtllm_backend's own preprocessing does) often gives ids the model never emits at the end
  of an answer: SentencePiece prepends a word-boundary piece, BPE merges the string with what
  precedes or follows it. :meth:`TokenizerIO.stop_word_variants` therefore sends several id
  sequences per stop string: the plain tokenization, the tokens that cover each occurrence of
  the string in a prompt of :mod:`nerve.prompting.prompt` with answered examples (in-context
  tokenization: the answers end there exactly as the model's answers do), and every single
  vocabulary token whose text contains the string. The strings themselves still come from the
  request (the gateway sends :data:`nerve.prompting.prompt.STOP_SEQUENCES`), and the gateway still cuts
  the text at the first stop string, so a tokenization not covered here costs only the tokens
  generated past it, never a wrong answer.
- **The engine's limits as request errors.** A prompt longer than the engine's ``max_input_len``
  (or prompt plus ``max_tokens`` past ``max_seq_len``) is refused here with the contract's
  ``invalid_request: `` marker, which the gateway answers with a 422 instead of a 503. So is a
  guided-decoding guide the engine would refuse (:func:`check_guide`): an unknown guide type, a
  type without its guide, or any guide when the engine serves no guided decoding. The guide
  itself goes from the ensemble's inputs straight to ``tensorrt_llm`` (its
  ``guided_decoding_guide_type``/``guided_decoding_guide``), where XGrammar applies it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nerve.errors import InvalidRequest
from nerve.prompting.prompt import STOP_SEQUENCES, build_prompt
from nerve.vocab.types import EntityType, Example, Span
from nerve.wire.llm import GUIDE, GUIDE_TYPE, MalformedTensors
from triton_models.adapter import Call, ConfigError, ModelConfig, Tensors


def stop_context_text() -> str:
    """A prompt as the gateway builds them, with an answer listing entities and a ``none``
    answer, each ended and followed as the model ends and follows its own answers."""
    examples = [
        Example(
            text="Anna Berg moved from Oslo to Acme Corp.",
            entities=[
                Span(start=0, end=9, type="person"),
                Span(start=21, end=25, type="location"),
                Span(start=29, end=38, type="organisation"),
            ],
        ),
        Example(text="It rained all day.", entities=[]),
    ]
    types = [EntityType(name=name) for name in ("person", "location", "organisation")]
    return build_prompt(types, examples, "Bob works for Acme in Paris.").text


def _strings(array: np.ndarray | None) -> list[str]:
    if array is None:
        return []
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in array.reshape(-1)]


def _optional_limit(value: str | int | None) -> int | None:
    """A limit from a config parameter: empty (or unset) means none; otherwise at least 1."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    limit = int(value)
    if limit < 1:
        raise ValueError(f"an engine limit must be at least 1; got {limit}")
    return limit


def pack_word_ids(sequences: Sequence[Sequence[int]]) -> np.ndarray:
    """TensorRT-LLM's ``[2, n]`` word list: all words' ids, then their end offsets.

    Row 0 concatenates each sequence's ids; row 1 holds the cumulative end of each sequence,
    padded with -1. No sequence is ``[[0], [-1]]`` (TensorRT-LLM's "no words").
    """
    ids: list[int] = []
    ends: list[int] = []
    for sequence in sequences:
        if not sequence:
            continue
        ids += [int(i) for i in sequence]
        ends.append(len(ids))
    if not ids:
        return np.array([[0], [-1]], dtype=np.int32)
    offsets = ends + [-1] * (len(ids) - len(ends))
    return np.array([ids, offsets], dtype=np.int32)


class TokenizerIO:
    """Encoding and decoding with one tokenizer (``transformers`` ``PreTrainedTokenizer``).

    ``max_input_len`` and ``max_seq_len`` are the engine's build limits (``trtllm-build``);
    ``None`` leaves a request unchecked here (the engine then refuses it itself).
    """

    def __init__(
        self,
        tokenizer: Any,
        *,
        add_special_tokens: bool = True,
        max_input_len: int | None = None,
        max_seq_len: int | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.add_special_tokens = add_special_tokens
        self.max_input_len = max_input_len
        self.max_seq_len = max_seq_len
        self._stop_variants: dict[str, list[list[int]]] = {}
        self._vocab_texts: list[str] | None = None
        self._context: tuple[list[int], list[int], str] | None = None

    @classmethod
    def from_dir(
        cls,
        tokenizer_dir: str,
        *,
        add_special_tokens: bool = True,
        max_input_len: str | int | None = None,
        max_seq_len: str | int | None = None,
    ) -> TokenizerIO:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
        return cls(
            tokenizer,
            add_special_tokens=add_special_tokens,
            max_input_len=_optional_limit(max_input_len),
            max_seq_len=_optional_limit(max_seq_len),
        )

    @property
    def end_id(self) -> int:
        for candidate in (self.tokenizer.eos_token_id, self.tokenizer.sep_token_id):
            if candidate is not None:
                return int(candidate)
        raise MalformedTensors("the tokenizer has no end token: send end_id with the request")

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return self.end_id if pad is None else int(pad)

    def encode(self, text: str) -> np.ndarray:
        ids = self.tokenizer.encode(text, add_special_tokens=self.add_special_tokens)
        return np.asarray(ids, dtype=np.int32)

    def _plain(self, text: str) -> list[int]:
        return [int(i) for i in self.tokenizer.encode(text, add_special_tokens=False)]

    def words_to_ids(self, words: Sequence[str]) -> np.ndarray:
        """Each word tokenized on its own, packed for TensorRT-LLM (the bad-words list)."""
        return pack_word_ids([self._plain(word) for word in words if word])

    def stop_words_to_ids(self, words: Sequence[str]) -> np.ndarray:
        """Every id sequence of :meth:`stop_word_variants` of every word, packed."""
        sequences: list[list[int]] = []
        for word in dict.fromkeys(w for w in words if w):
            sequences += self.stop_word_variants(word)
        return pack_word_ids(sequences)

    def stop_word_variants(self, word: str) -> list[list[int]]:
        """The id sequences that mean ``word`` was generated (cached per word).

        - the plain tokenization (what tensorrtllm_backend sends);
        - for each occurrence of ``word`` in :func:`stop_context_text` tokenized as a whole,
          the tokens covering it (with whatever they merged from either side: those ids still
          decode to text containing ``word``);
        - every single vocabulary token whose text contains ``word`` (a BPE "\\n\\n\\n" or
          ".\\n\\n"), since the engine matches ids, not text.

        Only sequences whose text contains ``word`` are kept, so a match never stops an answer
        early: the gateway would have cut the text there too.
        """
        cached = self._stop_variants.get(word)
        if cached is not None:
            return cached
        found: list[list[int]] = [self._plain(word)]
        ids, offsets, text = self._context_tokens()
        ends = [*offsets[1:], len(text)]
        at = text.find(word)
        while at >= 0:
            covering = [i for i in range(len(ids)) if offsets[i] <= at < ends[i]]
            if covering:
                first = covering[-1]
                last = next(i for i in range(first, len(ids)) if ends[i] >= at + len(word))
                found.append(ids[first : last + 1])
            at = text.find(word, at + 1)
        found += [[i] for i, piece in enumerate(self._vocabulary_texts()) if word in piece]
        variants: list[list[int]] = []
        for sequence in found:
            if sequence and sequence not in variants and word in self._decode(sequence):
                variants.append(sequence)
        self._stop_variants[word] = variants
        return variants

    def _context_tokens(self) -> tuple[list[int], list[int], str]:
        """:func:`stop_context_text` as ids, each id's character offset, and its text."""
        if self._context is None:
            ids = self._plain(stop_context_text())
            text, offsets = self.decode_with_offsets(ids)
            self._context = (ids, offsets, text)
        return self._context

    def _decode(self, ids: Sequence[int]) -> str:
        return str(
            self.tokenizer.decode(
                list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False
            )
        )

    def _vocabulary_texts(self) -> list[str]:
        """The text of every token id on its own, decoded once."""
        if self._vocab_texts is None:
            size = len(self.tokenizer)
            self._vocab_texts = [
                str(text)
                for text in self.tokenizer.batch_decode(
                    [[i] for i in range(size)],
                    skip_special_tokens=False,
                    clean_up_tokenization_spaces=False,
                )
            ]
        return self._vocab_texts

    def check_limits(self, input_len: int, max_tokens: int) -> None:
        """Refuse what the engine cannot run, as a request the caller must change."""
        if max_tokens < 1:
            raise InvalidRequest(f"max_tokens must be at least 1; got {max_tokens}")
        if self.max_input_len is not None and input_len > self.max_input_len:
            raise InvalidRequest(
                f"the prompt is {input_len} tokens: more than the engine's max_input_len of "
                f"{self.max_input_len} tokens; send fewer examples (top_k) or a shorter text"
            )
        if self.max_seq_len is not None and input_len + max_tokens > self.max_seq_len:
            raise InvalidRequest(
                f"the prompt is {input_len} tokens and max_tokens is {max_tokens}: together "
                f"more than the engine's max_seq_len of {self.max_seq_len} tokens; send fewer "
                "examples (top_k), a shorter text or a smaller max_tokens"
            )

    def decode_with_offsets(self, ids: Sequence[int]) -> tuple[str, list[int]]:
        """The text of ``ids`` and the character offset where each token's text starts.

        Decoding prefixes keeps what the tokenizer does to spaces and merged pieces; a token
        whose prefix is not a prefix of the full text (a tokenizer's clean-up) gets the offset
        of the longest common part.
        """
        text = self.tokenizer.decode(list(ids), skip_special_tokens=True)
        offsets: list[int] = []
        for i in range(len(ids)):
            prefix = self.tokenizer.decode(list(ids[:i]), skip_special_tokens=True)
            offsets.append(_common_prefix(prefix, text))
        return text, offsets


def _common_prefix(a: str, b: str) -> int:
    if b.startswith(a):
        return len(a)
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


# TensorRT-LLM's guide types (GuidedDecodingParams.GuideType, as tensorrtllm_backend maps the
# guided_decoding_guide_type strings); all but "json" need a guide.
GUIDE_TYPES = ("json", "json_schema", "regex", "ebnf_grammar")


def check_guide(kind: str | None, guide: str | None, backend: str) -> None:
    """Refuse, as a request to change, a guide ``tensorrt_llm`` would fail on.

    ``backend`` is the engine's ``guided_decoding_backend`` (empty: guided decoding is off).
    """
    if kind is None and guide is None:
        return
    if not backend:
        raise InvalidRequest(
            f"this engine serves no guided decoding (guided_decoding_backend is empty): "
            f"send no {GUIDE_TYPE}, or turn NERVE_WRANER_CONSTRAINED_DECODING off"
        )
    if kind is None:
        raise InvalidRequest(f"{GUIDE} needs a {GUIDE_TYPE}")
    if kind not in GUIDE_TYPES:
        raise InvalidRequest(f"{GUIDE_TYPE} must be one of {', '.join(GUIDE_TYPES)}; got {kind!r}")
    if kind != "json" and not guide:
        raise InvalidRequest(f"{GUIDE_TYPE} {kind!r} needs a {GUIDE}")


def _optional_string(array: np.ndarray | None) -> str | None:
    values = _strings(array)
    if len(values) > 1:
        raise MalformedTensors(f"one guide per request, got {len(values)}")
    return values[0] if values and values[0] else None


def preprocess(
    io: TokenizerIO, tensors: Mapping[str, np.ndarray | None], guided_decoding_backend: str = ""
) -> dict[str, np.ndarray]:
    """``preprocessing`` for one request (batch of one): text and words to token ids.

    Raises :class:`InvalidRequest` when the prompt does not fit the engine, or its guide would
    fail there (:func:`check_guide`).
    """
    check_guide(
        _optional_string(tensors.get("GUIDED_DECODING_GUIDE_TYPE")),
        _optional_string(tensors.get("GUIDED_DECODING_GUIDE")),
        guided_decoding_backend,
    )
    queries = _strings(tensors.get("QUERY"))
    limit = tensors.get("REQUEST_OUTPUT_LEN")
    if len(queries) != 1 or limit is None:
        raise MalformedTensors("QUERY (one text) and REQUEST_OUTPUT_LEN are required")
    ids = io.encode(queries[0])
    max_tokens = int(np.asarray(limit).reshape(-1)[0])
    io.check_limits(len(ids), max_tokens)
    end_id = tensors.get("END_ID")
    pad_id = tensors.get("PAD_ID")
    return {
        "INPUT_ID": ids.reshape(1, -1),
        "REQUEST_INPUT_LEN": np.array([[len(ids)]], dtype=np.int32),
        "REQUEST_OUTPUT_LEN": np.array([[max_tokens]], dtype=np.int32),
        "STOP_WORDS_IDS": io.stop_words_to_ids(_strings(tensors.get("STOP_WORDS_DICT")))[None],
        "BAD_WORDS_IDS": io.words_to_ids(_strings(tensors.get("BAD_WORDS_DICT")))[None],
        "OUT_END_ID": np.array(
            [[io.end_id if end_id is None else int(end_id.reshape(-1)[0])]], dtype=np.int32
        ),
        "OUT_PAD_ID": np.array(
            [[io.pad_id if pad_id is None else int(pad_id.reshape(-1)[0])]], dtype=np.int32
        ),
    }


def postprocess(io: TokenizerIO, tensors: Mapping[str, np.ndarray | None]) -> dict[str, np.ndarray]:
    """``postprocessing`` for one request: generated ids to text, log-probs, token offsets.

    The engine runs with ``exclude_input_in_output``, so ``TOKENS_BATCH`` ``[1, beam, len]``
    holds generated ids only, valid up to ``SEQUENCE_LENGTH`` ``[1, beam]``.
    """
    tokens = tensors.get("TOKENS_BATCH")
    lengths = tensors.get("SEQUENCE_LENGTH")
    if tokens is None or lengths is None:
        raise MalformedTensors("TOKENS_BATCH and SEQUENCE_LENGTH are required")
    tokens = np.asarray(tokens).reshape(-1, np.asarray(tokens).shape[-1])
    lengths = np.asarray(lengths).reshape(-1)
    log_probs = tensors.get("OUTPUT_LOG_PROBS")
    texts, offsets_rows, logprob_rows = [], [], []
    for beam, (row, length) in enumerate(zip(tokens, lengths, strict=True)):
        ids = [int(i) for i in row[: int(length)]]
        text, offsets = io.decode_with_offsets(ids)
        texts.append(text.encode("utf-8"))
        offsets_rows.append(offsets)
        if log_probs is None:
            logprob_rows.append(np.zeros(len(ids), dtype=np.float32))
        else:
            logprob_rows.append(np.asarray(log_probs).reshape(len(lengths), -1)[beam, : len(ids)])
    width = max((len(r) for r in offsets_rows), default=0)
    offsets_out = np.full((1, len(texts), width), -1, dtype=np.int32)
    logprobs_out = np.zeros((1, len(texts), width), dtype=np.float32)
    for beam, (offs, lps) in enumerate(zip(offsets_rows, logprob_rows, strict=True)):
        offsets_out[0, beam, : len(offs)] = offs
        logprobs_out[0, beam, : len(offs)] = lps
    cum = tensors.get("CUM_LOG_PROBS")
    return {
        "OUTPUT": np.array([texts], dtype=np.object_),
        "OUT_CUM_LOG_PROBS": (
            logprobs_out.sum(axis=-1) if cum is None else np.asarray(cum, np.float32).reshape(1, -1)
        ),
        "OUT_OUTPUT_LOG_PROBS": logprobs_out,
        "OUT_TOKEN_OFFSETS": offsets_out,
    }


def tokenizer_from_config(config: ModelConfig) -> TokenizerIO:
    """The tokenizer a pre/postprocessing config names; the engine's limits where it has them."""
    special = config.text("add_special_tokens", "true").strip().lower()
    if special not in ("true", "false"):
        raise ConfigError(
            f"{config.name}: config.pbtxt add_special_tokens must be 'true' or 'false'; "
            f"got {special!r}"
        )
    return TokenizerIO.from_dir(
        config.text("tokenizer_dir"),
        add_special_tokens=special == "true",
        # The engine's build limits: a prompt past them is the caller's error (a 422).
        max_input_len=config.parameters.get("max_input_len"),
        max_seq_len=config.parameters.get("max_seq_len"),
    )


class Preprocessing:
    """The ``preprocessing`` model's handler: text to token ids."""

    def __init__(self, io: TokenizerIO, guided_decoding_backend: str = "") -> None:
        self.io = io
        self.guided_decoding_backend = guided_decoding_backend
        # The stop strings the gateway sends, tokenized now rather than on the first request.
        io.stop_words_to_ids(STOP_SEQUENCES)

    @classmethod
    def from_config(cls, config: ModelConfig) -> Preprocessing:
        backend = config.text("guided_decoding_backend", "").strip()
        return cls(tokenizer_from_config(config), guided_decoding_backend=backend)

    def __call__(self, tensors: Tensors, call: Call) -> dict[str, np.ndarray]:
        return preprocess(self.io, tensors, self.guided_decoding_backend)


class Postprocessing:
    """The ``postprocessing`` model's handler: generated ids to text and token offsets."""

    def __init__(self, io: TokenizerIO) -> None:
        self.io = io

    @classmethod
    def from_config(cls, config: ModelConfig) -> Postprocessing:
        return cls(tokenizer_from_config(config))

    def __call__(self, tensors: Tensors, call: Call) -> dict[str, np.ndarray]:
        return postprocess(self.io, tensors)
