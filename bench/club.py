"""Club scenarios: a thousand players loaded from nothing, then the daily run with nothing new.

One `LazyChessCom` with latency and an in-flight limit, one working directory:
- `club-cold`: every player from nothing (profiles, stats, archive lists, every month);
- `club-warm`: the same again, nothing new (`--club-repeat` runs): requests per player and
  by status, wall time against the network ideal (requests x latency / allowed in flight),
  peak RSS, and what the run writes to the destination (rows per table, loads, state rows
  and the size of the state row);
- `club-warm-1-new`: the same after one player's current month got new games, which is
  what a real club's day looks like: one change anywhere makes dlt rewrite the whole state.
"""

from __future__ import annotations

import argparse
from typing import Any

from dlt.common.versioned_state import decompress_state

from .harness import Bench, Run, Scenario, games_budget
from .lazy_api import LazyChessCom
from .state_size import book_state, measure, measure_stored

STATE_TABLE = "chess._dlt_pipeline_state"


def destination_counts(bench: Bench) -> dict[str, int]:
    """Rows in the tables a run may write to, to tell what one run wrote."""
    tables = ("_dlt_loads", "_dlt_pipeline_state", "players_archives", "players_games")
    return {t: bench.count(f"select count(*) from chess.{t}") for t in tables}


def latest_state(bench: Bench) -> tuple[int, str]:
    """Version and stored text of the newest state row."""
    version, stored = bench.query(
        f"select version, state from {STATE_TABLE} order by version desc limit 1"
    )[0]
    return int(version), str(stored)


def ideal_s(run: Run, latency: float, in_flight: int) -> float:
    """The network's share: every request's latency, `in_flight` at a time."""
    return sum(run.requests.values()) * latency / in_flight


def what_was_written(bench: Bench, before: dict[str, int], run: Run) -> dict[str, Any]:
    after = destination_counts(bench)
    version, stored = latest_state(bench)
    return {
        "rows_by_table": run.rows,
        "new_loads": after["_dlt_loads"] - before["_dlt_loads"],
        "new_state_rows": after["_dlt_pipeline_state"] - before["_dlt_pipeline_state"],
        "state_row_stored_bytes": len(stored),
        "state_version": version,
    }


def bench_club(args: argparse.Namespace) -> list[Scenario]:
    players = [f"member{i:05d}" for i in range(args.club_players)]
    shape = f"{len(players)} players x {args.club_months} months x {args.club_games} games"
    net = f"{args.latency * 1000:.0f} ms, {args.in_flight} in flight"
    cold = Scenario("club-cold", f"club from nothing: {shape}, {net}")
    warm = Scenario("club-warm", f"club daily run, nothing new: {shape}, {net}")
    one_new = Scenario("club-warm-1-new", "club daily run, 3 new games in one player's month")
    api = LazyChessCom(
        players,
        args.club_months,
        args.club_games,
        latency=args.latency,
        max_in_flight=args.in_flight,
    ).start()
    try:
        extra = games_budget(cold, args.club_max_games_per_load)
        with Bench(api, players, extra) as bench:
            run = bench.run()
            cold.runs.append(run)
            expected = api.total_games
            ideal = ideal_s(run, args.latency, args.in_flight)
            _, stored = latest_state(bench)
            real = measure_stored(stored)
            model = measure(book_state(len(players), args.club_months, api.month_keys[-1]))
            cold.checks.update(
                games_expected=expected,
                games_in_table=run.games_in_table,
                loads=run.loads,
                requests=sum(run.requests.values()),
                requests_by_kind=run.requests,
                ideal_network_s=round(ideal, 2),
                wall_over_ideal=round(run.wall_s / ideal, 2),
                responses_429=run.by_status.get("429", 0),
                max_in_flight_seen=run.max_in_flight_seen,
                state_after_cold=real.as_dict(),
                # The synthetic state (bench/state_size.py) against this real one.
                synthetic_state_same_shape=model.as_dict(),
            )
            warm_ratios, writes = [], []
            for _ in range(args.club_repeat):
                before = destination_counts(bench)
                run = bench.run()
                warm.runs.append(run)
                warm_ratios.append(
                    round(run.wall_s / ideal_s(run, args.latency, args.in_flight), 2)
                )
                writes.append(what_was_written(bench, before, run))
            requests = [sum(r.requests.values()) for r in warm.runs]
            warm.checks.update(
                requests=requests,
                max_requests_per_player=max(requests) / len(players),
                statuses=[r.by_status for r in warm.runs],
                all_304=all(set(r.by_status) == {"304"} for r in warm.runs),
                ideal_network_s=[round(ideal_s(r, args.latency, args.in_flight), 2) for r in warm.runs],
                wall_over_ideal=warm_ratios,
                writes=writes,
            )  # fmt: skip

            before = destination_counts(bench)
            api.add_games(players[0], api.month_keys[-1], 3)
            run = bench.run()
            one_new.runs.append(run)
            written = what_was_written(bench, before, run)
            _, stored = latest_state(bench)
            one_new.checks.update(
                writes=written,
                state_written=measure_stored(stored).as_dict(),
                games_in_table=run.games_in_table,
                games_expected=api.total_games,
                wall_over_ideal=round(run.wall_s / ideal_s(run, args.latency, args.in_flight), 2),
                state_players=len(
                    decompress_state(stored)["sources"]["chess"]["resources"]["archive_months"][
                        "players"
                    ]
                ),
            )
    finally:
        api.stop()
    return [cold, warm, one_new]
