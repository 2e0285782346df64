"""A circuit breaker for a GitHub host (docs/operations.md#when-github-is-down).

When GitHub stops answering (connections refused, timeouts, 5xx after the
client's own retries), every handler that calls it would fail slowly, log a
traceback and burn one of its delivery's attempts, and the retries would eat
the event loop the intake runs on. After `threshold` failed requests within
`window` seconds the breaker opens: requests fail at once with
`GitHubUnavailable`, without touching the network, and the dispatcher holds
their deliveries (pending, attempts unchanged). After `cooldown` seconds one
request goes through as a probe; if GitHub answers, the breaker closes and
the held deliveries run; if not, it stays open for twice as long, up to
`max_cooldown`.

A request counts once, after the client's retries: one slow outage of a
single request is not five failures. Any answer below 500 (a 404, a 403, a
rate limit) is GitHub answering, and closes the breaker.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger("compound.github")


class GitHubUnavailable(Exception):
    """GitHub is not being called for now: the breaker for its host is open."""

    def __init__(self, host: str, retry_in: float, reason: str) -> None:
        self.host = host
        self.retry_in = retry_in
        self.reason = reason
        super().__init__(f"GitHub ({host}) unavailable: {reason}; next try in {retry_in:.0f}s")


class CircuitBreaker:
    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"

    def __init__(
        self,
        host: str,
        *,
        threshold: int = 5,
        window: float = 60.0,
        cooldown: float = 15.0,
        max_cooldown: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self.threshold = threshold
        self.window = window
        self.first_cooldown = cooldown
        self.max_cooldown = max_cooldown
        self.clock = clock
        self.state = self.CLOSED
        self.cooldown = cooldown
        self.reason = ""
        self._failures: deque[float] = deque()
        self._open_until = 0.0
        self._probing = False
        # Called (in the event loop, without arguments) when GitHub answers again.
        self.on_close: list[Callable[[], None]] = []

    def retry_in(self) -> float:
        """Seconds until the next probe may go (0 when closed)."""
        if self.state == self.CLOSED:
            return 0.0
        return max(self._open_until - self.clock(), 0.0)

    def before(self) -> bool:
        """Before a request: raise GitHubUnavailable while open; True when this request is the probe."""
        if self.state == self.CLOSED or self.threshold <= 0:
            return False
        now = self.clock()
        if self.state == self.OPEN and now >= self._open_until and not self._probing:
            self.state = self.HALF_OPEN
            self._probing = True
            return True
        raise GitHubUnavailable(self.host, self.retry_in(), self.reason)

    def success(self, probe: bool = False) -> None:
        if self.state != self.CLOSED and (probe or not self._probing):
            log.warning("GitHub (%s) answers again: resuming after %s", self.host, self.reason)
            self.state = self.CLOSED
            self.cooldown = self.first_cooldown
            self._probing = False
            for listener in self.on_close:
                try:
                    listener()
                except Exception:  # a listener's bug must not fail the request that probed
                    log.exception("a breaker listener failed")
        self._failures.clear()

    def failure(self, reason: str, probe: bool = False) -> None:
        now = self.clock()
        self.reason = reason
        if probe or self.state == self.HALF_OPEN:
            self._probing = False
            self.cooldown = min(self.cooldown * 2, self.max_cooldown)
            self._open(now)
            return
        self._failures.append(now)
        while self._failures and self._failures[0] < now - self.window:
            self._failures.popleft()
        if self.state == self.CLOSED and self.threshold > 0 and len(self._failures) >= self.threshold:
            self._open(now)

    def _open(self, now: float) -> None:
        self.state = self.OPEN
        self._open_until = now + self.cooldown
        log.warning(
            "GitHub (%s) unavailable (%s): not calling it for %.0fs; deliveries wait",
            self.host,
            self.reason,
            self.cooldown,
        )
