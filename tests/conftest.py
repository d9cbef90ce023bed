from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIR = ROOT / "pipelines" / "dlt"
SCRIPT = SOURCE_DIR / "dlt-chess-snowflake.py"

# The source package lives beside the script, as dlt verified sources do.
sys.path.insert(0, str(SOURCE_DIR))
