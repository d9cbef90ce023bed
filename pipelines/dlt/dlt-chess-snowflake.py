#!/usr/bin/env python
"""Load Chess.com player profiles, stats and games into Snowflake (default) or DuckDB.

    python pipelines/dlt/dlt-chess-snowflake.py --players magnuscarlsen,hikaru \\
        --start-month 2024/01 --destination duckdb

Settings not given as flags come from dlt config (`pipelines/dlt/.dlt/config.toml`,
`SOURCES__CHESS__*` env vars). Snowflake credentials come from
`DESTINATION__SNOWFLAKE__CREDENTIALS__*` env vars or `.dlt/secrets.toml`.

Exit codes: 0 all players loaded, 1 some players failed (the others are loaded) or the
load failed, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import re
import sys
import time
from pathlib import Path


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's per-thread malloc arenas before any thread starts.

    The HTTP pool, DuckDB and Arrow threads each get an arena by default and memory freed
    in one is not reused by another: RSS then grows with the size of the backfill instead
    of staying flat (measured: bench/README). Same as MALLOC_ARENA_MAX=2; no-op off glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, arenas)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


limit_malloc_arenas()
HERE = Path(__file__).resolve().parent
# Run from the repo root or from here alike: import the source package beside this file
# and read .dlt/ from this directory unless the caller chose another one.
sys.path.insert(0, str(HERE))
os.environ.setdefault("DLT_PROJECT_DIR", str(HERE))

import dlt  # noqa: E402
from dlt.common.configuration.exceptions import ConfigFieldMissingException  # noqa: E402
from dlt.pipeline.exceptions import PipelineStepFailed  # noqa: E402

from chess_com import (  # noqa: E402
    ConfigurationError,
    InvalidMonthError,
    InvalidPlayerError,
    RunReport,
    chess,
)
from warehouse import (  # noqa: E402
    DESTINATIONS,
    LOADER_FILE_FORMAT,
    PIPELINE_NAME,
    DestinationError,
    check_destination,
    create_views,
    make_destination,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DATASET_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")

logger = logging.getLogger("chess_com.cli")


class UsageError(Exception):
    """Bad flags or configuration: exit code 2, message says what to change."""


def env(name: str) -> str | None:
    """A `CHESS_*` setting from the environment; empty means unset (Kestra passes "")."""
    return os.environ.get(name) or None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Flags win over `CHESS_<FLAG>` env vars (how the Kestra flow passes its inputs)."""
    parser = argparse.ArgumentParser(
        description="Load Chess.com players' profiles, stats and games with dlt.",
        epilog="Exit codes: 0 all players loaded, 1 some failed, 2 usage/config error.",
    )
    parser.add_argument(
        "--players",
        default=env("CHESS_PLAYERS"),
        help="comma-separated usernames (default: sources.chess.players)",
    )
    parser.add_argument(
        "--start-month",
        default=env("CHESS_START_MONTH"),
        help="first archive month, YYYY/MM (default: all)",
    )
    parser.add_argument(
        "--end-month",
        default=env("CHESS_END_MONTH"),
        help="last archive month, YYYY/MM (default: current)",
    )
    parser.add_argument(
        "--destination",
        choices=DESTINATIONS,
        default=env("CHESS_DESTINATION") or "snowflake",
        help="where to load (default: snowflake)",
    )
    parser.add_argument(
        "--dataset",
        default=env("CHESS_DATASET") or "chess",
        help="dataset/schema name (default: chess)",
    )
    parser.add_argument(
        "--full-refresh",
        action="store_true",
        default=(env("CHESS_FULL_REFRESH") or "false").lower() in ("1", "true", "yes"),
        help="drop this source's tables and state, then load everything again",
    )
    parser.add_argument("--progress", action="store_true", help="log dlt progress")
    parser.add_argument(
        "--summary-json", type=Path, help="also write the summary as JSON to this file"
    )
    args = parser.parse_args(argv)
    if args.destination not in DESTINATIONS:  # an env default bypasses argparse's choices
        parser.error(f"invalid destination {args.destination!r}: choose from {DESTINATIONS}")
    if not DATASET_RE.match(args.dataset):
        parser.error(f"invalid dataset {args.dataset!r}: use letters, digits and '_'")
    return args


def record_load(report: RunReport, pipeline: dlt.Pipeline) -> None:
    """Add one load's rows per table and dlt step times (from its trace) to the report."""
    trace = pipeline.last_trace
    if trace is None:
        return
    info = trace.last_normalize_info
    for table, n in (info.row_counts if info else {}).items():
        if not table.startswith("_dlt"):
            report.rows[table] += n
    for step in trace.steps:
        if step.step in ("extract", "normalize", "load") and step.finished_at:
            report.step_seconds[step.step] += (step.finished_at - step.started_at).total_seconds()


def format_summary(report: RunReport, elapsed: float, target: str) -> str:
    months = report.months
    by_status = ", ".join(f"{s}: {n}" for s, n in sorted(report.requests.by_status.items()))
    lines = [
        f"Loaded into {target}",
        f"players loaded: {len(report.loaded_players)} ({', '.join(report.loaded_players) or '-'})",
        f"players failed: {len(report.failures)}",
        *(f"  - {p}: {'; '.join(reasons)}" for p, reasons in report.failures.items()),
        f"months: {months['downloaded']} downloaded, {months['not_modified']} not modified, "
        f"{months['skipped']} skipped (final), {months['missing']} missing, "
        f"{months['failed']} failed"
        + (f", {report.deferred_months} left for the next run" if report.deferred_months else ""),
        f"loads: {report.loads}",
        f"games loaded: {report.games}"
        + (
            f" ({report.duplicate_games} also in another tracked player's archive)"
            if report.duplicate_games
            else ""
        ),
        "rows per table:",
        *(f"  {table}: {n}" for table, n in sorted(report.rows.items())),
        *([] if report.rows else ["  (nothing new)"]),
        f"requests: {report.requests.total} ({by_status or 'none'}), "
        f"{report.requests.bytes / 1e6:.2f} MB downloaded",
        f"elapsed: {elapsed:.1f} s ("
        + ", ".join(f"{k} {v:.1f} s" for k, v in report.step_seconds.items())
        + ")",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    report = RunReport()
    source_args = {
        key: value
        for key, value in (
            ("players", args.players),
            ("start_month", args.start_month),
            ("end_month", args.end_month),
        )
        if value is not None
    }
    try:
        source = chess(report=report, **source_args)
    except (InvalidPlayerError, InvalidMonthError, ConfigurationError) as exc:
        raise UsageError(str(exc)) from None
    except ConfigFieldMissingException as exc:
        fields = ", ".join(exc.traces)
        raise UsageError(
            f"missing source setting(s): {fields}. Pass --players or set "
            "SOURCES__CHESS__PLAYERS (or sources.chess.players in .dlt/config.toml)."
        ) from None

    pipeline = dlt.pipeline(
        pipeline_name=PIPELINE_NAME,
        destination=make_destination(args.destination, env("KESTRA_EXECUTION_ID")),
        dataset_name=args.dataset,
        progress="log" if args.progress else None,
    )
    try:
        check_destination(pipeline)
    except DestinationError as exc:
        raise UsageError(str(exc)) from None
    try:
        if pipeline.has_pending_data:
            # A previous run died after extracting: its package carries the state that
            # marks its months done, so load it before extracting anything new.
            logger.warning("loading the pending package of an interrupted run first")
            pipeline.normalize()
            pipeline.load()
        refresh = "drop_sources" if args.full_refresh else None
        while True:
            done_before = report.months["downloaded"] + report.months["not_modified"]
            pipeline.run(source, loader_file_format=LOADER_FILE_FORMAT, refresh=refresh)
            report.loads += 1
            record_load(report, pipeline)
            refresh = None
            progressed = report.months["downloaded"] + report.months["not_modified"] > done_before
            if not report.deferred_months or not progressed:
                break
            # A backfill larger than one load's games budget: the state of this load is
            # committed, the next load picks up the months it left.
            logger.info("%d months left for the next load", report.deferred_months)
            source = chess(report=report, **source_args)
    except PipelineStepFailed as exc:
        print(f"error: pipeline step '{exc.step}' failed: {exc.exception}", file=sys.stderr)
        return EXIT_FAILED
    try:
        create_views(pipeline)
        views_ok = True
    except Exception as exc:  # the data is loaded; say so and fail the run
        print(f"error: data loaded, but the player_games view failed: {exc}", file=sys.stderr)
        views_ok = False
    target = f"{args.destination} dataset '{args.dataset}'"
    if args.destination == "duckdb":
        target += f" ({pipeline.destination_client().config.credentials.database})"
    elapsed = time.perf_counter() - started
    print(format_summary(report, elapsed, target))
    if args.summary_json:
        args.summary_json.write_text(json.dumps({**report.as_dict(), "elapsed_s": elapsed}))
    if env("KESTRA_EXECUTION_ID"):
        report_to_kestra(report, elapsed)
    return EXIT_FAILED if report.failures or not views_ok else EXIT_OK


def report_to_kestra(report: RunReport, elapsed: float) -> None:
    """Outputs and metrics for the Kestra execution (printed as Kestra's `::{json}::` lines)."""
    from kestra import Kestra

    Kestra.outputs(report.as_dict())
    Kestra.counter("games_loaded", report.games)
    Kestra.counter("players_failed", len(report.failures))
    Kestra.counter("requests", report.requests.total)
    for table, rows in sorted(report.rows.items()):
        Kestra.counter("rows", rows, {"table": table})
    Kestra.timer("elapsed", elapsed)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("chess_com").setLevel(logging.INFO)
    # The connector logs every login retry; check_destination reports the outcome once.
    logging.getLogger("snowflake.connector").setLevel(logging.ERROR)
    args = parse_args(argv)
    try:
        return run(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
