#!/usr/bin/env python
"""What dlt alone needs for the rows of a run: `python bench/load_only.py GAMES.json WORKDIR`.

Loads the given games (as the API served them, shaped by the source's own `game_row`)
into DuckDB with the same table hints, file format and settings as the real script, but
without any HTTP. Its wall time (process start to exit, like the script's) is the
"normalize and load the same rows" term of the cold-load target in bench/bench.py.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "pipelines" / "dlt"))
os.environ.setdefault("DLT_PROJECT_DIR", str(ROOT / "pipelines" / "dlt"))

import dlt  # noqa: E402

from chess_com.records import GAME_COLUMNS, game_row  # noqa: E402
from pipeline_runner import LOADER_FILE_FORMAT  # noqa: E402


def main() -> int:
    games_file, workdir = sys.argv[1], Path(sys.argv[2])
    games = json.loads(Path(games_file).read_text())

    # The same table, key and column hints as the source's players_games resource.
    @dlt.resource(
        name="players_games",
        write_disposition="merge",
        primary_key="uuid",
        columns=GAME_COLUMNS,
    )
    def rows():
        batch = 300  # a month's archive at a time, as the source yields them
        for i in range(0, len(games), batch):
            yield [game_row(g) for g in games[i : i + batch]]

    pipeline = dlt.pipeline(
        "chess_load_only",
        destination=dlt.destinations.duckdb(str(workdir / "load_only.duckdb")),
        dataset_name="chess",
        pipelines_dir=str(workdir / "pipelines"),
    )
    pipeline.run(rows(), loader_file_format=LOADER_FILE_FORMAT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
