from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIR = ROOT / "pipelines" / "dlt"
SCRIPT = SOURCE_DIR / "dlt-chess-snowflake.py"
