import threading
import time

import pytest

from chess_com.throttle import AdaptiveLimiter, parallel_map


def test_limiter_halves_on_429_and_recovers_additively() -> None:
    limiter = AdaptiveLimiter(4, recovery=3)
    limiter.on_throttled()
    assert limiter.limit == 2
    limiter.on_throttled()
    limiter.on_throttled()
    assert limiter.limit == 1  # never below one
    for _ in range(3):
        limiter.on_success()
    assert limiter.limit == 2
    for _ in range(30):
        limiter.on_success()
    assert limiter.limit == 4  # never above the configured maximum


def test_limiter_rejects_zero() -> None:
    with pytest.raises(ValueError, match="max_concurrency must be >= 1, got 0"):
        AdaptiveLimiter(0)


def test_limiter_caps_in_flight() -> None:
    limiter = AdaptiveLimiter(2)
    peak = 0
    current = 0
    lock = threading.Lock()

    def work(_: int) -> None:
        nonlocal peak, current
        with limiter:
            with lock:
                current += 1
                peak = max(peak, current)
            time.sleep(0.01)
            with lock:
                current -= 1

    results = list(parallel_map(work, range(20), workers=5))
    assert len(results) == 20
    assert peak == 2


def test_parallel_map_yields_every_item_with_its_result_or_error() -> None:
    def square(x: int) -> int:
        if x == 3:
            raise ValueError("three")
        return x * x

    out = {}
    for item, future in parallel_map(square, range(6), workers=3):
        out[item] = future.exception() or future.result()
    assert {k: v for k, v in out.items() if k != 3} == {0: 0, 1: 1, 2: 4, 4: 16, 5: 25}
    assert isinstance(out[3], ValueError)


def test_parallel_map_submits_a_bounded_window_ahead() -> None:
    started = []

    def record(x: int) -> int:
        started.append(x)
        return x

    gen = parallel_map(record, range(1000), workers=2)
    next(gen)
    time.sleep(0.05)
    # Only the window (2 x workers) plus one refill can have started, not all 1000.
    assert len(started) <= 2 * 2 + 2
    gen.close()
