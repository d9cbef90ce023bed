"""dlt's working directory for a run, and the lock that keeps a second run out of it.

dlt keeps a pipeline's local state, schemas and pending load packages in
`<pipelines dir>/<pipeline name>`, by default `~/.dlt/pipelines` (`/var/dlt/pipelines` as
root): one directory for every checkout and every run on the machine, with no lock. Here:

- `DLT_DATA_DIR` set: dlt's own rule, `$DLT_DATA_DIR/pipelines`.
- otherwise `./.dlt-data/pipelines` under the current directory, the same directory whose
  `<name>.duckdb` is the local destination, so a checkout's state and its DuckDB file go
  together. Inspect it from that directory with
  `DLT_DATA_DIR=.dlt-data dlt pipeline <name> info` (or `... trace`, `... load-package`).

dlt reads `.dlt/config.toml` and `.dlt/secrets.toml` from its project directory,
`$DLT_PROJECT_DIR` or else the current directory. A pipeline's settings live beside its
script (`pipelines/dlt/.dlt/`), so unless `DLT_PROJECT_DIR` is set, the project directory
is the directory of the script that defines `build_source`, if it has a `.dlt/`
(`use_script_project_dir`): the script reads the same settings from whichever directory
it is run.

A run holds an exclusive `fcntl` lock on `<pipelines dir>/<name>.lock` from before it reads
any state until it exits; the kernel drops the lock when the process dies (even on
SIGKILL), so a lock is never stale. The file records the holder (pid, host, start time)
for the message a refused run prints.
"""

from __future__ import annotations

import fcntl
import inspect
import json
import os
import socket
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from dlt.common.configuration.container import Container
from dlt.common.configuration.specs.pluggable_run_context import PluggableRunContext
from dlt.common.known_env import DLT_PROJECT_DIR

LOCAL_DATA_DIR = ".dlt-data"
SETTINGS_DIR = ".dlt"


def use_script_project_dir(build_source: Callable[..., Any]) -> Path | None:
    """Make the directory of the file defining `build_source` dlt's project directory
    (where it reads `.dlt/`) when `DLT_PROJECT_DIR` is unset and that directory has a
    `.dlt/`; returns the directory chosen, or None (dlt's own rule applies).

    Call it before anything reads dlt config. dlt reads the TOML files when its run context
    is first used (`dlt.current.run_context()`); a context already in use is given
    providers for the new directory.
    """
    if os.environ.get(DLT_PROJECT_DIR):
        return None
    try:
        script = inspect.getfile(inspect.unwrap(getattr(build_source, "func", build_source)))
    except TypeError:  # a builtin or a callable object without a source file
        return None
    directory = Path(script).resolve().parent
    if not (directory / SETTINGS_DIR).is_dir():
        return None
    os.environ[DLT_PROJECT_DIR] = str(directory)
    container = Container()
    if PluggableRunContext in container:
        container[PluggableRunContext].reload_providers()
    return directory


def pipelines_dir() -> Path:
    """Where dlt keeps this run's pipelines (see the module docstring)."""
    data_dir = os.environ.get("DLT_DATA_DIR")
    base = Path(data_dir) if data_dir else Path.cwd() / LOCAL_DATA_DIR
    return base.absolute() / "pipelines"


class PipelineBusy(Exception):
    """Another run holds the pipeline's lock; the message names it."""


class RunLock:
    """`with RunLock(dir, name):` — exclusive for the duration, or `PipelineBusy`."""

    def __init__(self, directory: Path, pipeline_name: str) -> None:
        self.path = directory / f"{pipeline_name}.lock"
        self.pipeline_name = pipeline_name
        self._fd: int | None = None

    def holder(self) -> dict[str, object]:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise PipelineBusy(self._busy_message()) from None
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            # Closing the descriptor drops the lock; the holder record stays for reference.
            os.close(self._fd)
            self._fd = None

    def _busy_message(self) -> str:
        h = self.holder()
        who = (
            f"pid {h.get('pid', '?')} on host {h.get('host', '?')}, started {h.get('started', '?')}"
            if h
            else "holder unknown"
        )
        return (
            f"another run of pipeline '{self.pipeline_name}' is in progress ({who}); "
            f"it holds {self.path}. Nothing was done: wait for it to finish, or use another "
            "working directory (DLT_DATA_DIR) for an independent run."
        )

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
