"""A full refresh that survives being killed: resumed by the next run, wherever it runs.

dlt's `refresh="drop_sources"` drops the source's tables when its package starts loading
and writes the wiped source state with that package. Killed in between, the tables are gone
while the destination still holds the old state (months marked final): a run from an empty
working directory (every Kestra run) restores that state and never fetches the data again.

So before refreshing, the runner commits a marker into the source's own state in the
destination (a small state-only load). The refresh package wipes the source state, marker
included, and commits that atomically with the reloaded data. Until it does, every run,
from any working directory, finds the marker in the restored state and refreshes again.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import dlt

logger = logging.getLogger("pipeline_runner")

# Key in the source state (`state["sources"][<source name>]`); dlt wipes it on refresh.
MARKER = "pipeline_runner_refresh"


def pending_refresh(pipeline: dlt.Pipeline, source_name: str) -> str | None:
    """When an earlier full refresh was requested but never committed: its request time."""
    source_state = pipeline.state.get("sources", {}).get(source_name, {})
    marker = source_state.get(MARKER)
    return str(marker.get("requested_at")) if isinstance(marker, dict) else None


def mark_refresh(pipeline: dlt.Pipeline, source_name: str) -> bool:
    """Commit the marker to the destination before anything is dropped.

    Without a schema there is nothing in the destination to lose (first run): no marker.
    """
    if not pipeline.default_schema_name:
        return False
    requested_at = datetime.now(UTC).isoformat(timespec="seconds")
    with pipeline.managed_state(extract_state=True) as state:
        sources = state.setdefault("sources", {})  # type: ignore[typeddict-item]
        sources.setdefault(source_name, {})[MARKER] = {"requested_at": requested_at}
    pipeline.normalize()
    pipeline.load()
    logger.info("full refresh marked in the destination (%s)", requested_at)
    return True
