"""The gateway's client of the ``baner`` and ``lar`` Triton models (gRPC, asyncio).

A thin :class:`nerve.triton_client.TritonModelClient` speaking :mod:`nerve.wire.encoder`
(``nerve_encoder.v2``): channel, deadline, retries on UNAVAILABLE, the mapping of failures to
:class:`nerve.errors.BackendUnavailable` / :class:`nerve.errors.BackendTimeout` naming the method,
and the readiness check with the contract version are the base's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nerve.methods.encoders.backend import ReconcileByRetyping
from nerve.triton_client import TritonModelClient
from nerve.vocab.types import EntityType, Example, Span
from nerve.wire import encoder as wire
from nerve.wire.encoder import TypedEntity


class TritonEncoderBackend(TritonModelClient):
    """``baner`` (or ``lar`` without its extras) served by Triton."""

    contract = wire.CONTRACT

    def __init__(
        self,
        name: str,
        url: str,
        model: str,
        timeout_s: float = 10.0,
        *,
        retries: int = 2,
        retry_backoff_s: float = 0.2,
    ) -> None:
        super().__init__(
            url, model, timeout_s=timeout_s, retries=retries, retry_backoff_s=retry_backoff_s
        )
        self.name = self.backend = name

    async def _entities(self, inputs: dict[str, str]) -> list[TypedEntity]:
        # One row: [1, 1] (the models batch requests, so every tensor has a batch dimension).
        tensors = {
            name: np.array([[value.encode("utf-8")]], dtype=np.object_)
            for name, value in inputs.items()
        }
        outputs = await self.infer(tensors, [wire.OUTPUT_ENTITIES])
        raw = outputs[wire.OUTPUT_ENTITIES]
        if raw is None or raw.size != 1:
            raise self.malformed(f"no single {wire.OUTPUT_ENTITIES} tensor")
        value = raw.reshape(-1)[0]
        try:
            return wire.load_entities(value if isinstance(value, bytes) else str(value))
        except wire.ContractError as exc:
            raise self.malformed(exc) from None

    async def extract(
        self, text: str, entity_types: Sequence[EntityType], support: Sequence[Example]
    ) -> list[TypedEntity]:
        return await self._entities(
            {
                wire.INPUT_TEXT: text,
                wire.INPUT_ENTITY_TYPES: wire.dump_types(entity_types),
                wire.INPUT_SUPPORT: wire.dump_examples(support),
            }
        )


class TritonLar(TritonEncoderBackend, ReconcileByRetyping):
    """``lar`` served by Triton: extraction, re-typing of given mentions, LLM reconciliation."""

    async def retype(
        self,
        text: str,
        mentions: Sequence[Span],
        entity_types: Sequence[EntityType],
        support: Sequence[Example],
    ) -> list[TypedEntity]:
        return await self._entities(
            {
                wire.INPUT_TEXT: text,
                wire.INPUT_ENTITY_TYPES: wire.dump_types(entity_types),
                wire.INPUT_SUPPORT: wire.dump_examples(support),
                wire.INPUT_MENTIONS: wire.dump_spans(mentions),
            }
        )
