"""`run_pipeline`: flags → checks → lock → pending packages → (resumed) refresh → loads →
after-load step → summary. Module docstring of the package documents the API."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import dlt
from dlt.common.configuration.exceptions import (
    ConfigFieldMissingException,
    ConfigurationValueError,
)
from dlt.extract.source import DltSource
from dlt.pipeline.exceptions import PipelineStepFailed

from .destination import (
    LOADER_FILE_FORMAT,
    DestinationError,
    check_destination,
    make_destination,
)
from .redact import redact_url
from .refresh import mark_refresh, pending_refresh
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
from .summary import LoadFailure, RunSummary, SourceReport, essence, peak_memory_mb
from .workdir import PipelineBusy, RunLock, pipelines_dir

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BUSY = 0, 1, 2, 3
EXIT_CODES = (
    "Exit codes: 0 everything loaded; 1 something did not load (the rest is loaded and "
    "committed); 2 usage or configuration error, nothing done; 3 another run of this "
    "pipeline holds its working directory, nothing done."
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
    _configure_logging()
    parser = argparse.ArgumentParser(description=description or None, epilog=EXIT_CODES)
    arguments = PipelineArguments(parser, env_prefix)
    common_arguments(arguments, dataset)
    if add_arguments is not None:
        add_arguments(arguments)
    namespace = parser.parse_args(argv)  # exits 2 on a malformed command line
    section = config_section or f"sources.{env_prefix.lower()}"
    try:
        resolve_switches(arguments, namespace)
        options = run_options(namespace, env_prefix)
        check_runtime_settings()
        source = _build_source(build_source, namespace, usage_errors, section, arguments.flags)
        directory = pipelines_dir()
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(
                f"cannot create dlt's working directory {directory} ({exc.strerror}): run from "
                "a writable directory or set DLT_DATA_DIR"
            ) from None
        with RunLock(directory, name):
            runner = _Runner(name, options, namespace, build_source, report, after_load)
            return runner.execute(source, directory)
    except UsageError as exc:
        _print_error(str(exc))
        return EXIT_USAGE
    except PipelineBusy as exc:
        _print_error(str(exc))
        return EXIT_BUSY


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
    ) -> None:
        self.name = name
        self.options = options
        self.namespace = namespace
        self.build_source = build_source
        self.report = report
        self.after_load = after_load
        self.summary = RunSummary(pipeline=name)

    def execute(self, source: DltSource, directory: Any) -> int:
        started = time.perf_counter()
        execution_id = env_value("KESTRA_EXECUTION_ID")
        pipeline = dlt.pipeline(
            pipeline_name=self.name,
            pipelines_dir=str(directory),
            destination=make_destination(self.options.destination, self.name, execution_id),
            dataset_name=self.options.dataset,
            progress="log" if self.options.progress else None,
        )
        try:
            check_destination(pipeline)
        except DestinationError as exc:
            raise UsageError(str(exc)) from None
        self.summary.working_dir = str(directory / self.name)
        self.summary.target = self._target(pipeline)

        if self._load_pending(pipeline) and self._step(pipeline, "sync", pipeline.sync_destination):
            self._loads(pipeline, source)
        self._after_load(pipeline)

        self.summary.elapsed = time.perf_counter() - started
        self.summary.peak_memory_mb = peak_memory_mb()
        print(self.summary.text(self.report))
        if self.options.summary_json:
            self.summary.write_json(self.options.summary_json, self.report)
        if execution_id:
            self.summary.report_to_kestra(self.report)
        failed = not self.summary.ok or bool(_ask(self.report, "failed", False))
        return EXIT_FAILED if failed else EXIT_OK

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
        marked = refresh and not requested
        if marked and not self._step(pipeline, "load", lambda: mark_refresh(pipeline, source.name)):
            return
        while True:
            mode = "drop_sources" if refresh else None

            def load(source: DltSource = source, mode: Any = mode) -> None:
                pipeline.run(source, loader_file_format=LOADER_FILE_FORMAT, refresh=mode)

            if not self._step(pipeline, "run", load):
                return
            self.summary.record_load(pipeline)
            refresh = False
            if not _ask(self.report, "another_load", False):
                return
            # A backfill larger than one load's budget: this load's state is committed,
            # the next load picks up what it left.
            logger.info("the source left work for a further load")
            source = self.build_source(self.namespace)

    def _step(self, pipeline: dlt.Pipeline, step: str, action: Callable[[], Any]) -> bool:
        """Run a dlt step of this run's own data; on failure record it and return False."""
        failure = self._attempt(pipeline, step, action)
        if failure is None:
            return True
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
        except Exception as exc:  # a step that dlt did not wrap (e.g. destination sync)
            failure = LoadFailure(step=step, message=essence(f"{type(exc).__name__}: {exc}"))
        if pipeline.has_pending_data or failure.load_id:
            try:
                pipeline.abort_packages()
                failure.aborted = True
            except Exception as exc:
                failure.abort_error = (
                    f"{essence(str(exc))}; run `dlt pipeline --pipelines-dir "
                    f"{pipeline.pipelines_dir} {self.name} abort-packages`"
                )
        logger.error(failure.describe())
        return failure

    def _after_load(self, pipeline: dlt.Pipeline) -> None:
        if self.after_load is None:
            return
        try:
            self.after_load(pipeline)
        except Exception as exc:  # the data is loaded; say so and fail the run
            what = (self.after_load.__doc__ or self.after_load.__name__).strip().splitlines()[0]
            self.summary.errors.append(
                f"data loaded, but the after-load step failed ({what}): {essence(str(exc))}"
            )


def _ask(report: SourceReport | None, method: str, default: Any) -> Any:
    """Call a `SourceReport` method if the pipeline's report has it (all are optional)."""
    fn = getattr(report, method, None)
    return fn() if callable(fn) else default


def _describe(exc: PipelineStepFailed) -> LoadFailure:
    """Which package, job and table failed, from dlt's exception (not from its log)."""
    inner = exc.exception
    job = getattr(inner, "job_id", None)
    message = getattr(inner, "failed_message", None) or f"{type(inner).__name__}: {inner}"
    return LoadFailure(
        step=exc.step,
        message=essence(str(message)),
        load_id=getattr(inner, "load_id", None) or exc.load_id,
        job=job,
        table=job.split(".", 1)[0] if job else None,
    )
