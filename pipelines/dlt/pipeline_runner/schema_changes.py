"""What a load changed in the destination's tables, from dlt's own record of it.

Each load package carries the schema update it applied (`LoadPackageInfo.schema_update`:
new tables and new columns). A table's first load is a creation, not a change; after
that, a new table (a list's child table), a new column or a variant column
(`<column>__v_<type>`, a value of another type kept beside its column) is worth a
warning: the source's data changed shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

VARIANT_MARK = "__v_"


@dataclass(frozen=True)
class SchemaChange:
    table: str
    column: str | None  # None: a new table
    data_type: str | None = None

    @property
    def kind(self) -> str:
        if self.column is None:
            return "new table"
        return "variant column" if VARIANT_MARK in self.column else "new column"

    def describe(self) -> str:
        if self.column is None:
            return f"{self.table}: new table"
        return f"{self.table}: {self.kind} {self.column} ({self.data_type})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "column": self.column,
            "data_type": self.data_type,
            "kind": self.kind,
        }


def data_tables(pipeline: Any) -> set[str]:
    """Tables of the pipeline's schemas that have received data (none before a first run)."""
    tables: set[str] = set()
    for schema in pipeline.schemas.values():
        tables.update(schema.data_table_names(seen_data_only=True))
    return tables


def load_changes(load_info: Any, known: set[str]) -> tuple[list[SchemaChange], list[str]]:
    """Changes a load made to the tables in `known` (tables that had data before it),
    and the tables it created (dlt's own tables left out)."""
    changes: list[SchemaChange] = []
    created: list[str] = []
    for package in getattr(load_info, "load_packages", None) or []:
        for table, partial in (package.schema_update or {}).items():
            if table.startswith("_dlt"):
                continue
            if table not in known:
                if known:  # the dataset existed: a new table is a change
                    changes.append(SchemaChange(table, None))
                created.append(table)
                continue
            for column, schema in partial.get("columns", {}).items():
                if not column.startswith("_dlt"):
                    changes.append(SchemaChange(table, column, schema.get("data_type")))
    return changes, created
