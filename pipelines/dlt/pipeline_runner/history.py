"""Run history in the warehouse: one row per run in `<dataset>._pipeline_runs`, failed
and stopped runs included, and a `pipeline_freshness` view (last load per table).

So a SQL dashboard on the warehouse alone (Snowflake, DuckDB) shows when each pipeline ran,
how it ended and how fresh each table is, without Prometheus or Kestra's database. The row
is written by dlt itself (its own schema `pipeline_runs`, append), after the summary is
printed: one small load, under a second on DuckDB. Runs that never reached the destination
(exit 2: usage or settings; 3: another run holds the lock) leave no row: nothing was done.
Writing the history never changes the run's exit code: a failure is a warning on stderr.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import dlt
from dlt.common.schema import Schema
from dlt.common.schema.typing import TTableSchemaColumns

from .destination import HISTORY_SCHEMA

RUNS_TABLE = "_pipeline_runs"
FRESHNESS_VIEW = "pipeline_freshness"

RUN_COLUMNS: TTableSchemaColumns = {
    "run_id": {"data_type": "text", "nullable": False},
    "pipeline": {"data_type": "text", "nullable": False},
    "kestra_execution_id": {"data_type": "text", "nullable": True},
    "started_at": {"data_type": "timestamp", "timezone": True, "nullable": False},
    "ended_at": {"data_type": "timestamp", "timezone": True, "nullable": False},
    "elapsed_s": {"data_type": "double"},
    "exit_code": {"data_type": "bigint", "nullable": False},
    # ok | failed | stopped
    "status": {"data_type": "text", "nullable": False},
    "destination": {"data_type": "text"},
    "loads": {"data_type": "bigint"},
    "rows_total": {"data_type": "bigint"},
    # JSON text (`parse_json(...)` in Snowflake, `json(...)` in DuckDB)
    "rows_json": {"data_type": "text"},
    "schema_changes": {"data_type": "bigint"},
    "schema_changes_json": {"data_type": "text"},
    "errors": {"data_type": "text", "nullable": True},
    "peak_memory_mb": {"data_type": "double", "nullable": True},
}


def status_of(exit_code: int) -> str:
    return {0: "ok", 130: "stopped", 143: "stopped"}.get(exit_code, "failed")


def run_row(
    *,
    pipeline_name: str,
    summary: Any,
    source_columns: dict[str, Any],
    exit_code: int,
    started_at: datetime,
    ended_at: datetime,
    execution_id: str | None,
) -> dict[str, Any]:
    """The history row of a run: the runner's figures plus the source's own columns
    (`SourceReport.history()`, e.g. players ok/failed, requests by status)."""
    errors = [f.describe() for f in summary.load_failures] + list(summary.errors)
    row = {
        **source_columns,
        "run_id": uuid.uuid4().hex,
        "pipeline": pipeline_name,
        "kestra_execution_id": execution_id,
        "started_at": started_at,
        "ended_at": ended_at,
        "elapsed_s": round(summary.elapsed, 3),
        "exit_code": exit_code,
        "status": status_of(exit_code),
        "destination": summary.target,
        "loads": summary.loads,
        "rows_total": sum(summary.rows.values()),
        "rows_json": json.dumps(dict(sorted(summary.rows.items()))),
        "schema_changes": len(summary.schema_changes),
        "schema_changes_json": json.dumps([c.as_dict() for c in summary.schema_changes]),
        "errors": "\n".join(errors) or None,
        "peak_memory_mb": round(summary.peak_memory_mb, 1) if summary.peak_memory_mb else None,
    }
    return row


def record_run(pipeline: dlt.Pipeline, row: dict[str, Any], loader_file_format: str) -> None:
    """Append `row` to `_pipeline_runs` (its own dlt schema, so the source's schema and a
    `--full-refresh` of it leave the history alone), then (re)create the freshness view."""
    resource = dlt.resource([row], name=RUNS_TABLE, write_disposition="append", columns=RUN_COLUMNS)
    pipeline.run(resource, schema=Schema(HISTORY_SCHEMA), loader_file_format=loader_file_format)
    create_freshness_view(pipeline)


def create_freshness_view(pipeline: dlt.Pipeline) -> None:
    """`pipeline_freshness`: per data table of the pipeline, the last load that brought it
    rows (`load_id`, `last_loaded_at` from `_dlt_loads`). Plain SQL DuckDB and Snowflake
    both run; recreated after each run so new tables appear."""
    tables: list[str] = []
    for name in pipeline.schema_names:
        expected = [
            table
            for table in pipeline.schemas[name].data_table_names(seen_data_only=True)
            if "__" not in table  # child tables share their parent's loads
        ]
        with pipeline.destination_client(name) as client:
            # only what the destination has: a table dropped by hand is the runner's error
            tables += [t for t, columns in client.get_storage_tables(expected) if columns]
    if not tables:
        return
    tables.sort()
    with pipeline.sql_client() as sql:
        column = sql.escape_column_name
        parts = [
            f"SELECT '{table}' AS table_name, max({column('_dlt_load_id')}) AS load_id "
            f"FROM {sql.make_qualified_table_name(table)}"
            for table in tables
        ]
        loads = sql.make_qualified_table_name("_dlt_loads")
        view = sql.make_qualified_table_name(FRESHNESS_VIEW)
        # Snowflake: keep the readers' grants on the replaced view
        grants = " COPY GRANTS" if sql.capabilities.sqlglot_dialect == "snowflake" else ""
        sql.execute_sql(
            f"CREATE OR REPLACE VIEW {view}{grants} AS\n"
            f"SELECT t.table_name, t.load_id, l.{column('inserted_at')} AS last_loaded_at\n"
            f"FROM (\n  {' UNION ALL '.join(parts)}\n) AS t\n"
            f"LEFT JOIN {loads} AS l ON l.{column('load_id')} = t.load_id "
            f"AND l.{column('status')} = 0"
        )
