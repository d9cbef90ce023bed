"""What a run did: the printed summary, `--summary-json` and Kestra outputs and metrics.

The runner counts what is the same for every pipeline (loads, rows per table, dlt step
times, failed loads); a pipeline adds its own figures through a `SourceReport`. Everything
goes through `redact` on the way out: URLs with credentials never reach the output.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import dlt

from .redact import redact, redact_url
from .schema_changes import SchemaChange, load_changes


@dataclass(frozen=True)
class Metric:
    """A Kestra counter: name, value and tags (e.g. `{"table": "players_games"}`)."""

    name: str
    value: float
    tags: dict[str, str] = field(default_factory=dict)


class SourceReport(Protocol):
    """What the runner asks of a pipeline's own report (all optional for a pipeline that
    passes no report). The source fills it while extracting; the runner reads it."""

    def failed(self) -> bool:
        """Something the source was asked for did not load: the run exits 1."""
        ...

    def headline(self) -> str | None:
        """Replaces "Loaded into <target>" when the run's main fact is something else."""
        ...

    def summary_lines(self) -> list[str]:
        """The pipeline's own lines of the printed summary."""
        ...

    def as_dict(self) -> dict[str, Any]:
        """The pipeline's own keys of `--summary-json` and the Kestra outputs."""
        ...

    def metrics(self) -> list[Metric]:
        """The pipeline's own Kestra counters."""
        ...

    def another_load(self) -> bool:
        """Backfill contract, runner side: asked after each committed load; True when the
        source left work for a further load of this run (and the last load made progress)."""
        ...

    def load_aborted(self) -> None:
        """Told when the runner aborted a load: what the report counted while extracting
        that load was not committed (and is fetched again next run)."""
        ...

    def history(self) -> dict[str, Any]:
        """The pipeline's own columns of its row in `_pipeline_runs` (flat values: e.g.
        players ok and failed, requests by status as JSON text)."""
        ...

    def stop(self) -> None:
        """Told on SIGTERM/SIGINT, from the signal handler (set flags only): request
        nothing more; what was already fetched is loaded, the rest is left for the next
        run. Without it, dlt stops the extract and the load in progress is aborted."""
        ...


@dataclass
class LoadFailure:
    """A load package that could not be loaded, and what the runner did about it."""

    step: str
    message: str
    load_id: str | None = None
    table: str | None = None
    job: str | None = None
    aborted: bool = False
    abort_error: str | None = None
    # dlt stopped the step on SIGTERM/SIGINT (a source without `stop()`), not a data error.
    stopped: bool = False

    def describe(self) -> str:
        where = f"table {self.table}" if self.table else f"step {self.step}"
        ids = ", ".join(
            part
            for part in (
                f"job {self.job}" if self.job else "",
                f"package {self.load_id}" if self.load_id else "",
            )
            if part
        )
        text = f"{self.step} failed at {where}{f' ({ids})' if ids else ''}: {self.message}"
        if self.aborted:
            text += (
                "\n  the package was aborted: nothing of it was committed and the local state"
                " is back to the last committed load, so its data is fetched again next run"
            )
        elif self.abort_error:
            text += f"\n  aborting the package failed too: {self.abort_error}"
        return redact_url(text)

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "table": self.table,
            "job": self.job,
            "load_id": self.load_id,
            "message": redact_url(self.message),
            "aborted": self.aborted,
        }


@dataclass
class RunSummary:
    pipeline: str
    target: str = ""
    working_dir: str = ""
    loads: int = 0
    rows: Counter[str] = field(default_factory=Counter)
    step_seconds: Counter[str] = field(default_factory=Counter)
    load_failures: list[LoadFailure] = field(default_factory=list)
    # Other errors (a failed step outside load, a failed after-load step): exit 1.
    errors: list[str] = field(default_factory=list)
    # What the runner did besides the loads (a resumed refresh, a pending package).
    notes: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    peak_memory_mb: float | None = None
    # Whether the source was asked for anything (a load started): its report's figures
    # describe this run only then (the runner starts with False).
    source_ran: bool = True
    # New tables, columns and variant columns in tables that had data (dlt's schema
    # updates): warnings, the source's data changed shape. Tables this run created.
    schema_changes: list[SchemaChange] = field(default_factory=list)
    created_tables: list[str] = field(default_factory=list)
    # The signal that stopped the run (SIGTERM, SIGINT), if one did.
    stopped_by: str | None = None

    @property
    def ok(self) -> bool:
        return not self.load_failures and not self.errors and not self.stopped_by

    def record_load(self, pipeline: dlt.Pipeline, known: set[str] = frozenset()) -> None:
        """Add one committed load's rows per table, dlt step times and what it changed in
        the tables that had data when the run started (`known`), from its trace."""
        self.loads += 1
        trace = pipeline.last_trace
        if trace is None:
            return
        changes, created = load_changes(trace.last_load_info, set(known))
        self.schema_changes.extend(c for c in changes if c not in self.schema_changes)
        self.created_tables.extend(t for t in created if t not in self.created_tables)
        info = trace.last_normalize_info
        for table, n in (info.row_counts if info else {}).items():
            if not table.startswith("_dlt"):
                self.rows[table] += n
        for step in trace.steps:
            if step.step in ("extract", "normalize", "load") and step.finished_at:
                seconds = (step.finished_at - step.started_at).total_seconds()
                self.step_seconds[step.step] += seconds

    def headline(self, report: SourceReport | None) -> str:
        own = _call(report, "headline", None)
        if self.stopped_by:
            return (
                f"Stopped by {self.stopped_by}: {self.loads} load(s) of this run committed "
                f"into {self.target}"
            )
        if self.load_failures:
            return (
                f"Load into {self.target} FAILED (see the error below); "
                f"{self.loads} load(s) of this run committed"
            )
        if own:
            return f"{own} ({self.target})"
        if self.errors and not self.loads:
            return f"Nothing loaded into {self.target} (see the error below)"
        return f"Loaded into {self.target}"

    def lines(self, report: SourceReport | None) -> list[str]:
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in self.step_seconds.items())
        steps = f" ({steps})" if steps else ""
        stopped = (
            [
                f"stopped by {self.stopped_by}: no request or load was started after it; "
                "what this run had not fetched and loaded is left for the next run"
            ]
            if self.stopped_by
            else []
        )
        return [
            self.headline(report),
            *stopped,
            *(_call(report, "summary_lines", []) if self.source_ran else []),
            f"loads: {self.loads}",
            "rows per table:",
            *(f"  {table}: {n}" for table, n in sorted(self.rows.items())),
            *([] if self.rows else ["  (nothing new)"]),
            f"elapsed: {self.elapsed:.1f} s{steps}",
            *([f"peak memory: {self.peak_memory_mb:.0f} MB"] if self.peak_memory_mb else []),
            f"working directory: {self.working_dir}",
            *(f"warning: schema changed: {c.describe()}" for c in self.schema_changes),
            *(
                [f"note: created tables: {', '.join(self.created_tables)}"]
                if self.created_tables
                else []
            ),
            *(f"note: {note}" for note in self.notes),
            *(f"error: {f.describe()}" for f in self.load_failures),
            *(f"error: {e}" for e in self.errors),
        ]

    def text(self, report: SourceReport | None) -> str:
        return redact_url("\n".join(self.lines(report)))

    def as_dict(self, report: SourceReport | None) -> dict[str, Any]:
        data: dict[str, Any] = {
            **_call(report, "as_dict", {}),
            "pipeline": self.pipeline,
            "destination": self.target,
            "ok": self.ok,
            "stopped_by": self.stopped_by,
            "loads": self.loads,
            "rows": dict(sorted(self.rows.items())),
            "step_seconds": {k: round(v, 3) for k, v in self.step_seconds.items()},
            "elapsed_s": round(self.elapsed, 3),
            "peak_memory_mb": round(self.peak_memory_mb, 1) if self.peak_memory_mb else None,
            "load_failures": [f.as_dict() for f in self.load_failures],
            "errors": list(self.errors),
            "notes": list(self.notes),
            "schema_changes": [c.as_dict() for c in self.schema_changes],
            "created_tables": list(self.created_tables),
        }
        return redact(data)

    def write_json(self, path: Path, report: SourceReport | None) -> None:
        path.write_text(json.dumps(self.as_dict(report), indent=2, default=str) + "\n")

    def report_to_kestra(self, report: SourceReport | None) -> None:
        """Outputs and metrics for the Kestra execution (Kestra's `::{json}::` stdout lines)."""
        from kestra import Kestra

        Kestra.outputs(self.as_dict(report))
        for metric in _call(report, "metrics", []):
            Kestra.counter(metric.name, metric.value, dict(metric.tags))
        Kestra.counter("loads", self.loads)
        Kestra.counter("schema_changes", len(self.schema_changes))
        Kestra.counter("load_failures", len(self.load_failures))
        for table, rows in sorted(self.rows.items()):
            Kestra.counter("rows", rows, {"table": table})
        Kestra.timer("elapsed", self.elapsed)
        if self.peak_memory_mb:
            Kestra.counter("peak_memory_mb", round(self.peak_memory_mb))


def peak_memory_mb(status: Path = Path("/proc/self/status")) -> float | None:
    """This process's peak resident memory (Linux `VmHWM`): what a container's memory
    limit must allow. Not `ru_maxrss`, which also holds the peak of the process that
    started this one (Linux keeps it across exec: `exec_mmap` in fs/exec.c). None where
    there is no /proc."""
    try:
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _call(report: SourceReport | None, method: str, default: Any) -> Any:
    """A report method if the report has it (a pipeline implements only what it needs)."""
    fn = getattr(report, method, None)
    return fn() if callable(fn) else default


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Warning)\w*: .+")


def essence(message: str, limit: int = 400) -> str:
    """The line of an error message that says what went wrong (the last `SomeError: ...`
    line of a traceback, else the first line), redacted and shortened."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    found = [line for line in lines if _EXCEPTION_LINE.match(line)]
    text = found[-1] if found else (lines[0] if lines else message)
    text = redact_url(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
