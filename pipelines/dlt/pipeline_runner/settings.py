"""Flags and their `<PREFIX>_*` env defaults, checked before anything else happens.

Every flag `--some-flag` of a pipeline also reads `<PREFIX>_SOME_FLAG` (how a Kestra flow
passes its inputs; an empty value means "not set", as Kestra passes ""). A flag on the
command line wins over the env var. A value that cannot be right is a `UsageError` (exit 2)
naming the flag or env var, raised before any request or load.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlt.common.configuration import resolve_configuration
from dlt.common.configuration.exceptions import ConfigurationValueError
from dlt.common.configuration.specs import RuntimeConfiguration

from .destination import DESTINATIONS

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off"})
DATASET_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")


class UsageError(Exception):
    """Bad flags or configuration: exit code 2, the message names what to change."""


def env_value(name: str) -> str | None:
    """An env setting; empty means unset (Kestra passes "" for an input left empty)."""
    return os.environ.get(name) or None


def parse_bool(value: str | bool | None, setting: str) -> bool:
    """`true/false/yes/no/on/off/1/0` (any case); anything else names `setting`."""
    if value is None or isinstance(value, bool):
        return bool(value)
    text = value.strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise UsageError(f"invalid {setting} {value!r}: use true or false")


class PipelineArguments:
    """An argparse parser whose options default to `<PREFIX>_<FLAG>` env vars."""

    def __init__(self, parser: argparse.ArgumentParser, env_prefix: str) -> None:
        self.parser = parser
        self.env_prefix = env_prefix
        # dest -> env var of boolean flags, parsed (and rejected) after argparse
        self.booleans: dict[str, str] = {}
        # dest -> flag, to name the flag in a "missing setting" message
        self.flags: dict[str, str] = {}

    def env_name(self, flag: str) -> str:
        return f"{self.env_prefix}_{flag.lstrip('-').replace('-', '_').upper()}"

    def option(self, flag: str, help: str, default: Any = None, **kwargs: Any) -> None:
        """`--flag VALUE`, defaulting to `<PREFIX>_FLAG`, then to `default`."""
        env = self.env_name(flag)
        self.flags[flag.lstrip("-").replace("-", "_")] = flag
        shown = f"; default {default}" if default is not None else ""
        self.parser.add_argument(
            flag, default=env_value(env) or default, help=f"{help} (env {env}{shown})", **kwargs
        )

    def switch(self, flag: str, help: str) -> None:
        """`--flag` (no value); `<PREFIX>_FLAG=true|false` sets it, anything else is an error."""
        env = self.env_name(flag)
        dest = flag.lstrip("-").replace("-", "_")
        self.booleans[dest] = env
        self.parser.add_argument(
            flag, action="store_true", default=None, help=f"{help} (env {env}=true)"
        )


@dataclass(frozen=True)
class RunOptions:
    """The flags every pipeline has, validated."""

    destination: str
    dataset: str
    full_refresh: bool
    progress: bool
    summary_json: Path | None


def common_arguments(args: PipelineArguments, default_dataset: str) -> None:
    args.option(
        "--destination",
        "where to load",
        default="snowflake",
        choices=DESTINATIONS,
    )
    args.option("--dataset", "dataset/schema name", default=default_dataset)
    args.switch("--full-refresh", "drop this pipeline's tables and state, then load everything")
    args.parser.add_argument("--progress", action="store_true", help="log dlt progress")
    args.option(
        "--summary-json", "also write the summary as JSON to this file", type=Path, default=None
    )


def resolve_switches(args: PipelineArguments, namespace: argparse.Namespace) -> None:
    """Turn each switch into a bool: the flag if given, else its env var (strictly parsed)."""
    for dest, env in args.booleans.items():
        if getattr(namespace, dest) is None:
            setattr(namespace, dest, parse_bool(env_value(env), env))


def run_options(namespace: argparse.Namespace, env_prefix: str) -> RunOptions:
    """Validate the common flags (argparse does not check env defaults against `choices`)."""
    if namespace.destination not in DESTINATIONS:
        raise UsageError(
            f"invalid destination {namespace.destination!r} ({env_prefix}_DESTINATION): "
            f"choose from {', '.join(DESTINATIONS)}"
        )
    if not DATASET_RE.match(namespace.dataset):
        raise UsageError(
            f"invalid dataset {namespace.dataset!r} ({env_prefix}_DATASET): "
            "use letters, digits and '_'"
        )
    summary_json = namespace.summary_json
    if summary_json is not None:
        check_writable(Path(summary_json), f"--summary-json ({env_prefix}_SUMMARY_JSON)")
    return RunOptions(
        destination=namespace.destination,
        dataset=namespace.dataset,
        full_refresh=bool(namespace.full_refresh),
        progress=bool(namespace.progress),
        summary_json=Path(summary_json) if summary_json is not None else None,
    )


def check_writable(path: Path, setting: str) -> None:
    """The file can be created later: its directory exists and is writable."""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise UsageError(f"{setting} {str(path)!r}: directory {str(directory)!r} does not exist")
    if not os.access(directory, os.W_OK):
        raise UsageError(f"{setting} {str(path)!r}: directory {str(directory)!r} is not writable")
    if path.is_dir():
        raise UsageError(f"{setting} {str(path)!r} is a directory, expected a file path")


def check_runtime_settings() -> None:
    """dlt reads `RUNTIME__*` (HTTP timeout, retries) lazily, at the first request: a bad
    value would surface as a traceback mid-run. Resolve them now."""
    try:
        resolve_configuration(RuntimeConfiguration())
    except ConfigurationValueError as exc:
        raise UsageError(config_value_message(exc, "runtime")) from None


def config_value_message(exc: ConfigurationValueError, section: str) -> str:
    """A dlt coercion error as `invalid SECTION__FIELD 'value': expected <type>`."""
    field = getattr(exc, "field_name", None)
    if field is None:
        return f"invalid {section} setting: {exc}"
    value = getattr(exc, "field_value", None)
    hint = getattr(exc, "hint", None)
    expected = getattr(hint, "__name__", None) or str(hint)
    env = "__".join(part.upper() for part in (*section.split("."), field))
    return (
        f"invalid {env} {value!r}: expected {expected} "
        f"({section}.{field} in .dlt/config.toml or env {env})"
    )
