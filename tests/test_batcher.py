"""The service's batcher: concurrent requests scored together, each text once, in order."""

from __future__ import annotations

import asyncio
import threading

import pytest

from sentiment.serving.batcher import Batcher, take


def test_a_batch_takes_what_fits_and_at_least_one() -> None:
    assert take([1, 1, 1], 2) == 2
    assert take([3, 1], 2) == 1  # a request over the bound goes alone
    assert take([1, 3], 2) == 1
    assert take([2, 2, 1], 8) == 3
    assert take([], 8) == 0


class Model:
    """Scores a text as its length; records each call and can be held while scoring."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.release = threading.Event()
        self.release.set()

    def __call__(self, texts: list[str]) -> list[int]:
        self.release.wait(5)
        self.calls.append(list(texts))
        if "boom" in texts:
            raise RuntimeError("model failed")
        return [len(t) for t in texts]


def test_requests_waiting_on_a_busy_model_are_scored_together_in_order() -> None:
    model = Model()

    async def scenario() -> list[list[int]]:
        batcher = Batcher(model, max_texts=8)
        model.release.clear()
        first = asyncio.create_task(batcher(["a"]))  # scored alone, and held
        await asyncio.sleep(0.05)
        rest = [asyncio.create_task(batcher(["b" * i, "c" * i])) for i in range(1, 7)]
        await asyncio.sleep(0.05)
        model.release.set()
        return [await first, *[await r for r in rest]]

    answers = asyncio.run(scenario())
    assert answers == [[1], *[[i, i] for i in range(1, 7)]]
    assert [len(c) for c in model.calls] == [1, 8, 4]  # 12 waiting texts: 8, then 4
    scored = [t for call in model.calls for t in call]
    assert len(scored) == 13 == len(set(scored))  # each text once


def test_a_lone_request_is_scored_at_once() -> None:
    model = Model()

    async def scenario() -> float:
        batcher = Batcher(model, max_texts=8)
        loop = asyncio.get_running_loop()
        start = loop.time()
        assert await batcher(["x"]) == [1]
        return loop.time() - start

    assert asyncio.run(scenario()) < 0.5
    assert model.calls == [["x"]]


def test_a_failed_batch_fails_its_requests_and_the_next_batch_is_scored() -> None:
    model = Model()

    async def scenario() -> tuple[list, list[int]]:
        batcher = Batcher(model, max_texts=8)
        model.release.clear()
        held = asyncio.create_task(batcher(["held"]))
        await asyncio.sleep(0.05)
        failing = [asyncio.create_task(batcher([t])) for t in ("boom", "ok")]
        await asyncio.sleep(0.05)
        model.release.set()
        await held
        outcomes = await asyncio.gather(*failing, return_exceptions=True)
        return outcomes, await batcher(["after"])

    outcomes, after = asyncio.run(scenario())
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    assert after == [5]


def test_a_request_whose_client_left_does_not_stop_the_others() -> None:
    model = Model()

    async def scenario() -> list[int]:
        batcher = Batcher(model, max_texts=8)
        model.release.clear()
        held = asyncio.create_task(batcher(["held"]))
        await asyncio.sleep(0.05)
        gone = asyncio.create_task(batcher(["gone"]))
        kept = asyncio.create_task(batcher(["kept!"]))
        await asyncio.sleep(0.05)
        gone.cancel()
        model.release.set()
        await held
        with pytest.raises(asyncio.CancelledError):
            await gone
        return await kept

    assert asyncio.run(scenario()) == [5]
