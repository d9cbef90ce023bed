"""Stopping a run on SIGTERM or SIGINT: promptly, cleanly, and saying so.

Kestra's kill and task timeout (with the Docker task runner's `killGracePeriod`), `docker
stop` and Kubernetes send SIGTERM first; Ctrl-C sends SIGINT. The runner owns both signals
for the whole run (`StopSignals`, installed by `run_pipeline`):

- First signal: the run stops starting things. The source is told (`SourceReport.stop()`,
  called from the handler: it must only set flags) and requests nothing more; what it had
  fetched is loaded, so the load in progress finishes and commits, and no further load,
  pending package or after-load step starts. The summary says `stopped by SIGTERM` and what
  is left for the next run; the exit code is 128 + the signal (143 SIGTERM, 130 SIGINT).
  A source without `stop()` is stopped by dlt itself: the runner raises dlt's own signal
  flag, so extract stops at its next item, normalize cancels and load stops starting jobs;
  that load is aborted (nothing of it committed, fetched again next run).
- Second signal: exit at once (`os._exit`, same exit code). Nothing is lost: dlt commits
  a load's data and its state together, so an interrupted load is loaded again from the
  working directory or fetched again by the next run, and the run lock is the kernel's.

Why not dlt's own handlers (dlt 1.31 `dlt.common.runtime.signals`): dlt installs them only
around normalize and load (`intercepted_signals`), so a SIGTERM while extracting kills the
process outright, and it clears the received signal when the step ends, so a signal that
arrives while a load finishes is forgotten and the run goes on with its next load and exits
0. The runner therefore turns dlt's interception off for its pipeline
(`runtime.intercept_signals`) and raises dlt's flag itself when it wants dlt to stop.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

from dlt.common.runtime import signals as dlt_signals

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def exit_code(signum: int) -> int:
    """The shell's convention for a process ended by a signal: 128 + its number."""
    return 128 + signum


class StopSignals:
    """`with StopSignals(on_stop):` — SIGTERM/SIGINT request a stop instead of killing.

    `signum` is the first signal received (None if none); `on_stop()` runs once, in the
    signal handler (the main thread, between two bytecodes): it must only set flags.
    Outside the main thread (where Python cannot install handlers) this does nothing.
    """

    def __init__(self, on_stop: Callable[[int], None] | None = None) -> None:
        self.on_stop = on_stop
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str | None:
        return signal.Signals(self.signum).name if self.signum is not None else None

    @property
    def exit_code(self) -> int | None:
        return exit_code(self.signum) if self.signum is not None else None

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._receive)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        if self.signum is not None and dlt_signals.was_signal_received():
            dlt_signals.set_received_signal(0)  # raised for a source without stop()

    def _receive(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:
            _say(
                f"{name} again: exiting now (exit {exit_code(signum)}); nothing half-done is "
                "committed: the next run loads or fetches it again"
            )
            os._exit(exit_code(signum))
        self.signum = signum
        _say(f"stopping on {name}: no new request, no new load (send {name} again to exit at once)")
        if self.on_stop is not None:
            self.on_stop(signum)


def _say(message: str) -> None:
    """Write a line to stderr from a signal handler: no logging or buffered IO there (the
    main thread may be inside either when the signal arrives)."""
    with contextlib.suppress(OSError):
        os.write(2, f"\nstop: {message}\n".encode())


def stop_dlt(signum: int) -> None:
    """Raise dlt's own signal flag: extract stops at its next item, normalize cancels its
    package, load starts no new job and fails the package (which the runner aborts)."""
    dlt_signals.set_received_signal(signum)
    dlt_signals.wake_all()
