"""Serve a synthetic Chess.com API: `python -m tests.fake_chesscom --players a,b`."""

from __future__ import annotations

import argparse
import time

from . import FakeChessCom, World


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--players", default="alice,bob,carol")
    parser.add_argument("--months", type=int, default=3)
    parser.add_argument("--games-per-month", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    parser.add_argument("--max-in-flight", type=int, default=None)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    world = World()
    world.populate(args.players.split(","), args.months, args.games_per_month, shared_per_month=2)
    with FakeChessCom(world, args.latency, args.max_in_flight, port=args.port) as api:
        print(f"serving {len(world.all_games())} games at {api.base_url} (Ctrl-C to stop)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
