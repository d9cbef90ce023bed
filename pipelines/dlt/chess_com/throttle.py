"""Bounded, self-adjusting concurrency for polite parallel requests.

Chess.com allows unlimited serial access but may answer 429 to parallel requests.
`AdaptiveLimiter` caps requests in flight and halves the cap on every 429
(multiplicative decrease), then earns it back one slot per `recovery` successes
(additive increase), so a run settles just below what the server tolerates.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


class AdaptiveLimiter:
    def __init__(self, max_in_flight: int, recovery: int = 20) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_in_flight}")
        self.max_in_flight = max_in_flight
        self.limit = max_in_flight
        self.recovery = recovery
        self.throttled = 0
        self._in_flight = 0
        self._successes = 0
        self._cond = threading.Condition()

    def __enter__(self) -> AdaptiveLimiter:
        with self._cond:
            while self._in_flight >= self.limit:
                self._cond.wait()
            self._in_flight += 1
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._in_flight -= 1
            self._cond.notify_all()

    def on_throttled(self) -> None:
        """Called for every 429: halve the cap (never below one)."""
        with self._cond:
            self.throttled += 1
            self.limit = max(1, self.limit // 2)
            self._successes = 0

    def on_success(self) -> None:
        with self._cond:
            if self.limit >= self.max_in_flight:
                return
            self._successes += 1
            if self._successes >= self.recovery:
                self.limit += 1
                self._successes = 0
                self._cond.notify_all()


def parallel_map(
    fn: Callable[[T], R], items: Iterable[T], workers: int
) -> Iterator[tuple[T, Future[R]]]:
    """Run `fn` over `items` on `workers` threads, yielding `(item, future)` as each completes.

    At most `2 * workers` calls are submitted ahead of the consumer, so results (whole
    monthly archives) never pile up in memory, whatever the number of items.
    Futures are returned done; `.result()` re-raises the call's exception.
    """
    window = 2 * workers
    source = iter(items)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chess-com") as pool:
        pending: dict[Future[R], T] = {}

        def fill() -> None:
            while len(pending) < window:
                try:
                    item = next(source)
                except StopIteration:
                    return
                pending[pool.submit(fn, item)] = item

        fill()
        try:
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    yield pending.pop(future), future
                fill()
        finally:
            # The consumer stopped early (error, generator closed): drop queued work.
            for future in pending:
                future.cancel()
