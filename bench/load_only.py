#!/usr/bin/env python
"""What dlt alone needs for the rows of a run: `python bench/load_only.py GAMES.json WORKDIR`.

Loads the given games (as the API served them, shaped by the source's own `game_row`)
into DuckDB with the same table hints, file format and settings as the real script, but
without any HTTP. Its wall time (process start to exit, like the script's) is the
"normalize and load the same rows" term of the cold-load target in bench/bench.py.

Probe options (bench/bench.py `--only probe`): `--arrow` yields each batch as the source
does, a pyarrow Table made by `games_table` (dlt's Arrow path skips most of normalize);
without it, dict rows (the source before 2026-12-05). `--per-load N` splits
the games into loads of N (as `max_games_per_load` does), `--copies K` loads the file's
games K times with fresh uuids (a big load from a small file), `--deduplicated` tells dlt
the staged rows have no repeated key (skips the ROW_NUMBER() pass of its merge). It
prints dlt's step times as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "pipelines" / "dlt"))
os.environ.setdefault("DLT_PROJECT_DIR", str(ROOT / "pipelines" / "dlt"))
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")  # as the script sets it

import dlt  # noqa: E402

from chess_com.records import GAME_COLUMNS, game_row, games_table  # noqa: E402
from pipeline_runner import LOADER_FILE_FORMAT  # noqa: E402
from pipeline_runner.summary import peak_memory_mb  # noqa: E402

BATCH = 300  # a month's archive at a time, as the source yields them


def batches(games: list[dict[str, Any]], copies: int, arrow: bool) -> Iterator[Any]:
    for copy in range(copies):
        for i in range(0, len(games), BATCH):
            rows = [game_row(g) for g in games[i : i + BATCH]]
            if copy:
                for row in rows:
                    row["uuid"] = f"{row['uuid'][:-6]}{copy:06d}"
            table = games_table(rows) if arrow else None
            yield rows if table is None else table


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("games_file")
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--arrow", action="store_true")
    parser.add_argument("--per-load", type=int, default=0, help="games per load (0: one load)")
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument(
        "--deduplicated",
        action="store_true",
        help="declare staged rows deduplicated (the source drops a run's repeats itself)",
    )
    parser.add_argument(
        "--one-connection",
        action="store_true",
        help="hand dlt one open DuckDB connection instead of a path (opened per load)",
    )
    parser.add_argument("--strategy", default="delete-insert", help="dlt merge strategy")
    args = parser.parse_args()
    games = json.loads(Path(args.games_file).read_text())
    total = len(games) * args.copies
    per_load = args.per_load or total

    database: Any = str(args.workdir / "load_only.duckdb")
    if args.one_connection:
        import duckdb

        database = duckdb.connect(database, config={"memory_limit": "128MB"})
    pipeline = dlt.pipeline(
        "chess_load_only",
        destination=dlt.destinations.duckdb(database),
        dataset_name="chess",
        pipelines_dir=str(args.workdir / "pipelines"),
    )
    source = batches(games, args.copies, args.arrow)
    # shape: game_row (and the Arrow conversion) outside dlt, as the source does in extract
    steps: dict[str, float] = {"shape": 0.0, "extract": 0.0, "normalize": 0.0, "load": 0.0}
    loads = 0
    load_s: list[float] = []  # per load: does a merge get slower as the table grows?
    started = time.perf_counter()
    while True:
        chunk: list[Any] = []
        taken = 0
        shaping = time.perf_counter()
        for batch in source:
            chunk.append(batch)
            taken += len(batch) if not args.arrow else batch.num_rows
            if taken >= per_load:
                break
        steps["shape"] += time.perf_counter() - shaping
        if not chunk:
            break

        # The same table, key and column hints as the source's players_games resource.
        rows = dlt.resource(
            iter(chunk),
            name="players_games",
            write_disposition={
                "disposition": "merge",
                "strategy": args.strategy,
                **({"deduplicated": True} if args.deduplicated else {}),
            },
            primary_key="uuid",
            columns=GAME_COLUMNS,
        )

        pipeline.run(rows, loader_file_format=LOADER_FILE_FORMAT)
        loads += 1
        for step in pipeline.last_trace.steps:
            if step.step in steps and step.finished_at:
                seconds = (step.finished_at - step.started_at).total_seconds()
                steps[step.step] += seconds
                if step.step == "load":
                    load_s.append(round(seconds, 3))
    print(
        json.dumps(
            {
                "games": total,
                "loads": loads,
                "arrow": args.arrow,
                "steps_s": {k: round(v, 3) for k, v in steps.items()},
                "load_s_first_last": [load_s[0], load_s[-1]] if load_s else [],
                "run_s": round(time.perf_counter() - started, 3),
                "peak_memory_mb": peak_memory_mb(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
