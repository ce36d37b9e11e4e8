"""triton_models.adapter without Triton: a fake ``triton_python_backend_utils`` module, one
test per error class of the policy every Python-backend model follows, and the parameters the
models read from their config.pbtxt."""

from __future__ import annotations

import json
import logging
import sys
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from cli.triton_server import (
    ENCODER_MODELS,
    LLM_CPU,
    encoder_parameters,
    llm_cpu_parameters,
    render_repository,
    set_parameters,
)
from nerve.errors import BackendTimeout, BackendUnavailable, InvalidRequest
from nerve.settings import REPO_ROOT, load_settings
from nerve.wire import encoder as wire
from nerve.wire import llm as t
from triton_models.adapter import Call, ConfigError, ModelConfig, PythonModel, error_response
from triton_models.encoder import ModelParameters, default_onnx_dir
from triton_models.llm_cpu import LLMParameters, timeout_from_parameters

REPOSITORY = REPO_ROOT / "model_repository"


class FakeTritonError:
    UNKNOWN, INTERNAL, NOT_FOUND, INVALID_ARG, UNAVAILABLE = range(5)

    def __init__(self, message: str, code: int = 0) -> None:
        self.message, self.code = message, code


class FakeTensor:
    def __init__(self, name: str, value: np.ndarray) -> None:
        self.name, self.value = name, value

    def as_numpy(self) -> np.ndarray:
        return self.value


class FakeResponse:
    def __init__(
        self, output_tensors: list[FakeTensor] | None = None, error: FakeTritonError | None = None
    ) -> None:
        self.tensors = {t.name: t.value for t in output_tensors or []}
        self.error = error


class FakeRequest:
    def __init__(self, tensors: Mapping[str, np.ndarray], parameters: str = "{}") -> None:
        self.tensors, self._parameters, self.cancelled = dict(tensors), parameters, False

    def parameters(self) -> str:
        return self._parameters

    def is_cancelled(self) -> bool:
        return self.cancelled


def _get_input(request: FakeRequest, name: str) -> FakeTensor | None:
    value = request.tensors.get(name)
    return None if value is None else FakeTensor(name, value)


@pytest.fixture(autouse=True)
def pb_utils(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("triton_python_backend_utils")
    module.TritonError = FakeTritonError  # type: ignore[attr-defined]
    module.Tensor = FakeTensor  # type: ignore[attr-defined]
    module.InferenceResponse = FakeResponse  # type: ignore[attr-defined]
    module.get_input_tensor_by_name = _get_input  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", module)
    return module


class EchoHandler:
    """Answers OUT = IN upper-cased; raises what the test puts in ``fail``."""

    def __init__(self, config: ModelConfig) -> None:
        config.require_contract("echo.v1")
        self.fail: Exception | None = None
        self.calls: list[Call] = []
        self.closed = False

    def __call__(self, tensors: Mapping[str, np.ndarray | None], call: Call) -> dict[str, Any]:
        self.calls.append(call)
        if self.fail is not None:
            raise self.fail
        text = tensors["IN"]
        assert text is not None and tensors["OPTIONAL"] is None
        return {"OUT": np.char.upper(text.astype(str)).astype(np.object_)}

    def close(self) -> None:
        self.closed = True


class EchoModel(PythonModel):
    load = staticmethod(EchoHandler)


def _args(contract: str = "echo.v1", directory: Path = Path("/models/echo")) -> dict[str, str]:
    config = {
        "name": "echo",
        "input": [{"name": "IN"}, {"name": "OPTIONAL"}],
        "output": [{"name": "OUT"}],
        "parameters": {"contract": {"string_value": contract}},
    }
    return {"model_config": json.dumps(config), "model_repository": str(directory)}


def _model() -> EchoModel:
    model = EchoModel()
    model.initialize(_args())
    return model


def _respond(model: EchoModel, fail: Exception | None = None) -> FakeResponse:
    model.handler.fail = fail  # type: ignore[union-attr]
    request = FakeRequest({"IN": np.array([b"paris"], dtype=np.object_)})
    (response,) = model.execute([request])
    return response


def test_tensors_in_handler_tensors_out() -> None:
    model = _model()
    request = FakeRequest({"IN": np.array([b"paris"], dtype=np.object_)}, '{"timeout_ms": 250}')
    (response,) = model.execute([request])
    assert response.error is None
    assert response.tensors["OUT"].tolist() == ["PARIS"]
    call = model.handler.calls[0]  # type: ignore[union-attr]
    assert call.parameters == {"timeout_ms": 250}
    request.cancelled = True
    assert call.cancelled()
    handler = model.handler
    model.finalize()
    assert handler.closed  # type: ignore[union-attr]


def test_a_config_with_another_contract_refuses_to_load() -> None:
    with pytest.raises(ConfigError, match=r"echo: config.pbtxt declares contract 'echo.v0'"):
        EchoModel().initialize(_args(contract="echo.v0"))


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (wire.ContractError("ENTITY_TYPES: not UTF-8 JSON"), "ENTITY_TYPES: not UTF-8 JSON"),
        (
            t.MalformedTensors("text_input and max_tokens are required"),
            t.INVALID_REQUEST_MARKER + "text_input and max_tokens are required",
        ),
        (
            InvalidRequest("the prompt exceeds the context of 2048 tokens"),
            t.INVALID_REQUEST_MARKER + "the prompt exceeds the context of 2048 tokens",
        ),
        (
            UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
            "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte",
        ),
    ],
    ids=["ContractError", "MalformedTensors", "InvalidRequest", "UnicodeDecodeError"],
)
def test_the_callers_errors_are_invalid_arg_with_their_message(
    error: Exception, message: str
) -> None:
    response = _respond(_model(), error)
    assert response.error is not None
    assert (response.error.code, response.error.message) == (FakeTritonError.INVALID_ARG, message)


def test_a_passed_deadline_carries_the_timeout_marker() -> None:
    response = _respond(_model(), BackendTimeout("llm", "deadline passed"))
    assert response.error is not None and response.error.code == FakeTritonError.INTERNAL
    assert response.error.message == t.TIMEOUT_MARKER + "llm: deadline passed"


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("CUDA out of memory at /secret/path"),
        BackendUnavailable("llm", "gone"),
        KeyError("x"),
    ],
)
def test_anything_else_is_an_internal_error_naming_the_type_only(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    model = _model()
    with caplog.at_level(logging.ERROR, logger="triton_models.adapter"):
        response = _respond(model, error)
    assert response.error is not None and response.error.code == FakeTritonError.INTERNAL
    assert response.error.message == f"echo: internal error ({type(error).__name__})"
    # The traceback is logged on the server, never sent; the model keeps serving.
    (record,) = caplog.records
    assert record.exc_info is not None and record.exc_info[1] is error
    assert _respond(model).error is None


def test_one_failed_request_does_not_fail_its_batch() -> None:
    model = _model()
    good = FakeRequest({"IN": np.array([b"oslo"], dtype=np.object_)})
    broken = FakeRequest({})  # IN missing: the handler's assertion fails
    responses = model.execute([broken, good])
    assert responses[0].error is not None and responses[0].error.code == FakeTritonError.INTERNAL
    assert responses[1].tensors["OUT"].tolist() == ["OSLO"]


class BatchEchoHandler(EchoHandler):
    """EchoHandler with ``batch``: records each batch; a request whose IN is ``poison`` makes
    the whole batch raise, one whose IN is ``bad`` fails alone (a contract error)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.batches: list[list[str]] = []

    def batch(self, requests: Any) -> list[Any]:
        texts = [str(tensors["IN"][0].decode()) for tensors, _call in requests]
        self.batches.append(texts)
        if "poison" in texts:
            raise RuntimeError("the whole batch broke")
        return [
            wire.ContractError("IN: bad") if text == "bad" else self(tensors, call)
            for text, (tensors, call) in zip(texts, requests, strict=True)
        ]


class BatchEchoModel(PythonModel):
    load = staticmethod(BatchEchoHandler)


def _batch_model() -> BatchEchoModel:
    model = BatchEchoModel()
    model.initialize(_args())
    return model


def _request(text: str, parameters: str = "{}") -> FakeRequest:
    return FakeRequest({"IN": np.array([text.encode()], dtype=np.object_)}, parameters)


def test_a_batch_handler_answers_every_request_of_an_execute_at_once() -> None:
    model = _batch_model()
    texts = ["oslo", "bad", "rome", "lima"]
    undecodable = _request("kyiv", parameters="[1]")  # request parameters not a JSON object
    responses = model.execute([*(_request(t) for t in texts[:2]), undecodable, _request("rome"),
                               _request("lima")])  # fmt: skip
    assert model.handler.batches == [texts]  # type: ignore[union-attr]
    ok = [r.tensors["OUT"].tolist() if r.error is None else None for r in responses]
    assert ok == [["OSLO"], None, None, ["ROME"], ["LIMA"]]
    assert responses[1].error.code == FakeTritonError.INVALID_ARG  # type: ignore[union-attr]
    assert responses[1].error.message == "IN: bad"  # type: ignore[union-attr]
    assert responses[2].error.code == FakeTritonError.INVALID_ARG  # type: ignore[union-attr]


def test_a_batch_that_raises_is_retried_request_by_request() -> None:
    model = _batch_model()
    responses = model.execute([_request("oslo"), _request("poison"), _request("rome")])
    assert model.handler.batches == [  # type: ignore[union-attr]
        ["oslo", "poison", "rome"],
        ["oslo"],
        ["poison"],
        ["rome"],
    ]
    assert responses[0].tensors["OUT"].tolist() == ["OSLO"]
    assert responses[1].error.code == FakeTritonError.INTERNAL  # type: ignore[union-attr]
    assert "RuntimeError" in responses[1].error.message  # type: ignore[union-attr]
    assert responses[2].tensors["OUT"].tolist() == ["ROME"]


def test_error_response_is_the_one_policy() -> None:
    assert error_response("m", wire.ContractError("x")) == ("INVALID_ARG", "x")
    assert error_response("m", ValueError("x")) == ("INTERNAL", "m: internal error (ValueError)")


def _committed(model: str) -> ModelConfig:
    """A committed config.pbtxt as the adapter sees it (Triton hands it over as JSON)."""
    text = (REPOSITORY / model / "config.pbtxt").read_text()
    return _as_adapter_sees_it(text, REPOSITORY / model)


def _as_adapter_sees_it(text: str, directory: Path) -> ModelConfig:
    config = text_format.Parse(text, model_config_pb2.ModelConfig())
    as_json = json_format.MessageToJson(config, preserving_proto_field_name=True)
    return ModelConfig.from_args({"model_config": as_json, "model_repository": str(directory)})


def test_every_python_model_declares_its_contract() -> None:
    assert _committed("llm_cpu").parameters["contract"] == t.CONTRACT_VERSION
    assert _committed("ensemble").parameters["contract"] == t.CONTRACT_VERSION
    for model in ("baner", "lar"):
        assert ModelParameters.from_config(_committed(model)).method == model


def test_llm_cpu_reads_its_parameters_not_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NERVE_LLM_THREADS", "7")
    params = LLMParameters.from_config(_committed(LLM_CPU))
    assert (params.model_path, params.adapter) == (None, "wraner")
    assert params.models_dir == (REPOSITORY.parent / "data" / "models").resolve()
    assert (params.threads, params.context_tokens, params.loop_lines) == (2, 2048, 4)


def test_llm_cpu_refuses_another_contract_and_bad_values() -> None:
    config = _committed(LLM_CPU)
    other = ModelConfig(config.name, config.directory, {**config.parameters, "contract": "v0"})
    with pytest.raises(ConfigError, match=r"declares contract 'v0'.*'nerve_llm_tensors\.v2'"):
        LLMParameters.from_config(other)
    broken = ModelConfig(config.name, config.directory, {**config.parameters, "threads": "0"})
    with pytest.raises(ConfigError, match="threads must be an integer of at least 1; got '0'"):
        LLMParameters.from_config(broken)
    missing = dict(config.parameters)
    del missing["adapter"]
    with pytest.raises(ConfigError, match="no parameter 'adapter'"):
        LLMParameters.from_config(ModelConfig(config.name, config.directory, missing))


def test_the_served_llm_cpu_config_holds_what_the_settings_resolve_to(tmp_path: Path) -> None:
    """`nerve triton` serves a generated copy: the same GGUF, adapter, threads and context as
    the gateway's settings (paths made absolute), every other file linked to the original."""
    adapter = tmp_path / "a.gguf"
    adapter.write_bytes(b"GGUF")
    settings = load_settings(
        data_dir=Path("rel/data"), llm={"model_path": Path("m.gguf"), "adapter": str(adapter), "threads": 1, "context_tokens": 1024}, wraner={"loop_lines": 3},
    )  # fmt: skip
    served = render_repository(
        REPOSITORY, tmp_path / "served", {LLM_CPU: llm_cpu_parameters(settings)}
    )
    params = LLMParameters.from_config(
        _as_adapter_sees_it((served / LLM_CPU / "config.pbtxt").read_text(), served / LLM_CPU)
    )
    assert params.model_path == Path("m.gguf").resolve()
    assert params.models_dir == Path("rel/data/models").resolve()
    assert params.adapter == str(adapter)
    assert (params.threads, params.context_tokens, params.loop_lines) == (1, 1024, 3)
    assert (served / LLM_CPU / "1").resolve() == (REPOSITORY / LLM_CPU / "1").resolve()
    # The other models are served as committed; lar still finds baner's artefact.
    assert (served / "baner" / "config.pbtxt").read_text() == (
        REPOSITORY / "baner" / "config.pbtxt"
    ).read_text()
    lar = ModelParameters.from_config(_as_adapter_sees_it(
        (served / "lar" / "config.pbtxt").read_text(), served / "lar"
    ))  # fmt: skip
    assert (lar.artefact_dir / "baner.json").is_file()


def test_the_served_encoder_configs_run_the_gateways_encoder_runtime(tmp_path: Path) -> None:
    """baner and lar run what NERVE_ENCODER_RUNTIME names (the in-process default: ONNX int8),
    from NERVE_ONNX_DIR; the served copy keeps the dynamic batcher of the committed config."""
    settings = load_settings(encoder={"runtime": "onnx-int8"}, onnx={"dir": Path("rel/onnx")})
    served = render_repository(
        REPOSITORY, tmp_path / "served", {m: encoder_parameters(settings) for m in ENCODER_MODELS}
    )
    for model in ENCODER_MODELS:
        text = (served / model / "config.pbtxt").read_text()
        params = ModelParameters.from_config(_as_adapter_sees_it(text, served / model))
        assert (params.runtime, params.onnx_dir) == ("onnx-int8", Path("rel/onnx").resolve())
        config = text_format.Parse(text, model_config_pb2.ModelConfig())
        assert config.max_batch_size == 32
        assert config.dynamic_batching.max_queue_delay_microseconds == 2000
    committed = ModelParameters.from_config(_committed("baner"))
    assert (committed.runtime, committed.onnx_dir) == (load_settings().encoder.runtime, None)
    assert default_onnx_dir() == Path.home() / ".cache" / "nerve" / "onnx"
    broken = ModelConfig("baner", REPOSITORY / "baner", {**_committed("baner").parameters,
                                                         "runtime": "tensorrt"})  # fmt: skip
    with pytest.raises(ConfigError, match="runtime must be one of torch, onnx, onnx-int8"):
        ModelParameters.from_config(broken)


def test_setting_an_undeclared_parameter_is_an_error() -> None:
    text = (REPOSITORY / LLM_CPU / "config.pbtxt").read_text()
    with pytest.raises(ValueError, match="no parameter n_threads to set"):
        set_parameters(text, {"n_threads": "2"}, source="llm_cpu")


def test_request_timeout_parameter() -> None:
    assert timeout_from_parameters({}) is None
    assert timeout_from_parameters({t.TIMEOUT_PARAMETER: 1500}) == 1.5
    for bad in (0, -1, True, "1000"):
        with pytest.raises(t.MalformedTensors, match="timeout_ms must be a positive number"):
            timeout_from_parameters({t.TIMEOUT_PARAMETER: bad})
