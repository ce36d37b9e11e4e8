"""The gateway's one gRPC client of a Triton model (``tritonclient.grpc.aio``).

Every Triton-backed component (the LLM, ``nerve.generation.triton``; the encoder methods,
``nerve.methods.encoders.triton``) is a thin subclass of :class:`TritonModelClient`, which owns:

- the channel: one per client, created on first use inside the running event loop (a grpc.aio
  channel belongs to its loop, and the gateway builds its components outside it);
- a deadline per request, bounded retries with exponential back-off (capped at 2 s) while the
  server is UNAVAILABLE (a restarting Triton), never past the deadline;
- one mapping of failures to :class:`BackendTimeout` / :class:`BackendUnavailable` naming the
  backend, the model, the URL and the cause, and of the contract's ``invalid_request:`` marker
  (:mod:`nerve.wire.llm`) to :class:`InvalidRequest`;
- readiness: the model is ready AND its config.pbtxt ``contract`` parameter is the contract this
  client speaks (checked once, then cached);
- ``close``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nerve.errors import BackendTimeout, BackendUnavailable, InvalidRequest
from nerve.wire.llm import INVALID_REQUEST_MARKER, TIMEOUT_MARKER

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# tritonclient's own defaults (passing channel_args replaces them all), plus a reconnect
# back-off capped at one second: gRPC's default grows to two minutes, and a restarted Triton
# would look down long after it is back.
CHANNEL_ARGS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 2**31 - 1),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 2),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
READY_TIMEOUT_S = 2.0
# The longest wait between two retries: like the channel's reconnect back-off, so a restarted
# Triton is used within seconds of being back, however long it was away.
MAX_RETRY_DELAY_S = 2.0
_DTYPES = {np.object_: "BYTES", np.int32: "INT32", np.bool_: "BOOL"}


class TritonModelClient:
    """One Triton model over gRPC. Subclasses set :attr:`backend` and :attr:`contract`."""

    # What errors name (the API's 503 says which component failed): "llm", "baner", ...
    backend: str = "triton"
    # The tensor contract this client speaks; the model's config.pbtxt must declare it.
    contract: str
    # A request parameter carrying the caller's remaining time in ms, for models that stop
    # generating at it (a gRPC deadline alone does not stop an ensemble's steps); None: not sent.
    deadline_parameter: str | None = None

    def __init__(
        self,
        url: str,
        model: str,
        *,
        timeout_s: float = 60.0,
        retries: int = 2,
        retry_backoff_s: float = 0.2,
    ) -> None:
        self.url, self.model = url, model
        self.timeout_s, self.retries, self.retry_backoff_s = timeout_s, retries, retry_backoff_s
        self._client: Any = None
        self._contract_checked = False

    def _get_client(self) -> Any:
        if self._client is None:
            from tritonclient.grpc.aio import InferenceServerClient

            self._client = InferenceServerClient(self.url, channel_args=CHANNEL_ARGS)
        return self._client

    async def infer(
        self,
        tensors: Mapping[str, np.ndarray],
        outputs: Sequence[str],
        *,
        timeout_s: float | None = None,
    ) -> dict[str, np.ndarray | None]:
        """The output tensors by name (``None`` for one the model did not send).

        Retries while the server is UNAVAILABLE, within ``timeout_s`` (default: the client's).
        """
        from tritonclient.grpc import InferInput, InferRequestedOutput
        from tritonclient.utils import InferenceServerException

        timeout = timeout_s or self.timeout_s
        deadline = time.monotonic() + timeout
        inputs = []
        for name, array in tensors.items():
            tensor = InferInput(name, list(array.shape), _DTYPES[array.dtype.type])
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        requested = [InferRequestedOutput(name) for name in outputs]
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BackendTimeout(self.backend, f"{self._where()}: no answer in {timeout:g} s")
            parameters = None
            if self.deadline_parameter is not None:
                parameters = {self.deadline_parameter: max(1, int(remaining * 1000))}
            try:
                result = await self._get_client().infer(
                    self.model,
                    inputs,
                    outputs=requested,
                    client_timeout=remaining,
                    parameters=parameters,
                )
                return {name: result.as_numpy(name) for name in outputs}
            except InferenceServerException as exc:
                status = exc.status() or ""
                if status.endswith("UNAVAILABLE") and attempt < self.retries:
                    attempt += 1
                    delay = min(self.retry_backoff_s * 2 ** (attempt - 1), MAX_RETRY_DELAY_S)
                    log.warning(
                        "Triton model %s at %s unavailable (attempt %d): %s",
                        self.model,
                        self.url,
                        attempt,
                        exc.message(),
                    )
                    await asyncio.sleep(max(min(delay, deadline - time.monotonic()), 0))
                    continue
                raise self._error(exc, timeout) from None

    def _where(self) -> str:
        return f"Triton model {self.model!r} at {self.url}"

    def _error(self, exc: Any, timeout: float) -> Exception:
        """The gateway's error for a failed call (its message never quotes a traceback)."""
        status = (exc.status() or "").removeprefix("StatusCode.")
        message = exc.message() or str(exc)
        where = self._where()
        if status == "DEADLINE_EXCEEDED" or TIMEOUT_MARKER in message:
            return BackendTimeout(self.backend, f"{where}: no answer in {timeout:g} s")
        if status == "UNAVAILABLE":
            return BackendUnavailable(self.backend, f"{where} is unreachable: {message}")
        if INVALID_REQUEST_MARKER in message:
            return InvalidRequest(message.split(INVALID_REQUEST_MARKER, 1)[1])
        if status == "NOT_FOUND" or "unknown model" in message or "not found" in message:
            return BackendUnavailable(
                self.backend, f"{where} is not loaded or does not exist: {message}"
            )
        return BackendUnavailable(self.backend, f"{where} failed ({status or 'error'}): {message}")

    def malformed(self, cause: Exception | str) -> BackendUnavailable:
        """The error for an answer that breaks the contract."""
        return BackendUnavailable(self.backend, f"malformed answer from {self._where()}: {cause}")

    async def ready(self) -> bool:
        """The model is loaded and ready, and declares the contract this client speaks."""
        from tritonclient.utils import InferenceServerException

        client = self._get_client()
        try:
            if not await client.is_model_ready(self.model, client_timeout=READY_TIMEOUT_S):
                return False
            if not self._contract_checked:
                config = await client.get_model_config(
                    self.model, as_json=True, client_timeout=READY_TIMEOUT_S
                )
                parameters = config.get("config", {}).get("parameters", {})
                served = parameters.get("contract", {}).get("string_value")
                if served != self.contract:
                    log.error(
                        "%s declares contract %r; the gateway speaks %r",
                        self._where(),
                        served,
                        self.contract,
                    )
                    return False
                self._contract_checked = True
        except InferenceServerException:
            return False
        return True

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()
