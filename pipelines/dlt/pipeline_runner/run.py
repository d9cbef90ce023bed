"""`run_pipeline`: flags → checks → lock → pending packages → (resumed) refresh → loads →
after-load step → summary, stopping early on SIGTERM/SIGINT (`stop`). Module docstring of
the package documents the API."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import dlt
from dlt.common.configuration.exceptions import (
    ConfigFieldMissingException,
    ConfigurationValueError,
)
from dlt.common.exceptions import SignalReceivedException
from dlt.extract.source import DltSource
from dlt.pipeline.exceptions import PipelineStepFailed

from .destination import (
    LOADER_FILE_FORMAT,
    DestinationBusy,
    DestinationError,
    check_destination,
    duckdb_dataset_clash,
    duckdb_problem,
    make_destination,
    missing_tables,
)
from .history import RUNS_TABLE, record_run, run_row
from .redact import redact_url
from .refresh import mark_refresh, pending_refresh
from .schema_changes import data_tables
from .settings import (
    PipelineArguments,
    RunOptions,
    UsageError,
    check_runtime_settings,
    common_arguments,
    config_value_message,
    env_value,
    resolve_switches,
    run_options,
)
from .stop import StopSignals, stop_dlt
from .summary import LoadFailure, RunSummary, SourceReport, essence, peak_memory_mb
from .workdir import PipelineBusy, RunLock, pipelines_dir, use_script_project_dir

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BUSY = 0, 1, 2, 3
# 128 + the signal, as a shell reports a process ended by it (see `stop`).
EXIT_SIGINT, EXIT_SIGTERM = 130, 143
EXIT_CODES = (
    "Exit codes: 0 everything loaded; 1 something did not load (the rest is loaded and "
    "committed); 2 usage or configuration error, nothing done; 3 another run of this "
    "pipeline holds its working directory, or another process holds its DuckDB file, "
    "nothing done; 143 / 130 stopped by SIGTERM / SIGINT (no request or load started "
    "after it, the load in progress finished; the rest is left for the next run)."
)

logger = logging.getLogger("pipeline_runner")


def run_pipeline(
    *,
    name: str,
    env_prefix: str,
    build_source: Callable[[argparse.Namespace], DltSource],
    dataset: str,
    description: str = "",
    add_arguments: Callable[[PipelineArguments], None] | None = None,
    report: SourceReport | None = None,
    after_load: Callable[[dlt.Pipeline], Any] | None = None,
    usage_errors: tuple[type[Exception], ...] = (),
    config_section: str | None = None,
    argv: Sequence[str] | None = None,
) -> int:
    """Run one pipeline from the command line; returns the exit code (see `EXIT_CODES`)."""
    # First, before any dlt config is read: the script's .dlt/, wherever it is run from.
    use_script_project_dir(build_source)
    _configure_logging()
    parser = argparse.ArgumentParser(description=description or None, epilog=EXIT_CODES)
    arguments = PipelineArguments(parser, env_prefix)
    common_arguments(arguments, dataset)
    if add_arguments is not None:
        add_arguments(arguments)
    namespace = parser.parse_args(argv)  # exits 2 on a malformed command line
    section = config_section or f"sources.{env_prefix.lower()}"

    def on_stop(signum: int) -> None:
        if callable(getattr(report, "stop", None)):
            report.stop()  # type: ignore[union-attr]
        else:
            stop_dlt(signum)  # a source that cannot stop itself: dlt stops its extract

    def run(stop: StopSignals) -> int:
        try:
            resolve_switches(arguments, namespace)
            options = run_options(namespace, env_prefix)
            clash = options.destination == "duckdb" and duckdb_dataset_clash(name, options.dataset)
            if clash:
                raise UsageError(clash)
            check_runtime_settings()
            source = _build_source(build_source, namespace, usage_errors, section, arguments.flags)
            directory = pipelines_dir()
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UsageError(
                    f"cannot create dlt's working directory {directory} ({exc.strerror}): run "
                    "from a writable directory or set DLT_DATA_DIR"
                ) from None
            with RunLock(directory, name):
                runner = _Runner(name, options, namespace, build_source, report, after_load, stop)
                return runner.execute(source, directory)
        except UsageError as exc:
            _print_error(str(exc))
            return EXIT_USAGE
        except PipelineBusy as exc:
            _print_error(str(exc))
            return EXIT_BUSY

    with StopSignals(on_stop) as stop:
        code = run(stop)
    # A run stopped by a signal never exits 0, nor as if it had finished: 143 / 130.
    return stop.exit_code or code


def _configure_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pipeline_runner").setLevel(logging.INFO)
    # The Snowflake connector logs every login retry; the preflight reports the outcome once.
    logging.getLogger("snowflake.connector").setLevel(logging.ERROR)


def _print_error(message: str) -> None:
    print(f"error: {redact_url(message)}", file=sys.stderr)


def _build_source(
    build_source: Callable[[argparse.Namespace], DltSource],
    namespace: argparse.Namespace,
    usage_errors: tuple[type[Exception], ...],
    section: str,
    flags: dict[str, str],
) -> DltSource:
    """Build the source; its validation and dlt config errors become `UsageError`s."""
    try:
        return build_source(namespace)
    except UsageError:
        raise
    except usage_errors as exc:
        raise UsageError(str(exc)) from None
    except ConfigFieldMissingException as exc:
        hints = []
        for field in exc.traces:
            env = "__".join(p.upper() for p in (*section.split("."), field))
            flag = flags.get(field)
            hints.append(
                f"{'pass ' + flag + ' or ' if flag else ''}set {env} "
                f"(or {section}.{field} in .dlt/config.toml)"
            )
        raise UsageError(
            f"missing setting(s): {', '.join(exc.traces)}. " + "; ".join(hints) + "."
        ) from None
    except ConfigurationValueError as exc:
        raise UsageError(config_value_message(exc, section)) from None


class _Runner:
    def __init__(
        self,
        name: str,
        options: RunOptions,
        namespace: argparse.Namespace,
        build_source: Callable[[argparse.Namespace], DltSource],
        report: SourceReport | None,
        after_load: Callable[[dlt.Pipeline], Any] | None,
        stop: StopSignals,
    ) -> None:
        self.name = name
        self.options = options
        self.namespace = namespace
        self.build_source = build_source
        self.report = report
        self.after_load = after_load
        self.stop = stop
        self.summary = RunSummary(pipeline=name, source_ran=False)
        # Whether the destination answered (its sync passed): the after-load step needs it.
        self.synced = False

    def execute(self, source: DltSource, directory: Any) -> int:
        started = time.perf_counter()
        started_at = datetime.now(UTC)
        execution_id = env_value("KESTRA_EXECUTION_ID")
        pipeline = dlt.pipeline(
            pipeline_name=self.name,
            pipelines_dir=str(directory),
            destination=make_destination(self.options.destination, self.name, execution_id),
            dataset_name=self.options.dataset,
            progress="log" if self.options.progress else None,
        )
        # The runner owns SIGTERM/SIGINT for the whole run (see `stop`): dlt's handlers,
        # installed around normalize and load only, would forget a signal once the step
        # ends and let the run go on.
        pipeline.config.runtime.intercept_signals = False
        try:
            check_destination(pipeline)
        except DestinationBusy as exc:
            raise PipelineBusy(str(exc)) from None
        except DestinationError as exc:
            raise UsageError(str(exc)) from None
        self.summary.working_dir = str(directory / self.name)
        self.summary.target = self._target(pipeline)

        if (
            self._go()
            and self._load_pending(pipeline)
            and self._go()
            and self._sync(pipeline)
            and self._go()
        ):
            self._loads(pipeline, source)
        if self.synced and not self.stop.requested:
            self._after_load(pipeline)

        self.summary.stopped_by = self.stop.name
        self.summary.elapsed = time.perf_counter() - started
        self.summary.peak_memory_mb = peak_memory_mb()
        print(self.summary.text(self.report))
        if self.options.summary_json:
            self.summary.write_json(self.options.summary_json, self.report)
        if execution_id:
            self.summary.report_to_kestra(self.report)
        failed = not self.summary.ok or bool(_ask(self.report, "failed", False))
        code = self.stop.exit_code or (EXIT_FAILED if failed else EXIT_OK)
        if self.synced:  # the destination answered: the run goes into its history
            self._record_history(pipeline, code, started_at, execution_id)
        return code

    def _record_history(
        self, pipeline: dlt.Pipeline, code: int, started_at: datetime, execution_id: str | None
    ) -> None:
        row = run_row(
            pipeline_name=self.name,
            summary=self.summary,
            source_columns=_ask(self.report, "history", {}),
            exit_code=code,
            started_at=started_at,
            ended_at=datetime.now(UTC),
            execution_id=execution_id,
        )
        try:
            record_run(pipeline, row, LOADER_FILE_FORMAT)
        except Exception as exc:  # monitoring, not data: the run's outcome stands
            logger.warning("run history not written to %s: %s", RUNS_TABLE, essence(str(exc)))

    def _go(self) -> bool:
        """False once SIGTERM/SIGINT asked the run to stop: nothing new starts."""
        if self.stop.requested:
            logger.warning("stopped by %s: nothing further is started", self.stop.name)
        return not self.stop.requested

    def _sync(self, pipeline: dlt.Pipeline) -> bool:
        self.synced = self._step(pipeline, "sync", pipeline.sync_destination)
        return self.synced

    def _target(self, pipeline: dlt.Pipeline) -> str:
        target = f"{self.options.destination} dataset '{self.options.dataset}'"
        if self.options.destination == "duckdb":
            target += f" ({pipeline.destination_client().config.credentials.database})"
        return target

    def _load_pending(self, pipeline: dlt.Pipeline) -> bool:
        """A run killed after extracting left a package whose state marks its data done:
        load it before extracting anything new. One that cannot be loaded is aborted (the
        local state goes back to before it), so this run fetches its data again: a note,
        not a failure. False only when even the abort failed (nothing more can run)."""
        if not pipeline.has_pending_data:
            return True
        logger.warning("loading the pending package(s) of an interrupted run first")

        def load_pending() -> None:
            pipeline.normalize()
            pipeline.load()

        failure = self._attempt(pipeline, "load", load_pending)
        if failure is None:
            self.summary.notes.append("loaded the pending package(s) of an interrupted run")
        elif failure.aborted:
            self.summary.notes.append(
                "the pending package of an interrupted run could not be loaded and was "
                f"aborted; this run fetched its data again. {failure.describe().splitlines()[0]}"
            )
        else:
            self.summary.errors.append(failure.describe())
        return failure is None or failure.aborted

    def _loads(self, pipeline: dlt.Pipeline, source: DltSource) -> None:
        """Load until the source leaves nothing for a further load (the backfill contract:
        `report.another_load()`), stopping at the first load that fails."""
        requested = pending_refresh(pipeline, source.name)
        refresh = self.options.full_refresh or requested is not None
        if requested and not self.options.full_refresh:
            self.summary.notes.append(
                f"resumed the full refresh requested at {requested}, which never completed"
            )
        if not refresh and not self._tables_present(pipeline):
            return
        marked = refresh and not requested
        if marked and not self._step(pipeline, "load", lambda: mark_refresh(pipeline, source.name)):
            return
        # Changes to tables that already had data are warnings; what a refresh or a first
        # run creates is not a change.
        known = set() if refresh else data_tables(pipeline)
        further = False
        while self._go():
            if further:
                # Built only once nothing stops the run: a source's report starts counting
                # its load when built (what the last load left would be forgotten).
                source = self.build_source(self.namespace)
            further = True
            mode = "drop_sources" if refresh else None

            def load(source: DltSource = source, mode: Any = mode) -> None:
                pipeline.run(source, loader_file_format=LOADER_FILE_FORMAT, refresh=mode)

            self.summary.source_ran = True
            if not self._step(pipeline, "run", load):
                return
            self.summary.record_load(pipeline, known)
            refresh = False
            if self.stop.requested or not _ask(self.report, "another_load", False):
                return
            # A backfill larger than one load's budget: this load's state is committed,
            # the next load picks up what it left.
            logger.info("the source left work for a further load")

    def _tables_present(self, pipeline: dlt.Pipeline) -> bool:
        """Before any request: every table the pipeline's schema says was loaded is still
        in the destination. One dropped by hand would stay missing (its state says its
        data is loaded, and dlt creates tables only for a new schema version): fail, say
        which, and how to get them back."""
        try:
            missing = missing_tables(pipeline)
        except Exception as exc:  # cannot list the tables: let the load say what is wrong
            logger.warning("could not list the destination's tables: %s", essence(str(exc)))
            return True
        if missing:
            tables = ", ".join(missing)
            one = len(missing) == 1
            what = f"table {tables} is" if one else f"tables {tables} are"
            self.summary.errors.append(
                f"{what} missing from dataset '{self.options.dataset}' in the destination, "
                f"though earlier loads filled {'it' if one else 'them'} and the pipeline's "
                "state, kept with the data, counts that data as loaded: nothing was "
                "requested. Run with --full-refresh to drop this source's tables and state "
                f"and load everything again (this recreates {'it' if one else 'them'})."
            )
            logger.error("missing table(s) in the destination: %s", tables)
        return not missing

    def _step(self, pipeline: dlt.Pipeline, step: str, action: Callable[[], Any]) -> bool:
        """Run a dlt step of this run's own data; on failure record it and return False."""
        failure = self._attempt(pipeline, step, action)
        if failure is None:
            return True
        if failure.stopped:  # dlt stopped the step on our signal: not a failure of the data
            _ask(self.report, "load_aborted", None)
            self.summary.notes.append(
                f"the load in progress was stopped at its {failure.step} step and "
                + ("aborted: nothing of it was committed" if failure.aborted else "left pending")
                + "; its data is fetched again by the next run"
            )
            return False
        if failure.step in ("normalize", "load") or failure.aborted:
            self.summary.load_failures.append(failure)
            _ask(self.report, "load_aborted", None)
        else:
            self.summary.errors.append(failure.describe())
        return False

    def _attempt(
        self, pipeline: dlt.Pipeline, step: str, action: Callable[[], Any]
    ) -> LoadFailure | None:
        """Run a dlt step; on failure abort whatever is pending (so nothing half-done
        wedges the next run) and say what failed."""
        try:
            action()
            return None
        except PipelineStepFailed as exc:
            failure = _describe(exc)
            failure.stopped = isinstance(exc.exception, SignalReceivedException)
        except Exception as exc:  # a step that dlt did not wrap (e.g. destination sync)
            problem = duckdb_problem(str(exc))
            message = str(problem) if problem else f"{type(exc).__name__}: {exc}"
            failure = LoadFailure(step=step, message=essence(message))
        if pipeline.has_pending_data or failure.load_id:
            try:
                pipeline.abort_packages()
                failure.aborted = True
            except Exception as exc:
                failure.abort_error = (
                    f"{essence(str(exc))}; run `dlt pipeline --pipelines-dir "
                    f"{pipeline.pipelines_dir} {self.name} abort-packages`"
                )
        (logger.warning if failure.stopped else logger.error)(failure.describe())
        return failure

    def _after_load(self, pipeline: dlt.Pipeline) -> None:
        if self.after_load is None:
            return
        try:
            self.after_load(pipeline)
        except Exception as exc:  # the data is loaded (if any); say so and fail the run
            what = (self.after_load.__doc__ or self.after_load.__name__).strip().splitlines()[0]
            problem = duckdb_problem(str(exc))
            why = essence(str(problem) if problem else str(exc))
            done = "data loaded, but " if self.summary.loads else ""
            self.summary.errors.append(f"{done}the after-load step failed ({what}): {why}")


def _ask(report: SourceReport | None, method: str, default: Any) -> Any:
    """Call a `SourceReport` method if the pipeline's report has it (all are optional)."""
    fn = getattr(report, method, None)
    return fn() if callable(fn) else default


def _describe(exc: PipelineStepFailed) -> LoadFailure:
    """Which package, job and table failed, from dlt's exception (not from its log)."""
    inner = exc.exception
    job = getattr(inner, "job_id", None)
    message = getattr(inner, "failed_message", None) or f"{type(inner).__name__}: {inner}"
    problem = duckdb_problem(str(message))  # e.g. the file locked by another process
    message = str(problem) if problem else message
    return LoadFailure(
        step=exc.step,
        message=essence(str(message)),
        load_id=getattr(inner, "load_id", None) or exc.load_id,
        job=job,
        table=job.split(".", 1)[0] if job else None,
    )
