"""Shared CLI plumbing for the pipelines under pipelines/dlt/.

A pipeline script is its source plus one call (the dash in `dlt-<name>.py` keeps scripts
unimportable; this package is what they share). `python pipelines/dlt/dlt-<name>.py` puts
the script's directory first on `sys.path`, so the packages beside it import as they are,
and `run_pipeline` reads the `.dlt/` beside it (unless `DLT_PROJECT_DIR` is set), from
whichever directory it is run::

    import sys

    from leaderboards import leaderboards  # your dlt source, pipelines/dlt/leaderboards/
    from pipeline_runner import PipelineArguments, run_pipeline


    def add_arguments(args: PipelineArguments) -> None:
        args.option("--top", "players per board", type=int)  # env LEADERBOARDS_TOP


    def build_source(args):  # argparse.Namespace -> dlt source, no request yet
        return leaderboards(**({"top": args.top} if args.top else {}))


    if __name__ == "__main__":
        sys.exit(run_pipeline(
            name="chess_leaderboards",  # dlt pipeline name, query tag, lock, <name>.duckdb
            env_prefix="LEADERBOARDS",  # LEADERBOARDS_DESTINATION, _DATASET, _FULL_REFRESH, ...
            dataset="leaderboards",
            build_source=build_source,
            add_arguments=add_arguments,
        ))

`run_pipeline(*, name, env_prefix, build_source, dataset, description="",
add_arguments=None, report=None, after_load=None, usage_errors=(), config_section=None,
argv=None) -> int` gives every pipeline:

- Flags `--destination {snowflake,duckdb}` (default snowflake), `--dataset`,
  `--full-refresh`, `--progress`, `--summary-json PATH`, and the pipeline's own from
  `add_arguments(args)`: `args.option(flag, help, default=None, **argparse_kwargs)`,
  `args.switch(flag, help)`. Each `--some-flag` defaults to env `<PREFIX>_SOME_FLAG`
  ("" = unset, as Kestra passes it); a switch's env value must be true/false (or 1/0,
  yes/no, on/off).
- Checks before any request, each an exit 2 naming the setting: flags and env values,
  `RUNTIME__*` (HTTP timeout/retries), the source's dlt config (a missing or uncoercible
  `SOURCES__<SECTION>__<FIELD>`; section = `config_section`, default
  `sources.<prefix lower>`), exceptions listed in `usage_errors` raised by `build_source`,
  the destination (Snowflake credentials/key/account, the DuckDB file's directory, and
  the file itself: not a DuckDB database or unreadable, exit 2; locked by another
  process, exit 3 naming its pid), the `--summary-json` directory.
- dlt's settings from the `.dlt/` beside the script that defines `build_source`
  (`DLT_PROJECT_DIR` to read another; see `workdir.py`).
- dlt's working directory `./.dlt-data/pipelines/<name>` (or `$DLT_DATA_DIR/pipelines`) and
  an exclusive lock on it: a second run exits 3 naming the holder (pid, host, start time).
- Pending packages of a killed run are loaded first. A package that fails to normalize or
  load is aborted (`Pipeline.abort_packages`: local state back to the last committed load,
  so its data is fetched again next run) and named in the summary with its table and job:
  exit 1, and the next run is not blocked by it.
- `--full-refresh` that resumes: a marker committed to the destination first makes every
  later run redo an interrupted refresh (see `refresh.py`).
- Before any request: every table the pipeline's stored schema says was loaded must still
  be in the destination; one dropped by hand is exit 1 naming it (`--full-refresh`
  recreates it), instead of loads that skip its data as done.
- SIGTERM / SIGINT (`stop.py`): no new request or load after it, the load in progress
  finishes (`report.stop()`; without it dlt stops the extract and the load is aborted),
  the summary says `stopped by SIGTERM`, exit 143 / 130; a second signal exits at once.
- Loads repeated while `report.another_load()` (a backfill in bounded loads), then
  `after_load(pipeline)` (e.g. views; a failure there is exit 1 with the data kept).
- The summary (stdout), `--summary-json`, Kestra outputs and metrics (inside Kestra, i.e.
  with `KESTRA_EXECUTION_ID` set), all redacted with `redact_url`; Snowflake QUERY_TAG
  JSON with `"pipeline": <name>` and the Kestra execution id. Schema changes to tables that
  had data when the run started (new columns, variant columns, new child tables, from
  dlt's load packages: `schema_changes.py`) are warnings there.
- Exit codes: 0 all loaded, 1 something did not load (the rest is committed), 2 usage or
  configuration error (nothing done), 3 another run holds the lock or another process the
  DuckDB file (nothing done), 143 / 130 stopped by SIGTERM / SIGINT.

`report` (optional) is the pipeline's `SourceReport`: `failed()`, `headline()`,
`summary_lines()`, `as_dict()`, `metrics()`, `another_load()`, `load_aborted()` and
`stop()`, each optional. The same
report object is usually passed to the source by `build_source`, which the runner calls
again for each further load.
"""

from .destination import LOADER_FILE_FORMAT, DestinationError, make_destination, query_tag
from .redact import redact, redact_url
from .run import (
    EXIT_BUSY,
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EXIT_USAGE,
    run_pipeline,
)
from .settings import PipelineArguments, UsageError, parse_bool
from .summary import Metric, SourceReport
from .workdir import pipelines_dir

__all__ = [
    "EXIT_BUSY",
    "EXIT_CODES",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_SIGINT",
    "EXIT_SIGTERM",
    "EXIT_USAGE",
    "LOADER_FILE_FORMAT",
    "DestinationError",
    "Metric",
    "PipelineArguments",
    "SourceReport",
    "UsageError",
    "make_destination",
    "parse_bool",
    "pipelines_dir",
    "query_tag",
    "redact",
    "redact_url",
    "run_pipeline",
]
