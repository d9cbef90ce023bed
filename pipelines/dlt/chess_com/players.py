"""Chess.com usernames: validation and normalisation."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

# Chess.com accepts 3-25 characters of letters, digits, "_" and "-".
USERNAME_RE = re.compile(r"^[A-Za-z0-9_-]{3,25}$")


class InvalidPlayerError(ValueError):
    """One or more usernames can never be valid Chess.com usernames."""


def parse_players(players: object) -> list[str]:
    """Validate usernames and return them lower-cased, de-duplicated, in input order.

    Accepts a comma-separated string or a JSON list (CLI, env) or a list (config.toml).
    Every bad name is reported at once, so a typo is fixed in one go.
    """
    if players is None:
        raise InvalidPlayerError(
            "no players given: pass --players a,b or set SOURCES__CHESS__PLAYERS"
        )
    if isinstance(players, str) and players.lstrip().startswith("["):
        try:
            players = json.loads(players)
        except json.JSONDecodeError as exc:
            raise InvalidPlayerError(f"invalid player list {players!r}: {exc}") from None
    if isinstance(players, str):
        items: list[object] = list(players.split(","))
    elif isinstance(players, Iterable):
        items = list(players)
    else:
        raise InvalidPlayerError(f"invalid player list {players!r}: expected names")
    names: list[str] = []
    bad: list[str] = []
    for item in items:
        if not isinstance(item, str):
            bad.append(repr(item))
            continue
        name = item.strip()
        if not name:
            continue
        if not USERNAME_RE.match(name):
            bad.append(repr(name))
        elif name.lower() not in names:
            # Chess.com usernames are case-insensitive; the API answers in lower case.
            names.append(name.lower())
    if bad:
        raise InvalidPlayerError(
            f"invalid Chess.com username(s): {', '.join(bad)} "
            "(expected 3-25 letters, digits, '_' or '-')"
        )
    if not names:
        raise InvalidPlayerError("no players given: the player list is empty")
    return names
