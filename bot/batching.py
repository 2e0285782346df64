"""Group commit: callers that arrive while a write is in flight share the next one.

At a few thousand deliveries a second, one transaction (and one fsync) per
delivery is what limits intake; batching the concurrent ones keeps every
delivery durable before its answer at a fraction of the cost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger("compound.batching")


class Batcher(Generic[T, R]):
    """Runs `flush(items) -> results` (one result per item) over queued items."""

    def __init__(
        self,
        flush: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        *,
        max_batch: int = 512,
        name: str = "batcher",
    ) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._name = name
        self._items: list[tuple[T, asyncio.Future[R]]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._in_flight = 0

    @property
    def pending(self) -> int:
        """Items submitted and not yet flushed."""
        return len(self._items) + self._in_flight

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._closing

    async def submit(self, item: T) -> R:
        return await self.submit_nowait(item)

    def submit_nowait(self, item: T) -> asyncio.Future[R]:
        """Queue an item; the future resolves when its batch is written."""
        if self._closing or self._task is None:
            raise RuntimeError(f"{self._name} is not running")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._items.append((item, future))
        self._wakeup.set()
        return future

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._items:
                batch = self._items[: self._max_batch]
                del self._items[: self._max_batch]
                self._in_flight = len(batch)
                try:
                    await self._flush_batch(batch)
                finally:
                    self._in_flight = 0
            if self._closing:
                return

    async def _flush_batch(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._flush([item for item, _ in batch])
        except Exception as exc:  # the callers get the error; the loop goes on
            log.warning("%s: batch of %d failed: %s", self._name, len(batch), exc)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def close(self) -> None:
        """Finish what was submitted, then stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None
