"""Run the pipeline with its Snowflake destination on fakesnow, an in-process emulator.

    python run_on_fakesnow.py DB_DIR SCRIPT [ARGS...]   run the script (exit code passes through)
    python run_on_fakesnow.py DB_DIR --query SQL        print the rows of a query as JSON

Databases persist as DuckDB files in DB_DIR between calls, so a test can run the script,
run it again, and query what a Snowflake account would hold. Runs in its own environment
(.venv-snowflake, pins in this directory's pyproject.toml / uv.lock).
"""

from __future__ import annotations

import json
import runpy
import sys
import tempfile
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

# fakesnow makes a fakesnow_bucket_* directory in the temp dir when imported and never
# removes it (fakesnow/transforms/stage.py): keep it in DB_DIR, which the tests delete.
if len(sys.argv) > 1:
    (Path(sys.argv[1]) / "tmp").mkdir(parents=True, exist_ok=True)
    tempfile.tempdir = str(Path(sys.argv[1]) / "tmp")

import fakesnow
import snowflake.connector

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shim import install_shims


def jsonable(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def main() -> int:
    db_dir, command, *rest = sys.argv[1:]
    install_shims()
    with fakesnow.patch(db_path=db_dir):
        if command == "--query":
            (sql,) = rest
            conn = snowflake.connector.connect(database="ANALYTICS", schema="CHESS")
            cursor = conn.cursor()
            cursor.execute(sql)
            columns = [c[0].lower() for c in cursor.description]
            rows = [
                dict(zip(columns, map(jsonable, row), strict=True)) for row in cursor.fetchall()
            ]
            print(json.dumps(rows))
            return 0
        sys.argv = [command, *rest]
        try:
            runpy.run_path(command, run_name="__main__")
        except SystemExit as exc:
            return int(exc.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
