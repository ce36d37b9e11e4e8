"""The micro-batcher (nerve/batching.py) on its own, with a plain batch function: which items
share a batch, who gets which result, failures, cancellation, shutdown. Waits are on events and
state, never on the clock: a batch is flushed by being full or by close() unless a test says."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Sequence

import pytest

from nerve.batching import BatcherClosed, BatchLimits, MicroBatcher

LONG = 3600.0  # a wait no test reaches: batches flush because they are full, or on close()


class Recorder:
    """A batch function that records its batches; ``hold`` blocks the next batch until
    ``release`` is set (``started`` tells the test it is running)."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.fail_on = fail_on
        self.hold = False
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, items: list[str]) -> list[str | BaseException]:
        self.batches.append(list(items))
        if self.hold:
            self.hold = False
            self.started.set()
            assert self.release.wait(60)
        if self.fail_on is not None and self.fail_on in items:
            raise ValueError(f"cannot do {self.fail_on}")
        return [
            KeyError(item) if item.startswith("missing") else f"answer to {item}" for item in items
        ]


async def until(condition: object, what: str) -> None:
    """Let the loop run until ``condition()`` holds (state, not time)."""
    for _ in range(100_000):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


async def started(recorder: Recorder) -> None:
    await asyncio.to_thread(recorder.started.wait, 60)


async def test_each_caller_gets_exactly_its_own_result() -> None:
    run = Recorder()
    batcher: MicroBatcher[str, str] = MicroBatcher("t", run, BatchLimits(LONG, 50))
    items = [f"text {i}" for i in range(50)]
    random.Random(7).shuffle(items)
    results = await asyncio.gather(*(batcher.submit(i) for i in items))
    assert results == [f"answer to {i}" for i in items]
    assert run.batches == [items]  # full at 50: one batch, in arrival order
    await batcher.close()


async def test_submit_many_spreads_over_batches_and_keeps_order() -> None:
    run = Recorder()
    batcher: MicroBatcher[str, str] = MicroBatcher("t", run, BatchLimits(LONG, 4))
    items = [f"s{i}" for i in range(8)]
    assert await batcher.submit_many(items) == [f"answer to {i}" for i in items]
    assert run.batches == [items[:4], items[4:]]
    await batcher.close()


async def test_the_wait_flushes_a_batch_that_is_not_full() -> None:
    run = Recorder()
    batcher: MicroBatcher[str, str] = MicroBatcher("t", run, BatchLimits(0.001, 100))
    assert await batcher.submit("alone") == "answer to alone"
    assert run.batches == [["alone"]]
    await batcher.close()


async def test_items_arriving_during_a_batch_form_the_next_one() -> None:
    run = Recorder()
    run.hold = True
    batcher: MicroBatcher[str, str] = MicroBatcher("t", run, BatchLimits(0.001, 10))
    first = asyncio.ensure_future(batcher.submit("a"))
    await started(run)
    later = [asyncio.ensure_future(batcher.submit(i)) for i in ("b", "c", "d")]
    await until(lambda: len(batcher._pending) == 3, "three queued")
    run.release.set()
    assert await first == "answer to a"
    assert [await f for f in later] == ["answer to b", "answer to c", "answer to d"]
    assert run.batches == [["a"], ["b", "c", "d"]]
    await batcher.close()


async def test_an_item_that_breaks_the_batch_fails_alone() -> None:
    run = Recorder(fail_on="bad")
    batcher: MicroBatcher[str, str] = MicroBatcher("t", run, BatchLimits(LONG, 4))
    calls = [batcher.submit(i) for i in ("x", "bad", "y", "z")]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert results[0] == "answer to x"
    assert isinstance(results[1], ValueError)
    assert results[2:] == ["answer to y", "answer to z"]
    # The batch, then each item alone.
    assert run.batches == [["x", "bad", "y", "z"], ["x"], ["bad"], ["y"], ["z"]]
    await batcher.close()


async def test_an_exception_returned_for_one_item_fails_only_that_item() -> None:
    run = Recorder()
    batcher: MicroBatcher[str, str] = MicroBatcher("t", run, BatchLimits(LONG, 3))
    results = await asyncio.gather(
        *(batcher.submit(i) for i in ("x", "missing", "y")), return_exceptions=True
    )
    assert results[0] == "answer to x" and results[2] == "answer to y"
    assert isinstance(results[1], KeyError)
    assert run.batches == [["x", "missing", "y"]]  # no retry needed
    with pytest.raises(KeyError):
        await batcher.submit_many(["w", "missing-too", "v"])
    await batcher.close()


async def test_a_cancelled_caller_is_dropped_without_stalling_the_batch() -> None:
    run = Recorder()
    run.hold = True
    batcher: MicroBatcher[str, str] = MicroBatcher("t", run, BatchLimits(0.001, 10))
    running = asyncio.ensure_future(batcher.submit("a"))
    await started(run)
    # b, b2, c and d queued behind the running batch; b's and c's clients go away (the head
    # of the queue and one in the middle), and so does a's while its batch runs.
    queued = {i: asyncio.ensure_future(batcher.submit(i)) for i in ("b", "b2", "c", "d")}
    await until(lambda: len(batcher._pending) == 4, "four queued")
    queued["b"].cancel()
    queued["c"].cancel()
    running.cancel()
    run.release.set()
    assert await queued["b2"] == "answer to b2"
    assert await queued["d"] == "answer to d"
    assert run.batches == [["a"], ["b2", "d"]]
    for future in (running, queued["b"], queued["c"]):
        assert future.cancelled()
    # And the batcher still serves.
    assert await batcher.submit("e") == "answer to e"
    await batcher.close()


async def test_a_caller_cancelled_while_its_batch_runs_leaves_the_others_their_answers() -> None:
    run = Recorder()
    batcher: MicroBatcher[str, str] = MicroBatcher("t", run, BatchLimits(LONG, 3))
    run.hold = True
    calls = {i: asyncio.ensure_future(batcher.submit(i)) for i in ("a", "b", "c")}
    await started(run)
    calls["b"].cancel()
    run.release.set()
    assert await calls["a"] == "answer to a"
    assert await calls["c"] == "answer to c"
    assert calls["b"].cancelled()
    await batcher.close()


async def test_close_answers_what_is_queued_then_refuses() -> None:
    run = Recorder()
    batcher: MicroBatcher[str, str] = MicroBatcher("t", run, BatchLimits(LONG, 100))
    waiting = [asyncio.ensure_future(batcher.submit(i)) for i in ("a", "b")]
    await until(lambda: len(batcher._pending) == 2, "two queued")
    await batcher.close()
    assert [await w for w in waiting] == ["answer to a", "answer to b"]
    assert run.batches == [["a", "b"]]
    with pytest.raises(BatcherClosed):
        await batcher.submit("late")
    await batcher.close()  # twice is fine


async def test_without_a_wait_every_call_is_direct() -> None:
    run = Recorder()
    batcher: MicroBatcher[str, str] = MicroBatcher("t", run, BatchLimits(0.0, 32))
    results = await asyncio.gather(batcher.submit_many(["a", "b"]), batcher.submit("c"))
    assert results == [["answer to a", "answer to b"], "answer to c"]
    assert sorted(run.batches) == [["a", "b"], ["c"]]  # each call its own, as before batching
    assert batcher.batches == 0
    with pytest.raises(KeyError):
        await batcher.submit("missing")


async def test_a_batch_function_returning_too_few_results_fails_each_item_alone() -> None:
    def short(items: list[str]) -> Sequence[str]:
        return ["only one"]

    batcher: MicroBatcher[str, str] = MicroBatcher("t", short, BatchLimits(LONG, 2))
    results = await asyncio.gather(batcher.submit("a"), batcher.submit("b"))
    assert results == ["only one", "only one"]  # retried alone, where one result is right
    await batcher.close()


def test_a_new_event_loop_gets_a_new_collector() -> None:
    run = Recorder()
    batcher: MicroBatcher[str, str] = MicroBatcher("t", run, BatchLimits(0.001, 4))
    assert asyncio.run(batcher.submit("a")) == "answer to a"
    assert asyncio.run(batcher.submit("b")) == "answer to b"  # as `nerve eval` may do
    assert run.batches == [["a"], ["b"]]
