"""Check that the games the fake Chess.com API serves for the configured players landed in
(emulated) Snowflake, exactly: none missing, none extra, none twice.

    check_games.py CHESSCOM_BASE_URL SNOWFLAKE_PORT VALUES_DIR

CHESSCOM_BASE_URL and SNOWFLAKE_PORT reach the e2e services from the runner (kubectl
port-forward, tools/e2e/check-kestra.sh); VALUES_DIR holds the Snowflake user, key and
passphrase the job gave the flow (tools/e2e/e2e_values.py). Served games: the players of
pipelines/dlt/.dlt/config.toml (what the Schedule loads), each archive month the API lists
(`/player/{p}/games/archives`, then `/player/{p}/games/YYYY/MM`). Loaded games: read back
with dlt's Snowflake client, as the flow's user, from the database, warehouse, role and
dataset the flow names (pipelines/chess-kestra-dlt.yml `variables`). Prints counts only.
Main environment (.venv: dlt with the production Snowflake connector).
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import tomllib
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
FLOW = ROOT / "pipelines" / "chess-kestra-dlt.yml"
CONFIG = ROOT / "pipelines" / "dlt" / ".dlt" / "config.toml"
MONTH = re.compile(r"/games/(\d{4})/(\d{2})/?$")
HEADERS = {"User-Agent": "chess-pipelines-e2e-check (ci@example.com)"}


def get_json(url: str) -> Any:
    request = urllib.request.Request(url, headers=HEADERS)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def served_games(base_url: str, players: list[str]) -> set[str]:
    """Distinct uuids of every game in every archive month of the players."""
    uuids = set()
    base = base_url.rstrip("/")
    for player in players:
        for archive in get_json(f"{base}/player/{player}/games/archives")["archives"]:
            month = MONTH.search(archive)
            if month is None:
                raise ValueError(f"not an archive URL: {archive}")
            games = get_json(f"{base}/player/{player}/games/{month[1]}/{month[2]}")["games"]
            uuids |= {game["uuid"] for game in games}
    return uuids


def loaded_games(port: int, values: Path) -> list[str]:
    """Every uuid row of the games table (duplicates kept), as the flow's Snowflake user."""
    import dlt

    variables = yaml.safe_load(FLOW.read_text())["variables"]
    creds = "DESTINATION__SNOWFLAKE__CREDENTIALS__"
    os.environ.update(
        {
            creds + "DATABASE": variables["snowflake_database"],
            creds + "WAREHOUSE": variables["snowflake_warehouse"],
            creds + "ROLE": variables["snowflake_role"],
            creds + "HOST": (values / "SNOWFLAKE_HOST").read_text(),
            creds + "USERNAME": (values / "SNOWFLAKE_USERNAME").read_text(),
            creds + "PRIVATE_KEY": (values / "SNOWFLAKE_PRIVATE_KEY").read_text(),
            creds + "PRIVATE_KEY_PASSPHRASE": (
                values / "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"
            ).read_text(),
            creds + "QUERY": json.dumps({"host": "127.0.0.1", "port": port, "protocol": "http"}),
            "DLT_DATA_DIR": tempfile.mkdtemp(prefix="e2e-check-"),
            "RUNTIME__DLTHUB_TELEMETRY": "false",
        }
    )
    dataset = variables["dataset"]
    pipeline = dlt.pipeline("e2e_check", destination="snowflake", dataset_name=dataset)
    with pipeline.sql_client() as client:
        rows = client.execute_sql(f"select uuid from {dataset}.players_games")
    return [row[0] for row in rows]


def compare(served: set[str], loaded: list[str]) -> list[str]:
    problems = []
    missing, extra = served - set(loaded), set(loaded) - served
    twice = len(loaded) - len(set(loaded))
    if not served:
        problems.append("the fake API served no game: nothing was checked")
    if missing:
        problems.append(f"{len(missing)} served game(s) not in Snowflake")
    if extra:
        problems.append(f"{len(extra)} game(s) in Snowflake the fake API never served")
    if twice:
        problems.append(f"{twice} game row(s) loaded twice")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    base_url, port, values = argv[0], int(argv[1]), Path(argv[2])
    with CONFIG.open("rb") as f:
        players = tomllib.load(f)["sources"]["chess"]["players"]
    served = served_games(base_url, players)
    loaded = loaded_games(port, values)
    problems = compare(served, loaded)
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    if not problems:
        print(f"ok {len(served)} games of {len(players)} players in Snowflake, as served")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
