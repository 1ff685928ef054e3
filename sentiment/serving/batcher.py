"""Texts of concurrent requests scored together, in the process that serves them.

While the model scores one batch (in a worker thread: ONNX Runtime releases the GIL), the
requests that arrive queue; when it is done, the next batch is everything waiting, up to
``max_texts``. No window is waited out: a lone request is scored at once, and under load
batches grow by themselves. ``bench.serve_load`` measured it against BentoML's adaptive
batching behind an HTTP hop (a second service, or the service's own route): see
``docs/benchmarks.md``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

R = TypeVar("R")


def take(sizes: Sequence[int], max_texts: int) -> int:
    """How many of the waiting requests (their sizes in texts, oldest first) go in the next
    batch: as many as fit in ``max_texts``, and at least one."""
    total = count = 0
    for size in sizes:
        if count and total + size > max_texts:
            break
        total, count = total + size, count + 1
    return count


class Batcher(Generic[R]):
    """``await batcher(texts)``: the results of ``score`` for ``texts``, in order, with each
    text scored once, in one call to ``score`` together with other requests' texts."""

    def __init__(self, score: Callable[[list[str]], list[R]], max_texts: int) -> None:
        self.score, self.max_texts = score, max_texts
        self.waiting: deque[tuple[list[str], asyncio.Future[list[R]]]] = deque()
        self.draining: asyncio.Task[None] | None = None  # held: a task is only weakly referenced

    async def __call__(self, texts: list[str]) -> list[R]:
        future: asyncio.Future[list[R]] = asyncio.get_running_loop().create_future()
        self.waiting.append((texts, future))
        if self.draining is None or self.draining.done():
            self.draining = asyncio.get_running_loop().create_task(self.drain())
        return await future

    async def drain(self) -> None:
        while self.waiting:
            count = take([len(texts) for texts, _ in self.waiting], self.max_texts)
            batch = [self.waiting.popleft() for _ in range(count)]
            texts = [text for request, _ in batch for text in request]
            try:
                results = await asyncio.to_thread(self.score, texts)
            except Exception as err:  # each request of the batch gets the error
                for _, future in batch:
                    if not future.done():
                        future.set_exception(err)
                continue
            start = 0
            for request, future in batch:
                if not future.done():  # a request whose client left is cancelled
                    future.set_result(results[start : start + len(request)])
                start += len(request)
