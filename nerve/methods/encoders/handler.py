"""``method=baner`` and ``method=lar``: an encoder backend (in process or on Triton) answers a
segment from its retrieved support examples; no prompt, no parsing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from nerve.methods.encoders.backend import EncoderBackend
from nerve.methods.handler import SegmentAnswer, SegmentTask

SUMMARIES = {
    "baner": "BANER: boundary-aware encoder spans, typed by prototypes of the retrieved examples",
    "lar": "LAR: BANER's spans re-typed by label alignment and reassignment",
}


class EncoderHandler:
    def __init__(self, backend: EncoderBackend, min_examples: int) -> None:
        self.backend = backend
        self.name = backend.name
        self.model = backend.model
        self.summary = SUMMARIES.get(backend.name, backend.name)
        self.min_examples = min_examples
        # BANER in process answers with a domain's own model when the pipeline hands it one
        # (SegmentTask.domain_model); on Triton the model would need the head on the server.
        self.domain_encoder: str | None = (
            getattr(backend, "encoder_id", None) if backend.name == "baner" else None
        )
        self.adapts_to_domain = self.domain_encoder is not None

    async def answer(self, task: SegmentTask) -> SegmentAnswer:
        if task.domain_model is not None and self.adapts_to_domain:
            return (await self.answer_batch([task]))[0]
        t0 = time.perf_counter()
        found = await self.backend.extract(task.text, task.entity_types, task.examples)
        return SegmentAnswer(
            entities=list(found),
            examples_used=len(task.examples),
            timings={"generate": time.perf_counter() - t0},
        )

    async def answer_batch(self, tasks: Sequence[SegmentTask]) -> list[SegmentAnswer]:
        """One encoder pass over every task's text when the backend batches (in process);
        otherwise (Triton) one call per task, concurrently."""
        t0 = time.perf_counter()
        batch = getattr(self.backend, "extract_batch", None)
        if batch is not None:
            found = await batch(tasks)
        else:
            found = await asyncio.gather(
                *(self.backend.extract(t.text, t.entity_types, t.examples) for t in tasks)
            )
        share = (time.perf_counter() - t0) / max(len(tasks), 1)
        return [
            SegmentAnswer(
                entities=list(entities),
                examples_used=len(task.examples),
                timings={"generate": share},
            )
            for task, entities in zip(tasks, found, strict=True)
        ]

    async def warm(self, texts: Sequence[str]) -> None:
        warm = getattr(self.backend, "warm", None)  # in process only: Triton encodes per call
        if warm is not None:
            await warm(texts)

    async def ready(self) -> bool:
        return await self.backend.ready()

    async def close(self) -> None:
        await self.backend.close()
