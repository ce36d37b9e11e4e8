"""A Triton LLM (the TensorRT-LLM ensemble on GPU, ``llm_cpu`` here) as a ``Generator``.

gRPC through ``tritonclient.grpc.aio``: one client (one HTTP/2 channel) per generator, created
on first use inside the running event loop; a deadline per request; bounded retries when the
server is UNAVAILABLE; every failure mapped to :class:`BackendUnavailable` (503) naming Triton,
the model and the cause. The tensors follow :mod:`app.generation.llm_tensors`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import numpy as np

from app.errors import BackendTimeout, BackendUnavailable, InvalidRequest
from app.generation import llm_tensors as t
from app.generation.base import Generation, GenerationRequest
from app.settings import Settings

log = logging.getLogger(__name__)

BACKEND = "llm"
_DTYPES = {np.object_: "BYTES", np.int32: "INT32", np.bool_: "BOOL"}
_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# tritonclient's own defaults (passing channel_args replaces them all), plus a reconnect
# back-off capped at one second: gRPC's default grows to two minutes, and a restarted Triton
# would look down long after it is back.
_CHANNEL_ARGS = [
    ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 2**31 - 1),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 2),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


class TritonGenerator:
    name = "triton"

    def __init__(
        self,
        url: str,
        model: str,
        *,
        timeout_s: float = 60.0,
        retries: int = 2,
        retry_backoff_s: float = 0.2,
    ) -> None:
        self.url = url
        self.model = model
        self._timeout_s = timeout_s
        self._retries = retries
        self._backoff_s = retry_backoff_s
        self._client: Any = None

    @classmethod
    def from_settings(cls, settings: Settings) -> TritonGenerator:
        return cls(
            settings.triton_url,
            settings.triton_model,
            timeout_s=settings.generation_timeout_s,
            retries=settings.triton_retries,
        )

    def _get_client(self) -> Any:
        if self._client is None:
            from tritonclient.grpc.aio import InferenceServerClient

            self._client = InferenceServerClient(self.url, channel_args=_CHANNEL_ARGS)
        return self._client

    async def generate(self, request: GenerationRequest) -> Generation:
        from tritonclient.utils import InferenceServerException

        timeout = request.timeout_s or self._timeout_s
        deadline = time.monotonic() + timeout
        inputs, outputs = _infer_tensors(request)
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BackendTimeout(
                    BACKEND, f"Triton model {self.model!r}: no answer in {timeout:g} s"
                )
            try:
                result = await self._get_client().infer(
                    self.model,
                    inputs,
                    outputs=outputs,
                    client_timeout=remaining,
                    parameters={t.TIMEOUT_PARAMETER: max(1, int(remaining * 1000))},
                )
                break
            except InferenceServerException as exc:
                status = exc.status() or ""
                if status.endswith("UNAVAILABLE") and attempt < self._retries:
                    attempt += 1
                    delay = min(self._backoff_s * 2 ** (attempt - 1), deadline - time.monotonic())
                    log.warning("Triton %s unavailable (attempt %d): %s", self.url, attempt, exc)
                    await asyncio.sleep(max(delay, 0))
                    continue
                raise self._error(exc, timeout) from exc
        tensors = {name: result.as_numpy(name) for name in t.OUTPUTS}
        try:
            return t.decode_response(tensors, max_tokens=request.max_tokens, stop=request.stop)
        except (t.MalformedTensors, UnicodeDecodeError) as exc:
            raise BackendUnavailable(
                BACKEND, f"malformed answer from Triton model {self.model!r}: {exc}"
            ) from exc

    def _error(self, exc: Any, timeout: float) -> Exception:
        status = (exc.status() or "").removeprefix("StatusCode.")
        message = exc.message() or str(exc)
        where = f"Triton model {self.model!r} at {self.url}"
        if status == "DEADLINE_EXCEEDED" or t.TIMEOUT_MARKER in message:
            return BackendTimeout(BACKEND, f"{where}: no answer in {timeout:g} s")
        if status == "UNAVAILABLE":
            return BackendUnavailable(BACKEND, f"{where} is unreachable: {message}")
        if t.INVALID_REQUEST_MARKER in message:
            return InvalidRequest(message.split(t.INVALID_REQUEST_MARKER, 1)[1])
        if status == "NOT_FOUND" or "unknown model" in message or "not found" in message:
            return BackendUnavailable(
                BACKEND, f"{where} is not loaded or does not exist: {message}"
            )
        return BackendUnavailable(BACKEND, f"{where} failed ({status or 'error'}): {message}")

    async def ready(self) -> bool:
        from tritonclient.utils import InferenceServerException

        try:
            return bool(await self._get_client().is_model_ready(self.model, client_timeout=2.0))
        except InferenceServerException:
            return False

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()


def _infer_tensors(request: GenerationRequest) -> tuple[list[Any], list[Any]]:
    from tritonclient.grpc import InferInput, InferRequestedOutput

    inputs = []
    for name, array in t.encode_request(request.prompt, request.max_tokens, request.stop).items():
        tensor = InferInput(name, list(array.shape), _DTYPES[array.dtype.type])
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs, [InferRequestedOutput(name) for name in t.OUTPUTS]
