"""Run the pipeline with its Snowflake destination on fakesnow, an in-process emulator.

    python run_on_fakesnow.py DB_DIR SCRIPT [ARGS...]   run the script (exit code passes through)
    python run_on_fakesnow.py DB_DIR --query SQL [DATABASE]   print a query's rows as JSON
    python run_on_fakesnow.py DB_DIR --admin SQL_FILE   run an administrator's SQL (the bootstrap)

Databases persist as DuckDB files in DB_DIR between calls, so a test can run the script,
run it again, and query what a Snowflake account would hold. Runs in its own environment
(.venv-snowflake, pins in this directory's pyproject.toml / uv.lock).

--admin runs pipelines/dlt/snowflake/bootstrap.sql (or any such file) as an administrator:
roles, users, warehouses and grants go to DB_DIR/account.json (account.py), CREATE DATABASE
to fakesnow. From then on the emulator is strict (account.py): logins are checked, nothing is
created on connect, CURRENT_ROLE()/CURRENT_WAREHOUSE()/CURRENT_DATABASE() answer as the grants
say. --query reads as an administrator (no login checks).
"""

from __future__ import annotations

import json
import re
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
import shim
from account import Account
from shim import install_shims

ADMIN = {"admin": True}


def jsonable(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def statements(sql: str) -> list[str]:
    """`a; b;` -> ['a', 'b'], cutting only at semicolons outside strings and comments."""
    from sqlglot import Dialect
    from sqlglot.tokens import TokenType

    cuts = [
        t.start
        for t in Dialect.get_or_raise("snowflake").tokenize(sql)
        if t.token_type == TokenType.SEMICOLON
    ]
    pieces, start = [], 0
    for cut in cuts:
        pieces.append(sql[start:cut])
        start = cut + 1
    pieces.append(sql[start:])
    # Comment lines before a statement are not part of it.
    pieces = [re.sub(r"\A(\s*--[^\n]*(\n|\Z))+", "", p) for p in pieces]
    return [p.strip() for p in pieces if p.strip()]


def admin(db_dir: str, sql_file: str) -> int:
    """Run an administrator's SQL file: account statements to account.json, the rest to
    fakesnow. Stops at the first error (exit 1), as a worksheet run would."""
    account = Account.load(Path(db_dir)) or Account()
    shim.PENDING_LOGIN.set(ADMIN)
    conn = snowflake.connector.connect()
    cursor = conn.cursor()
    for sql in statements(Path(sql_file).read_text()):
        try:
            if Account.is_account_statement(sql):
                print(account.apply(sql))
            else:
                print(cursor.execute(sql).fetchall())
        except Exception as exc:
            print(f"error in {sql[:60]!r}: {exc}", file=sys.stderr)
            account.save(Path(db_dir))  # what ran before stays done
            return 1
    account.save(Path(db_dir))
    return 0


def main() -> int:
    db_dir, command, *rest = sys.argv[1:]
    install_shims(Path(db_dir))
    with fakesnow.patch(db_path=db_dir):
        if command == "--admin":
            return admin(db_dir, *rest)
        if command == "--query":
            sql, *database = rest
            shim.PENDING_LOGIN.set(ADMIN)
            conn = snowflake.connector.connect(
                database=(database or ["ANALYTICS"])[0], schema="CHESS"
            )
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
