"""``method=auto`` degrades instead of queueing (issue 32 item 2): the LLM gate's rule (queue
depth, deadline) on scripted work, the cascade handler with a scripted encoder and LLM, and the
gateway with the real embedder and BANER and a scripted slow LLM: shed segments answer with the
encoder's entities and the reason ``llm_shed``, never a 5xx, and nothing is shed with an idle
LLM; the per-request ``deadline_ms``; the metric; a shed answer is never cached."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient

from app.components import Components, build_components
from app.main import build_app
from nerve.generation.base import Generation, GenerationRequest, TokenLogprob
from nerve.methods.auto.gate import LLMGate
from nerve.methods.auto.handler import REASON_LLM_SHED, CascadeHandler
from nerve.methods.auto.policy import Calibrator, CascadePolicy
from nerve.methods.handler import SegmentAnswer, SegmentTask
from nerve.metrics import Metrics
from nerve.settings import Settings, load_settings
from nerve.vocab.types import Entity, EntityType
from tests.fixtures.baner import shared_baner
from tests.fixtures.gateway import SUPPORT_DOMAIN, SUPPORT_EXAMPLES
from tests.fixtures.settings import merged
from tests.test_cascade_gateway import write_calibration
from tests.test_jobs import wait_for

TOY_CALIBRATION = {
    "encoder": {"features": ["bias", "encoder_score"], "weights": [-2.0, 4.0]},
    "merged": {
        "features": ["bias", "encoder_score", "llm_score", "agree"],
        "weights": [-2.0, 4.0, 4.0, 2.0],
    },
    "keep_thresholds": {"union": 0.5, "best": 0.5},
}


# --- the gate -------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def _started(gate: LLMGate, running: int, waiting: int) -> None:
    for _ in range(100):
        if gate.running == running and gate.waiting == waiting:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"gate: running {gate.running}, waiting {gate.waiting}")


def test_an_idle_gate_never_sheds_even_past_the_deadline() -> None:
    async def main() -> None:
        clock = Clock()
        gate = LLMGate(0, clock=clock)
        gate.estimate = 30.0
        assert gate.shed_reason(None) is None
        assert gate.shed_reason(clock.now - 1) is None  # nothing ahead: asked anyway

        async def work() -> str:
            clock.now += 2.0
            return "answer"

        assert await gate.call(work, clock.now + 0.5) == "answer"
        assert await gate.call(work, clock.now - 5) == "answer"  # late, but nothing ahead
        assert gate.running == gate.waiting == 0

    asyncio.run(main())


def test_the_gate_sheds_beyond_the_queue_limit() -> None:
    async def main() -> None:
        gate = LLMGate(2)
        release = asyncio.Event()

        async def work() -> str:
            await release.wait()
            return "llm"

        calls = [asyncio.create_task(gate.call(work, None)) for _ in range(3)]
        await _started(gate, 1, 2)
        # One runs, two wait: a fourth is shed, whatever its deadline.
        assert await gate.call(work, None) == "queue"
        release.set()
        assert await asyncio.gather(*calls) == ["llm"] * 3
        assert gate.shed_reason(None) is None  # idle again
        zero = LLMGate(0)
        held = asyncio.create_task(zero.call(work, None))
        release.clear()
        await asyncio.sleep(0)
        assert await zero.call(work, None) == "queue"  # 0: a segment never waits
        release.set()
        assert await held == "llm"

    asyncio.run(main())


def test_the_gate_sheds_a_segment_whose_wait_would_miss_its_deadline() -> None:
    async def main() -> None:
        clock = Clock()
        gate = LLMGate(4, clock=clock)
        release = asyncio.Event()

        async def work() -> str:
            await release.wait()
            return "llm"

        # No duration measured yet: only the queue rule sheds.
        held = asyncio.create_task(gate.call(work, None))
        await _started(gate, 1, 0)
        assert gate.shed_reason(clock.now + 0.001) is None
        release.set()
        await held
        gate.estimate = 3.0
        release.clear()
        held = asyncio.create_task(gate.call(work, None))
        await _started(gate, 1, 0)
        clock.now += 1.0  # the running call has about 2 s left
        assert gate.expected_wait(clock.now) == pytest.approx(2.0)
        assert gate.shed_reason(clock.now + 1.5) == "deadline"
        assert gate.shed_reason(clock.now + 2.5) is None
        assert gate.shed_reason(None) is None
        # A second waiting segment waits for the running call and the first waiting one.
        waiter = asyncio.create_task(gate.call(work, clock.now + 10))
        await _started(gate, 1, 1)
        assert gate.expected_wait(clock.now) == pytest.approx(5.0)
        assert gate.shed_reason(clock.now + 4.0) == "deadline"
        # The deadline passes while the waiter waits: shed when its turn comes.
        clock.now += 20
        release.set()
        assert await held == "llm" and await waiter == "deadline"

    asyncio.run(main())


def test_the_gate_keeps_a_moving_estimate_of_one_call() -> None:
    async def main() -> None:
        clock = Clock()
        gate = LLMGate(1, clock=clock, smoothing=0.5)

        def taking(seconds: float) -> Any:
            async def work() -> None:
                clock.now += seconds

            return work

        await gate.call(taking(4.0), None)
        assert gate.estimate == pytest.approx(4.0)
        await gate.call(taking(2.0), None)
        assert gate.estimate == pytest.approx(3.0)

    asyncio.run(main())


# --- the handler with scripted parts --------------------------------------------------------
TEXT = "Ann Lee met Bob in Paris ."
TYPES = [
    EntityType(name="person", description="name of a person"),
    EntityType(name="location", description="name of a place"),
]
ENCODER = [Entity(text="Ann Lee", type="person", start=0, end=7, score=0.9)]
LLM_ANSWER = [Entity(text="Paris", type="location", start=19, end=24, score=0.9)]


class ScriptedEncoder:
    name = model = "enc"
    summary = ""
    min_examples = 0

    async def answer(self, task: SegmentTask) -> SegmentAnswer:
        return SegmentAnswer(list(ENCODER), len(task.examples), timings={"generate": 0.01})

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        return None


class SlowLLM(ScriptedEncoder):
    """Answers after ``release`` is set; counts the calls."""

    name = model = "llm"

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.calls = 0

    async def answer(self, task: SegmentTask) -> SegmentAnswer:
        self.calls += 1
        await self.release.wait()
        return SegmentAnswer(list(LLM_ANSWER), len(task.examples), reasons=["output_repaired"])


def cascade(max_queued: int) -> tuple[CascadeHandler, SlowLLM, Metrics]:
    llm, metrics = SlowLLM(), Metrics()
    policy = CascadePolicy.of("union", Calibrator.from_dict(TOY_CALIBRATION), 1.01)  # all routed
    handler = CascadeHandler(
        ScriptedEncoder(),
        llm,
        policy,
        metrics,
        llm_examples=2,
        concurrency=4,
        gate=LLMGate(max_queued),
    )
    return handler, llm, metrics


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_nothing_is_shed_with_an_idle_llm() -> None:
    async def main() -> None:
        handler, llm, metrics = cascade(0)
        llm.release.set()
        for _ in range(3):
            answer = await handler.answer(SegmentTask(TEXT, TYPES, [], deadline=None))
            assert not answer.shed and answer.routed and REASON_LLM_SHED not in answer.reasons
            assert {e.text for e in answer.entities} == {"Ann Lee", "Paris"}
        assert llm.calls == 3
        assert sample(metrics, "nerve_cascade_shed_total", reason="queue") == 0

    asyncio.run(main())


def test_segments_beyond_the_queue_limit_answer_with_the_encoder_and_say_so() -> None:
    async def main() -> None:
        handler, llm, metrics = cascade(1)
        policy = handler.policy
        # Four one-segment requests at once: one asks the LLM, one waits, two are shed.
        requests = [
            asyncio.create_task(handler.answer(SegmentTask(TEXT, TYPES, []))) for _ in range(4)
        ]
        for _ in range(100):
            await asyncio.sleep(0)
        llm.release.set()
        answers = await asyncio.gather(*requests)
        shed = [a for a in answers if a.shed]
        assert len(shed) == 2 and llm.calls == 2
        alone = policy.merge(TEXT, ENCODER, None, TYPES).entities
        for answer in shed:
            # The unrouted path's answer: the encoder's entities, encoder-calibrated scores.
            assert answer.entities == alone and not answer.routed
            assert answer.reasons == [REASON_LLM_SHED] and not answer.disagreements
        for answer in answers:
            if not answer.shed:
                assert {e.text for e in answer.entities} == {"Ann Lee", "Paris"}
                assert REASON_LLM_SHED not in answer.reasons
        assert sample(metrics, "nerve_cascade_shed_total", reason="queue") == 2
        assert sample(metrics, "nerve_cascade_shed_total", reason="deadline") == 0
        # Shed segments were routed: shed / routed is the share shed.
        assert sample(metrics, "nerve_cascade_segments_total", routed="true") == 4

    asyncio.run(main())


# --- through the gateway: real embedder and BANER, scripted slow LLM ------------------------
class SlowGenerator:
    """A scripted LLM taking ``seconds`` per generation (in a thread, like llama.cpp)."""

    name = model = "scripted-slow"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0
        self.answer = "Peter Novak | person\nPrague | location"

    async def generate(self, request: GenerationRequest) -> Generation:
        self.calls += 1
        await anyio.sleep(self.seconds)
        tokens, offset = [], 0
        for piece in self.answer.split(" "):
            text = piece if offset == 0 else " " + piece
            tokens.append(TokenLogprob(text, -0.05, offset))
            offset += len(text)
        return Generation(self.answer, tokens)

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        return None


# Three sentences, each its own segment (NERVE_SEGMENT_CHARS 60), each with an entity BANER
# finds: all three routed (route threshold above 1); their LLM calls queue in one request.
LONG = (
    "Peter Novak from Prague called about his order. "
    "Maria Lopez says her Pixel 8 never arrived. "
    "Tom Walsh wants a refund for the Sony headphones."
)


@pytest.fixture
def gateway(
    tmp_path: Path, embedder: Any
) -> Iterator[Any]:  # a factory: (llm seconds, overrides) -> (client, generator)
    clients: list[Any] = []

    def make(seconds: float, **overrides: Any) -> tuple[TestClient, SlowGenerator]:
        generator = SlowGenerator(seconds)
        settings = load_settings(
            **merged(
                {
                    "data_dir": tmp_path / f"data{len(clients)}",
                    "log_json": False,
                    "gazetteer": {"enabled": False},
                    "default_method": "auto",
                    "segment": {"chars": 60},
                    "cascade": {
                        "calibration": write_calibration(tmp_path / "calibration.json"),
                        "route_threshold": 1.01,
                        "rule": "union",
                    },
                },
                overrides,
            )
        )

        def factory(s: Settings) -> Components:
            with shared_baner():
                return build_components(s, embedder=embedder, generator=generator)

        context = TestClient(build_app(settings, components_factory=factory))
        client = context.__enter__()
        clients.append(context)
        assert client.post("/v1/domains", json=SUPPORT_DOMAIN).status_code == 201
        added = client.post("/v1/domains/support/examples", json={"examples": SUPPORT_EXAMPLES})
        assert added.status_code == 201, added.text
        return client, generator

    yield make
    for context in clients:
        context.__exit__(None, None, None)


def ner(client: TestClient, text: str = LONG, **fields: Any) -> dict[str, Any]:
    response = client.post("/v1/ner", json={"text": text, "domain": "support", **fields})
    assert response.status_code == 200, response.text
    return response.json()


def shed_counts(client: TestClient) -> dict[str, float]:
    text = client.get("/metrics").text
    found = re.findall(r'^nerve_cascade_shed_total\{reason="(\w+)"\} (\S+)$', text, re.M)
    return {reason: float(value) for reason, value in found}


def test_gateway_sheds_queued_segments_with_the_encoders_entities(gateway: Any) -> None:
    client, generator = gateway(0.2, cascade={"max_queued": 0})
    encoder = ner(client, method="baner")
    auto = ner(client)
    # Segment one asked the idle LLM; the other two would have waited behind it: shed.
    assert generator.calls == 1
    assert auto["method"] == "auto" and REASON_LLM_SHED in auto["escalation_reasons"]
    assert auto["escalate"]
    second = LONG.index("Maria")
    want = [(e["start"], e["end"], e["type"]) for e in encoder["entities"] if e["start"] >= second]
    got = [(e["start"], e["end"], e["type"]) for e in auto["entities"] if e["start"] >= second]
    assert got == want and want
    assert shed_counts(client) == {"queue": 2.0, "deadline": 0.0}
    # An idle LLM with room to queue: nothing shed.
    # (a long deadline: a busy test machine's slow encoder pass must not shed)
    roomy, roomy_llm = gateway(0.05, cascade={"max_queued": 3}, request_deadline_ms=600_000)
    full = ner(roomy)
    assert roomy_llm.calls == 3 and REASON_LLM_SHED not in full["escalation_reasons"]
    assert shed_counts(roomy) == {"queue": 0.0, "deadline": 0.0}


def test_a_short_deadline_sheds_a_long_one_waits_and_the_request_overrides_the_setting(
    gateway: Any,
) -> None:
    # The service's deadline is 1 ms: anything that has to wait misses it.
    client, generator = gateway(0.3, request_deadline_ms=1)
    ner(client, text="Peter Novak from Prague called.")  # measures one call (idle: asked)
    assert generator.calls == 1
    short = ner(client)
    assert REASON_LLM_SHED in short["escalation_reasons"] and generator.calls == 2
    assert shed_counts(client)["deadline"] == 2.0
    assert not client.post(
        "/v1/ner", json={"text": LONG, "domain": "support", "deadline_ms": 60_000}
    ).json()["cached"]  # the shed answer was not cached ...
    long = ner(client, deadline_ms=60_000)
    # ... and the long deadline's full answer is: served from the cache now.
    assert long["cached"] and REASON_LLM_SHED not in long["escalation_reasons"]
    assert generator.calls == 5  # the first long request waited for all three calls
    assert shed_counts(client)["deadline"] == 2.0


def test_an_invalid_deadline_is_a_422_json_error(gateway: Any) -> None:
    client, generator = gateway(0.01)
    for bad in (0, -5, 600_001, "soon", 1.5):
        body = {"text": "Hi", "domain": "support", "deadline_ms": bad}
        response = client.post("/v1/ner", json=body)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_request" and "deadline_ms" in error["message"], error
    assert generator.calls == 0
    schema = client.get("/openapi.json").json()["components"]["schemas"]["NERRequest"]
    field = schema["properties"]["deadline_ms"]
    assert "llm_shed" in field["description"]


def test_a_job_has_no_deadline_unless_its_request_sets_one(gateway: Any) -> None:
    client, generator = gateway(0.2, request_deadline_ms=1)
    ner(client, text="Peter Novak from Prague called.")  # measures one call

    def job(**fields: Any) -> dict[str, Any]:
        body = {"text": LONG, "domain": "support", **fields}
        accepted = client.post("/v1/ner/jobs", json=body)
        assert accepted.status_code == 202, accepted.text
        done = wait_for(client, accepted.json()["status_url"], lambda b: b["status"] == "done")
        return done[-1]["result"]

    # NERVE_REQUEST_DEADLINE_MS is for synchronous requests: the job waits for every call.
    assert REASON_LLM_SHED not in job()["escalation_reasons"] and generator.calls == 4
    assert shed_counts(client)["deadline"] == 0.0
    # Its own deadline_ms counts (another top_k: not the full answer cached above).
    assert REASON_LLM_SHED in job(deadline_ms=1, top_k=4)["escalation_reasons"]
    assert shed_counts(client)["deadline"] == 2.0
