#!/usr/bin/env python
"""Load Chess.com player profiles, stats and games into Snowflake (default) or DuckDB.

    python pipelines/dlt/dlt-chess-snowflake.py --players magnuscarlsen,hikaru \\
        --start-month 2024/01 --destination duckdb

Every flag also reads `CHESS_<FLAG>` (how the Kestra flow passes its inputs). Settings not
given as flags come from dlt config (`pipelines/dlt/.dlt/config.toml`, `SOURCES__CHESS__*`
env vars). Snowflake credentials come from `DESTINATION__SNOWFLAKE__CREDENTIALS__*` env vars
or `.dlt/secrets.toml`. The CLI plumbing (flags, checks, lock, loads, summary, exit codes:
0 all players loaded, 1 something did not load, 2 usage/config error, 3 another run holds
the lock or another process the DuckDB file, 143/130 stopped by SIGTERM/SIGINT) is
`pipeline_runner`'s; what is chess is below.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import sys
from pathlib import Path


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's per-thread malloc arenas before any thread starts.

    The HTTP pool, DuckDB and Arrow threads each get an arena by default and memory freed
    in one is not reused by another: RSS then grows with the size of the backfill instead
    of staying flat (measured: bench/README.md). Same as MALLOC_ARENA_MAX=2; no-op off glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, arenas)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


limit_malloc_arenas()
# Arrow's own allocator (jemalloc/mimalloc) keeps what the games tables freed: ~60 MB more
# peak RSS than glibc's capped arenas (measured: bench/README.md). An explicit setting wins.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
# `python dlt-chess-snowflake.py` puts this directory first on sys.path, and run_pipeline
# reads .dlt/ from it unless DLT_PROJECT_DIR says otherwise. runpy.run_path (the Snowflake
# emulator lane, tests/snowflake_emulator/run_on_fakesnow.py) does neither: hence this line.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dlt.extract.source import DltSource  # noqa: E402

from chess_com import (  # noqa: E402
    ConfigurationError,
    InvalidMonthError,
    InvalidPlayerError,
    RunReport,
    chess,
)
from pipeline_runner import PipelineArguments, run_pipeline  # noqa: E402
from warehouse import create_views  # noqa: E402

# dlt pipeline name: working directory, lock, ./chess_com.duckdb, QUERY_TAG "pipeline".
PIPELINE_NAME = "chess_com"
SOURCE_FLAGS = ("players", "start_month", "end_month")


def add_arguments(args: PipelineArguments) -> None:
    args.option("--players", "comma-separated usernames (default: sources.chess.players)")
    args.option("--start-month", "first archive month, YYYY/MM (default: all)")
    args.option("--end-month", "last archive month, YYYY/MM (default: current)")


def main(argv: list[str] | None = None) -> int:
    logging.getLogger("chess_com").setLevel(logging.INFO)
    report = RunReport()

    def build_source(args: argparse.Namespace) -> DltSource:
        given = {k: getattr(args, k) for k in SOURCE_FLAGS if getattr(args, k) is not None}
        return chess(report=report, **given)

    return run_pipeline(
        name=PIPELINE_NAME,
        env_prefix="CHESS",
        dataset="chess",
        description="Load Chess.com players' profiles, stats and games with dlt.",
        add_arguments=add_arguments,
        build_source=build_source,
        usage_errors=(InvalidPlayerError, InvalidMonthError, ConfigurationError),
        report=report,
        after_load=create_views,
        argv=argv,
    )


if __name__ == "__main__":
    sys.exit(main())
