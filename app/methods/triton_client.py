"""The gateway's client of the ``baner`` and ``lar`` Triton models (gRPC, asyncio).

Speaks :mod:`app.methods.wire` (``nerve_encoder.v1``); checks at ``ready()`` that the served
model declares that contract. Failures become :class:`app.errors.BackendUnavailable` (or
:class:`app.errors.BackendTimeout`) naming the method; no Triton message reaches a client as is.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from app.core.types import EntityType, Example, Span
from app.errors import BackendTimeout, BackendUnavailable
from app.methods import wire
from app.methods.base import ReconcileByRetyping
from app.methods.wire import TypedEntity

log = logging.getLogger(__name__)


class TritonEncoderMethod:
    """``baner`` (or ``lar`` without its extras) served by Triton."""

    def __init__(self, name: str, url: str, model: str, timeout_s: float = 10.0) -> None:
        import tritonclient.grpc.aio as grpcclient

        self.name = name
        self.model = model
        self.url = url
        self.timeout_s = timeout_s
        self._grpc = grpcclient
        # Created on first use: a grpc.aio channel belongs to the running event loop, and the
        # gateway builds its components outside it.
        self._client: Any = None
        self._contract_checked = False

    def _get_client(self) -> Any:
        if self._client is None:
            # The LLM client's channel settings: capped reconnect back-off, no keepalive pings.
            from app.generation.triton import _CHANNEL_ARGS

            self._client = self._grpc.InferenceServerClient(self.url, channel_args=_CHANNEL_ARGS)
        return self._client

    async def _infer(self, inputs: dict[str, str], outputs: Sequence[str]) -> dict[str, bytes]:
        from tritonclient.utils import InferenceServerException

        tensors = []
        for key, value in inputs.items():
            tensor = self._grpc.InferInput(key, [1], "BYTES")
            tensor.set_data_from_numpy(np.array([value.encode("utf-8")], dtype=np.object_))
            tensors.append(tensor)
        try:
            result = await self._get_client().infer(
                self.model,
                tensors,
                outputs=[self._grpc.InferRequestedOutput(o) for o in outputs],
                client_timeout=self.timeout_s,
            )
        except InferenceServerException as exc:
            status = str(exc.status() or "")
            log.warning("triton %s failed: %s %s", self.model, status, exc.message())
            if "DEADLINE_EXCEEDED" in status:
                raise BackendTimeout(
                    self.name, f"Triton model {self.model!r} did not answer in {self.timeout_s} s"
                ) from None
            raise BackendUnavailable(
                self.name, f"Triton model {self.model!r} at {self.url} failed ({status or 'error'})"
            ) from None
        return {o: _first(result.as_numpy(o), o, self.name) for o in outputs}

    async def extract(
        self, text: str, entity_types: Sequence[EntityType], support: Sequence[Example]
    ) -> list[TypedEntity]:
        out = await self._infer(
            {
                wire.INPUT_TEXT: text,
                wire.INPUT_ENTITY_TYPES: wire.dump_types(entity_types),
                wire.INPUT_SUPPORT: wire.dump_examples(support),
            },
            [wire.OUTPUT_ENTITIES],
        )
        return self._entities(out[wire.OUTPUT_ENTITIES])

    def _entities(self, raw: bytes) -> list[TypedEntity]:
        try:
            return wire.load_entities(raw)
        except wire.ContractError as exc:
            raise BackendUnavailable(self.name, f"malformed answer: {exc}") from None

    async def ready(self) -> bool:
        from tritonclient.utils import InferenceServerException

        try:
            if not await self._get_client().is_model_ready(self.model):
                return False
            if not self._contract_checked:
                config = await self._get_client().get_model_config(self.model, as_json=True)
                params = config.get("config", {}).get("parameters", {})
                served = params.get("contract", {}).get("string_value")
                if served != wire.CONTRACT:
                    log.error(
                        "Triton model %s speaks %r, the gateway %r",
                        self.model,
                        served,
                        wire.CONTRACT,
                    )
                    return False
                self._contract_checked = True
            return True
        except InferenceServerException:
            return False

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()


class TritonLar(TritonEncoderMethod, ReconcileByRetyping):
    """``lar`` served by Triton: extraction, re-typing of given mentions, LLM reconciliation."""

    async def retype(
        self,
        text: str,
        mentions: Sequence[Span],
        entity_types: Sequence[EntityType],
        support: Sequence[Example],
    ) -> list[TypedEntity]:
        out = await self._infer(
            {
                wire.INPUT_TEXT: text,
                wire.INPUT_ENTITY_TYPES: wire.dump_types(entity_types),
                wire.INPUT_SUPPORT: wire.dump_examples(support),
                wire.INPUT_MENTIONS: wire.dump_spans(mentions),
            },
            [wire.OUTPUT_ENTITIES],
        )
        return self._entities(out[wire.OUTPUT_ENTITIES])


def _first(array: np.ndarray | None, name: str, method: str) -> bytes:
    if array is None or array.size != 1:
        raise BackendUnavailable(method, f"Triton answer has no single {name} tensor")
    value = array.reshape(-1)[0]
    return value if isinstance(value, bytes) else str(value).encode("utf-8")
