"""What the source remembers per player about their archive, in `archive_months`' state.

One player's entry, whatever the length of their history:

    "final":    "2016/12..2026/09,2026/11"   settled and loaded: never fetched again
    "open":     {"2026/12": {"etag": ..., "last_modified": ..., "games": 31}}
    "archives": {"listed_in": "2026/12", "months": "2016/12..2026/12", "etag": ..., ...}

dlt writes the whole pipeline state as one new `_dlt_pipeline_state` row whenever anything
in it changed, so a day with one new game anywhere rewrites all of it. Settled months are
kept as ranges for that reason: at 1,000 players x 10 years the row is ~0.1 MB instead of
3.7 MB with an entry per month (bench/README.md). The state stays in dlt's state,
committed atomically with the load: a month is final only once its games are loaded.

A state written before this shape (every month under "months" with a "final" flag, the
archive list as a list) is read as well and rewritten in this shape.
"""

from __future__ import annotations

from typing import Any

from .months import Month, format_ranges, parse_ranges


class PlayerBook:
    """A view over one player's entry in the resource state; changes write through."""

    def __init__(self, entry: dict[str, Any]) -> None:
        self._entry = entry
        legacy = entry.pop("months", None)
        entry.setdefault("final", "")
        entry.setdefault("open", {})
        if legacy:
            settled = [Month.parse(m) for m, e in legacy.items() if e.get("final")]
            entry["final"] = format_ranges([*parse_ranges(entry["final"]), *settled])
            for month, e in legacy.items():
                if not e.get("final"):
                    entry["open"][month] = {k: v for k, v in e.items() if k != "final"}
        self.final: set[Month] = set(parse_ranges(entry["final"]))

    @classmethod
    def of(cls, players: dict[str, Any], player: str) -> PlayerBook:
        return cls(players.setdefault(player, {}))

    @property
    def open(self) -> dict[str, dict[str, Any]]:
        """Validators (and game count) of months fetched but not settled, by `YYYY/MM`."""
        return self._entry["open"]

    def record(self, month: Month, entry: dict[str, Any]) -> None:
        """Keep what a fetch of `month` answered; a settled month joins the ranges."""
        if entry.get("final"):
            self.open.pop(month.path, None)
            if month not in self.final:
                self.final.add(month)
                self._entry["final"] = format_ranges(self.final)
        else:
            self.open[month.path] = {k: v for k, v in entry.items() if k != "final"}

    def known(self) -> int:
        """Months this player is known to have had: settled, open or listed."""
        listed = set(self.listed_months())
        return len(self.final | {Month.parse(m) for m in self.open} | listed)

    # -- the archive list ------------------------------------------------------------
    @property
    def listing(self) -> dict[str, Any]:
        """The last valid archive list read: `listed_in`, `months`, validators."""
        return self._entry.get("archives") or {}

    def listed_months(self) -> list[Month]:
        months = self.listing.get("months") or ""
        if isinstance(months, list):  # the shape before ranges
            return sorted(Month.parse(m) for m in months)
        return parse_ranges(months)

    def keep_listing(
        self, listed_in: Month, months: list[Month], validators: dict[str, Any]
    ) -> None:
        self._entry["archives"] = {
            "listed_in": listed_in.path,
            "months": format_ranges(months),
            **validators,
        }
