"""Tokenizer-side logic of the GPU ensemble's ``preprocessing`` and ``postprocessing`` models.

The TensorRT-LLM engine speaks token ids; these two Python models turn the ensemble's text
tensors into ids and back. Their ``model.py`` files (``model_repository/gpu_templates``) only
adapt Triton requests to the functions here, which run anywhere with a Hugging Face tokenizer
(the tests use a packaged one: TensorRT-LLM itself needs a GPU).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from app.generation.llm_tensors import MalformedTensors


def _strings(array: np.ndarray | None) -> list[str]:
    if array is None:
        return []
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in array.reshape(-1)]


class TokenizerIO:
    """Encoding and decoding with one tokenizer (``transformers`` ``PreTrainedTokenizer``)."""

    def __init__(self, tokenizer: Any, *, add_special_tokens: bool = True) -> None:
        self.tokenizer = tokenizer
        self.add_special_tokens = add_special_tokens

    @classmethod
    def from_dir(cls, tokenizer_dir: str, *, add_special_tokens: bool = True) -> TokenizerIO:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
        return cls(tokenizer, add_special_tokens=add_special_tokens)

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

    def words_to_ids(self, words: Sequence[str]) -> np.ndarray:
        """TensorRT-LLM's ``[2, n]`` word list: ids of all words, then their end offsets.

        Row 0 concatenates each word's ids; row 1 holds the cumulative end of each word,
        padded with -1. An empty list is ``[[0], [-1]]`` (TensorRT-LLM's "no words").
        """
        ids: list[int] = []
        ends: list[int] = []
        for word in words:
            if not word:
                continue
            ids += self.tokenizer.encode(word, add_special_tokens=False)
            ends.append(len(ids))
        if not ids:
            return np.array([[0], [-1]], dtype=np.int32)
        offsets = ends + [-1] * (len(ids) - len(ends))
        return np.array([ids, offsets], dtype=np.int32)

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


def preprocess(io: TokenizerIO, tensors: Mapping[str, np.ndarray | None]) -> dict[str, np.ndarray]:
    """``preprocessing`` for one request (batch of one): text and words to token ids."""
    queries = _strings(tensors.get("QUERY"))
    limit = tensors.get("REQUEST_OUTPUT_LEN")
    if len(queries) != 1 or limit is None:
        raise MalformedTensors("QUERY (one text) and REQUEST_OUTPUT_LEN are required")
    ids = io.encode(queries[0])
    end_id = tensors.get("END_ID")
    pad_id = tensors.get("PAD_ID")
    return {
        "INPUT_ID": ids.reshape(1, -1),
        "REQUEST_INPUT_LEN": np.array([[len(ids)]], dtype=np.int32),
        "REQUEST_OUTPUT_LEN": np.asarray(limit, dtype=np.int32).reshape(1, 1),
        "STOP_WORDS_IDS": io.words_to_ids(_strings(tensors.get("STOP_WORDS_DICT")))[None],
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
            logprob_rows.append([0.0] * len(ids))
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
