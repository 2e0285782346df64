"""Runs stored deliveries through the handlers, after the 202.

Each handler is isolated: one that raises neither stops the others nor loses
the delivery. The failed handlers (only those) are retried with exponential
backoff up to `max_attempts`; then the delivery is parked as `failed`.
Deliveries that were stored but not processed (a crash, a stop, a full queue)
are claimed from the store by the sweeper and processed here or by any other
Compound process sharing the database.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
import gidgethub
import orjson
from gidgethub import routing, sansio

from bot.batching import Batcher
from bot.github.breaker import GitHubUnavailable
from bot.logs import log_context
from bot.metrics import Metrics
from bot.store.base import utcnow
from bot.store.deliveries import DeliveryRecord, DeliveryStore

log = logging.getLogger("compound.dispatch")

# How a handler's error says it met an outage (the delivery is held, not failed).
OUTAGE_MARK = "held: GitHub unavailable: "
# Held deliveries are said once per this many seconds, with their count.
OUTAGE_LOG_INTERVAL = 60.0
# A held delivery is tried again after at least this long (jittered), and the
# breaker's cooldown when that is longer.
HOLD_MIN = 2.0
# Where a failure of the skip check (bot/skips.py) is recorded among the handlers:
# while it is pending, every handler still is.
GATE = "compound.skips"


def github_outage(exc: BaseException) -> str | None:
    """Why `exc` means GitHub is not answering (not that the handler is wrong), or None.

    The breaker's fail-fast error, a connection that failed or timed out, or a
    5xx left after the client's retries; also when a handler wrapped one.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, GitHubUnavailable):
            return current.reason
        if isinstance(current, (aiohttp.ClientConnectionError, TimeoutError)):
            return f"{type(current).__name__}: {current}".rstrip(": ")
        if isinstance(current, gidgethub.GitHubBroken):
            return f"HTTP {current.status_code}"
        current = current.__cause__ or current.__context__
    return None


class StoredEvent(sansio.Event):
    """A delivery for the handlers; its payload is parsed the first time `data` is read.

    Routing needs only the event and the action, which the intake stored
    beside the payload: a delivery nobody handles, or whose handlers return
    before they look (no App registered yet), never builds the payload's objects.
    """

    def __init__(self, record: DeliveryRecord, data: dict[str, Any] | None = None) -> None:
        # Not sansio.Event.__init__: it would assign `data`, which is read-only here.
        self.event = record.event
        self.delivery_id = record.delivery_id
        self._record = record
        self._data = data

    @property
    def data(self) -> Any:
        if self._data is None:
            self._data = orjson.loads(self._record.payload)
        return self._data

    @property
    def parsed(self) -> dict[str, Any] | None:
        """The payload if a handler has read it, else None."""
        return self._data


class _RoutingView:
    """What gidgethub's Router.fetch reads of `event.data`, without parsing for `action`."""

    __slots__ = ("_event",)

    def __init__(self, event: StoredEvent) -> None:
        self._event = event

    def __contains__(self, key: str) -> bool:
        if key == "action":
            return self._event._record.action is not None
        return key in self._event.data

    def __getitem__(self, key: str) -> Any:
        if key == "action":
            return self._event._record.action
        return self._event.data[key]


class _Routing:
    __slots__ = ("event", "data")

    def __init__(self, event: StoredEvent) -> None:
        self.event = event.event
        self.data = _RoutingView(event)


def handler_name(callback: Callable[..., Any]) -> str:
    return f"{callback.__module__}.{callback.__qualname__}"


@dataclass
class DispatchPolicy:
    lease: float = 30.0  # seconds a claim lasts without a heartbeat
    max_attempts: int = 5
    backoff: float = 2.0  # first retry after this many seconds, doubling
    concurrency: int = 16  # deliveries processed at once
    capacity: int = 1000  # deliveries held in memory (queued, running, waiting to retry)
    sweep_interval: float = 10.0


class Dispatcher:
    def __init__(
        self,
        *,
        router: routing.Router,
        store: DeliveryStore,
        metrics: Metrics,
        owner: str,
        context: Any,
        client_for: Callable[[int | None], Any],
        policy: DispatchPolicy | None = None,
        breaker: Any = None,
        gate: Any = None,
    ) -> None:
        self.router = router
        self.store = store
        self.metrics = metrics
        self.owner = owner
        self.context = context
        self.client_for = client_for
        self.policy = policy or DispatchPolicy()
        self._queue: asyncio.Queue[tuple[DeliveryRecord, dict[str, Any] | None]] = asyncio.Queue()
        self._held = 0
        self._backlog = True  # there may be unclaimed deliveries in the store
        self._poke = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._busy: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._retries: set[asyncio.TimerHandle] = set()
        # Deliveries held for an outage, by record: woken at once when GitHub answers.
        self._waiting: dict[int, tuple[asyncio.TimerHandle, DeliveryRecord, dict[str, Any] | None]] = {}
        self._closing = False
        self.breaker = breaker
        # bot.skips.DeliveryGate: deliveries that cannot be acted on are skipped, not run.
        self.gate = gate
        self._outage = ""
        self._held_count = 0
        self._held_logged = 0.0
        # Processed marks go to the intake's writer when there is one (they share
        # its transactions), else to a batcher of their own.
        self._marks: Any = None
        self._completer: Batcher[str, None] = Batcher(self._complete, name="delivery-completer")
        # Per delivery, only bound metric children and cached names (labels()
        # and sorting by name cost more than the handler itself when it has
        # nothing to do).
        self._processed_ok = metrics.deliveries_processed.labels("processed")
        self._handler_metrics: dict[tuple[str, str], tuple[Any, Any, Any]] = {}
        self._names: dict[Callable[..., Any], str] = {}
        # Read when scraped, not set on every change.
        metrics.deliveries_pending.set_function(lambda: self._held)

    # -- intake side --------------------------------------------------------

    def reserve(self) -> bool:
        """Room to keep one more fresh delivery in memory? (Then the intake claims it.)"""
        if self._closing or self._held >= self.policy.capacity:
            return False
        self._held += 1
        return True

    def unreserve(self) -> None:
        self._held -= 1

    def submit(self, record: DeliveryRecord, data: dict[str, Any] | None) -> None:
        """Queue a stored delivery this process has claimed (after `reserve`)."""
        self._queue.put_nowait((record, data))

    def poke(self) -> None:
        """Deliveries were stored unclaimed: sweep the store soon."""
        self._backlog = True
        self._poke.set()

    def complete_through(self, writer: Any) -> None:
        """Send processed marks through `writer`.

        It has `running`, `mark_processed(id)`, `marks_pending` and `on_marks_failed(callback)`.
        """
        self._marks = writer
        writer.on_marks_failed(self._marks_failed)

    def _marks_pending(self) -> int:
        pending = self._completer.pending
        if self._marks is not None:
            pending += self._marks.marks_pending
        return pending

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        self._completer.start()
        self._workers = [
            asyncio.create_task(self._worker(), name=f"dispatch-{i}") for i in range(self.policy.concurrency)
        ]
        # Sweep at once: deliveries a previous run left unprocessed must not wait
        # for the first periodic look.
        self._backlog = True
        self._poke.set()
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="dispatch-sweeper")

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking work, let running handlers finish (up to `grace`), release claims."""
        self._closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        while not self._queue.empty():
            self._queue.get_nowait()
            self.unreserve()
        for handle in self._retries:
            handle.cancel()
        self._retries.clear()
        self._waiting.clear()
        for task in self._workers:
            if task not in self._busy:
                task.cancel()
        if self._workers:
            _, late = await asyncio.wait(self._workers, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*self._workers, return_exceptions=True)
        if self._sweeper is not None:
            await asyncio.gather(self._sweeper, return_exceptions=True)
        await self._completer.close()
        # Whatever is still pending is ours no more: a restart or another process takes it now.
        await self.store.release(self.owner)

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait until nothing is queued, running or waiting to be marked processed."""
        deadline = time.monotonic() + timeout
        while self._held > 0 or not self._queue.empty() or self._marks_pending():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self._held} deliveries still in progress")
            await asyncio.sleep(0.01)

    # -- processing -----------------------------------------------------------

    async def _worker(self) -> None:
        me = asyncio.current_task()
        assert me is not None
        while not self._closing:
            record, data = await self._queue.get()
            self._busy.add(me)
            try:
                keep = await self.process(record, data)
            except Exception:  # store trouble: hand the delivery back for a later sweep
                log.exception("could not process delivery", extra={"delivery": record.delivery_id})
                keep = False
                self._backlog = True
                try:
                    await self.store.release(self.owner, record.delivery_id)
                except Exception:  # the store is down; the lease lapses without heartbeats
                    log.warning("could not release delivery %s", record.delivery_id)
            finally:
                self._busy.discard(me)
            if not keep:
                self.unreserve()
                if self._backlog:
                    self._poke.set()

    async def process(self, record: DeliveryRecord, data: dict[str, Any] | None) -> bool:
        """Run the handlers; returns True when a retry was scheduled (memory still held)."""
        with log_context(
            delivery=record.delivery_id,
            event=record.event,
            action=record.action,
            installation=record.installation_id,
            repo=record.repo,
        ):
            event = StoredEvent(record, data)
            failed, error, outage, why = await self._run_handlers(record, event)
            if why is not None:
                await self.store.mark_skipped(record.delivery_id, why)
                self.metrics.deliveries_processed.labels("skipped").inc()
                log.info("delivery skipped: %s", why)
                return False
            if not failed:
                marks = self._marks
                if marks is not None and marks.running:
                    marks.mark_processed(record.delivery_id)
                elif self._completer.running:
                    # Not awaited: the worker moves on while the mark joins the next
                    # batch. Should that write fail, the claim is released and the
                    # delivery runs again (at least once, never lost).
                    self._completer.submit_nowait(record.delivery_id)
                else:  # not started (compound receive): write it directly
                    await self.store.mark_processed([record.delivery_id])
                self._processed_ok.inc()
                return False
            # Held only while the breaker is open: one endpoint that keeps failing
            # while GitHub otherwise answers is the handler's failure, retried and parked.
            if outage and self.breaker is not None and self.breaker.state != "closed":
                return await self._hold(record, event, failed, error)
            attempts = record.attempts + 1
            if attempts >= self.policy.max_attempts:
                await self.store.mark_attempt_failed(
                    record.delivery_id,
                    pending_handlers=failed,
                    error=error,
                    retry_at=None,
                    lease=self.policy.lease,
                )
                self.metrics.deliveries_processed.labels("failed").inc()
                log.error(
                    "delivery failed after %d attempts; parked as failed",
                    attempts,
                    extra={"handlers": failed},
                )
                return False
            delay = self.policy.backoff * 2 ** (attempts - 1) * random.uniform(0.8, 1.2)
            await self.store.mark_attempt_failed(
                record.delivery_id,
                pending_handlers=failed,
                error=error,
                retry_at=utcnow() + timedelta(seconds=delay),
                lease=self.policy.lease,
            )
            self.metrics.deliveries_processed.labels("retrying").inc()
            log.warning(
                "handlers failed; retry %d of %d in %.1fs",
                attempts,
                self.policy.max_attempts - 1,
                delay,
                extra={"handlers": failed},
            )
            record.attempts = attempts
            record.pending_handlers = failed
            if self._closing:
                return False
            loop = asyncio.get_running_loop()
            handle = loop.call_later(delay, self._retry_now, record, event.parsed)
            self._retries.add(handle)
            return True

    async def _hold(self, record: DeliveryRecord, event: StoredEvent, failed: list[str], error: str) -> bool:
        """GitHub is down: keep the delivery pending, its attempts unspent, and try when it may answer."""
        wait = max(self.breaker.retry_in() if self.breaker is not None else 0.0, HOLD_MIN)
        delay = wait * random.uniform(1.0, 1.25)
        await self.store.mark_attempt_failed(
            record.delivery_id,
            pending_handlers=failed,
            error=error,
            retry_at=utcnow() + timedelta(seconds=delay),
            lease=self.policy.lease,
            count=False,
        )
        self.metrics.deliveries_processed.labels("held").inc()
        self._held_count += 1
        now = time.monotonic()
        if now - self._held_logged >= OUTAGE_LOG_INTERVAL:
            since = "" if not self._held_logged else f" in the last {now - self._held_logged:.0f}s"
            log.warning(
                "GitHub unavailable (%s): %d deliveries held%s; they run when it answers again",
                self._outage,
                self._held_count,
                since,
            )
            self._held_logged, self._held_count = now, 0
        record.pending_handlers = failed
        if self._closing:
            return False
        handle = asyncio.get_running_loop().call_later(delay, self._retry_now, record, event.parsed)
        self._retries.add(handle)
        self._waiting[id(record)] = (handle, record, event.parsed)
        return True

    def _retry_now(self, record: DeliveryRecord, data: dict[str, Any] | None) -> None:
        self._waiting.pop(id(record), None)
        self._retries = {h for h in self._retries if not h.cancelled() and h.when() > time.monotonic()}
        if not self._closing:
            self._queue.put_nowait((record, data))

    def resume_held(self) -> None:
        """GitHub answers again: the deliveries held for the outage run now, oldest first,
        rather than each at the end of its own wait (up to the breaker's longest cooldown)."""
        waiting = list(self._waiting.values())  # in the order they were held
        self._waiting.clear()
        for handle, record, data in waiting:
            handle.cancel()
            self._retry_now(record, data)
        if waiting:
            log.info("GitHub answers again: %d held deliveries resume", len(waiting))

    def _name(self, callback: Callable[..., Any]) -> str:
        name = self._names.get(callback)
        if name is None:
            name = self._names[callback] = handler_name(callback)
        return name

    async def _run_handlers(
        self, record: DeliveryRecord, event: StoredEvent
    ) -> tuple[list[str], str, bool, str | None]:
        """The handlers that failed, their errors, whether all of them failed for a
        GitHub outage, and why the delivery is skipped (then no handler ran)."""
        found = self.router.fetch(_Routing(event))  # type: ignore[arg-type]  # a frozenset
        if not found:
            return [], "", False, None
        pending = record.pending_handlers
        if self.gate is not None and (pending is None or GATE in pending):
            try:
                why = await self.gate.reason(record)
            except Exception as exc:
                err = self._failure(GATE, exc)
                return [GATE], f"{GATE}: {err}", err.startswith(OUTAGE_MARK), None
            if why is not None:
                return [], "", False, why
            if pending is not None:  # the check had failed before any handler ran
                pending = None
        callbacks = sorted(found, key=self._name) if len(found) > 1 else list(found)
        if pending is not None:
            callbacks = [cb for cb in callbacks if self._name(cb) in pending]
        gh = self.client_for(record.installation_id) if callbacks else None
        if len(callbacks) == 1:  # the usual case: no task and no gather for one
            results = [await self._call(callbacks[0], event, gh)]
        else:
            results = await asyncio.gather(*(self._call(cb, event, gh) for cb in callbacks))
        failed = [name for name, err in results if err is not None]
        errors = "\n".join(f"{name}: {err}" for name, err in results if err is not None)
        outage = bool(failed) and all(err.startswith(OUTAGE_MARK) for _, err in results if err is not None)
        return failed, errors, outage, None

    def _failure(self, name: str, exc: Exception) -> str:
        """How a handler's exception is recorded; an outage is said once per interval, without a traceback."""
        outage = github_outage(exc)
        if outage is not None:
            log.debug("handler %s: GitHub unavailable (%s)", name, outage, extra={"handler": name})
            self._outage = outage
            return f"{OUTAGE_MARK}{outage}"
        log.exception("handler %s failed", name, extra={"handler": name})
        return f"{type(exc).__name__}: {exc}"

    async def _call(self, callback: Callable[..., Any], event: sansio.Event, gh: Any) -> tuple[str, str | None]:
        name = self._name(callback)
        bound = self._handler_metrics.get((event.event, name))
        if bound is None:
            m = self.metrics
            bound = self._handler_metrics[(event.event, name)] = (
                m.handler_seconds.labels(event.event, name),
                m.handler_results.labels(event.event, name, "ok"),
                m.handler_results.labels(event.event, name, "error"),
            )
        seconds, ok, error = bound
        started = time.perf_counter()
        try:
            await callback(event, gh, self.context)
        except Exception as exc:
            error.inc()
            return name, self._failure(name, exc)
        finally:
            seconds.observe(time.perf_counter() - started)
        ok.inc()
        return name, None

    async def _complete(self, delivery_ids: Sequence[str]) -> list[None]:
        try:
            await self.store.mark_processed(delivery_ids)
        except Exception:
            await self._marks_failed(delivery_ids)
        return [None] * len(delivery_ids)

    async def _marks_failed(self, delivery_ids: Sequence[str]) -> None:
        log.exception("could not mark %d deliveries processed; they will run again", len(delivery_ids))
        self._backlog = True
        for delivery_id in delivery_ids:
            try:
                await self.store.release(self.owner, delivery_id)
            except Exception:  # the store is down; the lease lapses without heartbeats
                break

    # -- sweeping and heartbeat ---------------------------------------------

    async def _sweep_loop(self) -> None:
        heartbeat_every = self.policy.lease / 3
        next_heartbeat = time.monotonic() + heartbeat_every
        while True:
            wait = min(self.policy.sweep_interval, max(0.0, next_heartbeat - time.monotonic()))
            try:
                # Not wait_for: on 3.11 its inner task could leave this task
                # cancelling for ever when stop() cancelled it just as a poke came.
                async with asyncio.timeout(wait):
                    await self._poke.wait()
            except TimeoutError:
                self._backlog = True  # periodic look: retries due, leases of dead processes
            self._poke.clear()
            try:
                if time.monotonic() >= next_heartbeat:
                    await self.store.renew(self.owner, self.policy.lease)
                    next_heartbeat = time.monotonic() + heartbeat_every
                if self._backlog:
                    await self.sweep()
            except Exception:
                log.exception("sweep failed; trying again later")

    async def sweep(self) -> int:
        """Claim due deliveries from the store, as many as there is room for."""
        room = self.policy.capacity - self._held
        # Under a burst, claiming one or two at a time costs a query each: wait
        # until a good share of the room is free (or we are idle).
        if self._closing or room <= 0 or (self._held > 0 and room < self.policy.capacity // 4):
            return 0
        limit = min(room, 200)
        records = await self.store.claim_due(self.owner, self.policy.lease, limit=limit)
        self._backlog = len(records) == limit
        for record in records:
            self._held += 1
            self._queue.put_nowait((record, None))
        if records:
            log.info("claimed %d stored deliveries", len(records))
        if self._backlog:
            self._poke.set()
        return len(records)
