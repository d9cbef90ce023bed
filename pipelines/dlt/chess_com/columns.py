"""Keep every served value: one type per column, never a cast, never a coercion.

dlt's Arrow path fails a batch whose types disagree with the stored schema
(`IncompatibleArrowSchema`) or casts it (2.5 into a BIGINT column is 2), and its row path
coerces (`"yes"` into a bool column is True, 1 is true, "2385" is 2385) and fails on an
integer beyond 64 bits. So the types are decided here, before dlt sees a row:

- A column's type is its declared hint, else what the destination already has, else the
  type of the first value seen (bool, bigint, double, text, timestamp).
- A value of another type goes to the variant column dlt itself would name,
  `<column>__v_<type>` (`rating__v_text` holds "2385"), with its own type, and is reported
  (`Moved`). The only widening allowed is an integer into a double column where the
  double holds it exactly (|n| <= 2^53).
- An integer beyond 64 bits is kept as its exact digits (text).
- Nested objects are flattened into `a__b` columns with dlt's naming. Two keys of one
  object that name the same column (`timeControl` beside `time_control`) are both kept:
  the one already in normal form owns the name, the other goes to
  `<column>__alt_<key>` (reported).
- Lists are left to dlt, which makes child tables of them.

`ColumnTypes.arrow_table` shapes a batch column by column (the backfill's fast path, as
fast as before: bench/README.md); `ColumnTypes.rows` shapes dict rows the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from dlt.common.normalizers.naming.snake_case import NamingConvention
from dlt.common.schema.typing import TTableSchemaColumns
from dlt.common.typing import VARIANT_FIELD_FORMAT

if TYPE_CHECKING:
    import pyarrow as pa

# The destinations here use dlt's default naming (snake_case, case-insensitive).
NAMING = NamingConvention()
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
EXACT_IN_DOUBLE = 2**53
# Lists of a key kept apart from its scalars in a batch's columns (never a real name).
LIST_SUFFIX = "\0list"
WIDE_INTEGER = "integer beyond 64 bits"  # `Moved.kind`: kept as its digits
COERCED = "coerced"  # `Moved.kind`: a frozen field's value taken in its declared type
_TYPE_OF = {bool: "bool", float: "double", str: "text", datetime: "timestamp"}
# Python types a column of each dlt type takes as they are (int into double: see `_fits`).
_TAKES: dict[str, set[type]] = {
    "bool": {bool},
    "bigint": {int},
    "double": {float, int},
    "text": {str},
    "timestamp": {datetime},
}


@dataclass(frozen=True)
class Moved:
    """A value kept outside its column: `row` of the batch, `column` it belongs to,
    `into` where it went, `kind` (its type, "collision", `WIDE_INTEGER` kept as its
    digits in a text column, or `COERCED`), the value as served."""

    row: int
    column: str
    into: str
    kind: str
    value: Any


@lru_cache(maxsize=4096)
def column_name(key: str) -> str:
    """dlt's name for a top-level key (`normalize_path`, as its relational normalizer)."""
    return NAMING.normalize_path(key) if key and not key.isspace() else "_empty"


_NAMES: dict[tuple[str, str], str] = {}


@lru_cache(maxsize=4096)
def _nested_name(prefix: str, key: str) -> str:
    return NAMING.shorten_fragments(prefix, column_name(key))


def variant_name(column: str, kind: str) -> str:
    """The variant column dlt's normalizer would make for a value of `kind`."""
    return NAMING.shorten_fragments(column, VARIANT_FIELD_FORMAT % kind)


def _alt_name(column: str, key: str) -> str:
    return NAMING.shorten_fragments(column, "alt_" + re.sub(r"[^a-z0-9]", "", key.lower()))


def flatten(record: dict[str, Any], moved: list[Moved] | None = None, row: int = 0) -> dict:
    """A record's nested objects as `a__b` columns, every key named as dlt names it.

    Collisions are appended to `moved` (kind "collision") when given.
    """
    out: dict[str, Any] = {}
    _flatten_into(out, record, "", "", moved, row)
    return out


def _flatten_into(
    out: dict[str, Any],
    record: dict[str, Any],
    prefix: str,
    raw_prefix: str,
    moved: list[Moved] | None,
    row: int,
) -> None:
    names = _NAMES  # (prefix, key) -> column: a dict lookup per field, the hot path
    for key, value in record.items():
        name = names.get((prefix, key))
        if name is None:
            name = names[(prefix, key)] = _nested_name(prefix, key) if prefix else column_name(key)
        if type(value) is dict:
            _flatten_into(out, value, name, f"{raw_prefix}{key}__", moved, row)
        elif name not in out:
            out[name] = value
        else:
            _collide(out, record, prefix, raw_prefix, key, name, value, moved, row)


def _collide(
    out: dict[str, Any],
    record: dict[str, Any],
    prefix: str,
    raw_prefix: str,
    key: str,
    name: str,
    value: Any,
    moved: list[Moved] | None,
    row: int,
) -> None:
    """Two keys naming one column: the key already in normal form keeps the name."""
    path = f"{raw_prefix}{key}"
    if path == name:
        out[name], value = value, out[name]
        twin = next((k for k in record if k != key and _NAMES.get((prefix, k)) == name), None)
        path = f"{raw_prefix}{twin}" if twin is not None else name + "_"
    into = _alt_name(name, path)
    while into in out:
        into += "_"
    out[into] = value
    if moved is not None:
        moved.append(Moved(row, name, into, "collision", {path: value}))


def kind_of(value: Any) -> str:
    """dlt's type for a value as it would be stored here ("list" for a list)."""
    kind = _TYPE_OF.get(type(value))
    if kind is not None:
        return kind
    if type(value) is int:
        return "bigint" if INT64_MIN <= value <= INT64_MAX else "text"
    if isinstance(value, list):
        return "list"
    return type(value).__name__


def _as_kind(value: Any, kind: str) -> Any:
    # An integer beyond 64 bits: its exact digits.
    return str(value) if kind == "text" and type(value) is int else value


def _fits(column_type: str, value: Any) -> bool:
    if type(value) not in _TAKES.get(column_type, ()):
        return False
    if type(value) is int:
        limit = EXACT_IN_DOUBLE if column_type == "double" else None
        if limit is not None:
            return -limit <= value <= limit
        return INT64_MIN <= value <= INT64_MAX
    return True


def _all_fit(column_type: str, values: list[Any], kinds: set[type]) -> bool:
    """`_fits` for a whole column at C speed where possible."""
    if not kinds <= _TAKES.get(column_type, set()):
        return False
    if int not in kinds:
        return True
    ints = [v for v in values if type(v) is int]
    low, high = (
        (-EXACT_IN_DOUBLE, EXACT_IN_DOUBLE) if column_type == "double" else (INT64_MIN, INT64_MAX)
    )
    return low <= min(ints) and max(ints) <= high


class ColumnTypes:
    """The type of every column of one table, for a run (see the module docstring).

    `stored` is the destination's columns of the table; by default read, at the first
    batch, from the schema dlt is extracting with (`dlt.current.source_schema()`).
    """

    def __init__(
        self,
        table: str,
        declared: TTableSchemaColumns,
        stored: TTableSchemaColumns | None = None,
        not_null: Iterable[str] = (),
    ) -> None:
        self.table = table
        self.declared = {name: col["data_type"] for name, col in declared.items()}
        self.not_null = set(not_null)
        self.types: dict[str, str] | None = None
        if stored is not None:
            self._start(stored)

    def _start(self, stored: TTableSchemaColumns) -> None:
        # What the destination has wins over a hint: it is what dlt will compare with.
        self.types = dict(self.declared)
        self.types.update({n: c["data_type"] for n, c in stored.items() if c.get("data_type")})

    def _ensure(self) -> dict[str, str]:
        if self.types is None:
            import dlt
            from dlt.extract.exceptions import CurrentSourceSchemaNotAvailable

            try:
                schema = dlt.current.source_schema()
                stored = schema.tables.get(self.table, {}).get("columns", {})
            except CurrentSourceSchemaNotAvailable:
                stored = {}
            self._start(stored)
        assert self.types is not None
        return self.types

    def _place(
        self, name: str, values: list[Any], out: dict[str, list[Any]], moved: list[Moved]
    ) -> None:
        """Put a column's values into `out`: those of its type under `name`, each other
        one under its variant column (lists apart: dlt makes a child table of them)."""
        types = self._ensure()
        kinds = set(map(type, values))
        kinds.discard(type(None))
        if not kinds:
            return  # null in every row: dlt leaves such a column out too
        column_type = types.get(name)
        if column_type is None:
            first = next((v for v in values if v is not None and type(v) is not list), None)
            if first is not None:
                column_type = types[name] = kind_of(first)
        if column_type is not None and _all_fit(column_type, values, kinds):
            out[name] = values
            return
        size = len(values)
        main: list[Any] = [None] * size
        for row, value in enumerate(values):
            if value is None:
                continue
            if column_type is not None and _fits(column_type, value):
                main[row] = value
                continue
            kind = kind_of(value)
            if kind == "list":
                out.setdefault(name + LIST_SUFFIX, [None] * size)[row] = value
            elif kind == column_type:  # an integer beyond 64 bits in a text column
                main[row] = _as_kind(value, kind)
                moved.append(Moved(row, name, name, WIDE_INTEGER, value))
            else:
                into = variant_name(name, kind)
                types.setdefault(into, kind)
                out.setdefault(into, [None] * size)[row] = _as_kind(value, kind)
                moved.append(Moved(row, name, into, kind, value))
        if any(v is not None for v in main):
            out[name] = main

    def columns(self, rows: list[dict[str, Any]]) -> tuple[dict[str, list[Any]], list[Moved]]:
        """The batch's flattened rows as columns, every value placed; what was moved."""
        out: dict[str, list[Any]] = {}
        moved: list[Moved] = []
        for name in dict.fromkeys(key for row in rows for key in row):
            self._place(name, [row.get(name) for row in rows], out, moved)
        return out, moved

    def rows(self, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Moved]]:
        """Flattened rows with every value placed, as dicts (dlt's row path)."""
        out, moved = self.columns(rows)
        return _to_rows(out, len(rows)), moved

    def arrow_table(self, rows: list[dict[str, Any]]) -> tuple[pa.Table | list[dict], list[Moved]]:
        """The batch as one Arrow table (dlt writes it as it is), or as dict rows when a
        value is a list (dlt's normalizer makes its child table)."""
        import pyarrow as pa

        out, moved = self.columns(rows)
        fields, arrays = [], []
        types = self._ensure()
        for name, values in out.items():
            column_type = types.get(name)
            if column_type not in _ARROW:
                return _to_rows(out, len(rows)), moved
            kind = _arrow_type(column_type)
            fields.append(pa.field(name, kind, nullable=name not in self.not_null))
            arrays.append(pa.array(values, type=kind))
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields)), moved


def _to_rows(columns: dict[str, list[Any]], size: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [{} for _ in range(size)]
    for name, values in columns.items():
        name = name.removesuffix(LIST_SUFFIX)
        for row, value in zip(rows, values, strict=True):
            if value is not None:
                row[name] = value
    return rows


# dlt type -> Arrow type alias
_ARROW = {
    "bool": "bool",
    "bigint": "int64",
    "double": "float64",
    "text": "string",
    "timestamp": "timestamp",
}


def _arrow_type(column_type: str) -> pa.DataType:
    import pyarrow as pa

    if column_type == "timestamp":
        return pa.timestamp("us", tz="UTC")  # as dlt writes tz-aware timestamps
    return pa.type_for_alias(_ARROW[column_type])
