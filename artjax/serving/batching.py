"""Concurrent requests gathered into one model call: at most `max_batch` items, the first one
waiting at most `max_wait_ms` for the others; the call runs in a thread, off the event loop, one
at a time. A full queue refuses at once (`QueueFull`) rather than growing without bound."""

from __future__ import annotations

import asyncio
from typing import Callable, Sequence


class QueueFull(RuntimeError):
    """More requests are waiting than the queue holds; retry later."""


class Batcher:
    """`await submit(item)` -> `run_batch([items])[i]` for that item. Start `run()` as a task on
    the serving loop (the app's lifespan does)."""

    def __init__(
        self,
        run_batch: Callable[[Sequence], Sequence],
        max_batch: int,
        max_wait_ms: float,
        max_queue: int,
    ):
        if max_batch < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ValueError(
                f"batching: max_batch ({max_batch}) and max_queue ({max_queue}) must be >= 1, "
                f"max_wait_ms ({max_wait_ms}) >= 0"
            )
        self.run_batch, self.max_batch = run_batch, max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=max_queue)
        self.batch_sizes: list[int] = []  # of every model call, for tests and benchmarks

    async def submit(self, item):
        future = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait((item, future))
        except asyncio.QueueFull:
            raise QueueFull(f"{self.queue.maxsize} requests are already waiting") from None
        return await future

    async def _gather(self) -> list:
        batch = [await self.queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while len(batch) < self.max_batch:
            try:
                batch.append(self.queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), left))
            except TimeoutError:
                break
        return batch

    async def run(self) -> None:
        while True:
            batch = await self._gather()
            self.batch_sizes.append(len(batch))
            try:
                results = await asyncio.to_thread(self.run_batch, [item for item, _ in batch])
            except Exception as e:  # every waiting request gets the error; the loop goes on
                for _, future in batch:
                    if not future.done():
                        future.set_exception(e)
                continue
            for (_, future), result in zip(batch, results):
                if not future.done():  # a client that went away leaves a cancelled future
                    future.set_result(result)
