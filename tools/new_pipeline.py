#!/usr/bin/env python3
"""Scaffold a new pipeline (`make new-pipeline NAME=weather`), as `dlt init` does for sources.

Writes, from tools/templates/pipeline/:

    pipelines/dlt/<name>/__init__.py   the dlt source: one REST resource, merged, incremental
    pipelines/dlt/dlt-<name>.py        the script: the source plus one run_pipeline call
    pipelines/<name>.yml               the Kestra flow (namespace <name>.pipelines, daily)
    tests/<name>/fake_api.py           a local server that answers like the API
    tests/<name>/test_<name>.py        unit (mocked HTTP) and end-to-end (script → DuckDB) tests

adds `[sources.<name>]` to pipelines/dlt/.dlt/config.toml and secrets.toml.example, the
secret `<NAME>_API_KEY` (placeholder value) to the Kestra secrets manifest, then runs
`make manifests`. The result passes `make test` untouched and loads into DuckDB against its
fake API; then make the source read your API (pipelines/README.md, "Adding a new pipeline").
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import keyword
import re
import subprocess
import sys
from pathlib import Path
from string import Template

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = Path(__file__).resolve().parent / "templates" / "pipeline"
SECRETS_MANIFEST = Path("k8s/infrastructure/production/kestra-secrets.sops.yaml")
NAME = re.compile(r"^[a-z][a-z0-9_]{1,30}$")
# The manifest's placeholder for values not yet filled in (base64 of CHANGE_ME).
PLACEHOLDER = base64.b64encode(b"CHANGE_ME").decode()


class ScaffoldError(Exception):
    """The pipeline cannot be written as asked; the message says why and what to do."""


def check_name(name: str, root: Path) -> None:
    if not NAME.match(name) or keyword.iskeyword(name):
        raise ScaffoldError(
            f"NAME={name!r} is not a valid pipeline name: use 2-31 lower-case letters, digits "
            "and underscores, starting with a letter (it becomes a Python package)"
        )
    taken = [str(path) for path in planned_files(name) if (root / path).exists()]
    if taken:
        raise ScaffoldError(f"NAME={name!r} is taken: {', '.join(taken)} already exist(s)")
    if f"[sources.{name}]" in (root / "pipelines/dlt/.dlt/config.toml").read_text():
        raise ScaffoldError(f"NAME={name!r} is taken: [sources.{name}] is in .dlt/config.toml")
    # The package sits first on the script's sys.path: it would hide an installed module.
    if importlib.util.find_spec(name) is not None:
        raise ScaffoldError(
            f"NAME={name!r} would shadow the installed module {name!r}: choose another name"
        )


def planned_files(name: str) -> dict[Path, str]:
    """Path (relative to the repository) -> template."""
    return {
        Path(f"pipelines/dlt/{name}/__init__.py"): "source.py.tmpl",
        Path(f"pipelines/dlt/dlt-{name}.py"): "script.py.tmpl",
        Path(f"pipelines/{name}.yml"): "flow.yml.tmpl",
        Path(f"tests/{name}/__init__.py"): "tests_init.py.tmpl",
        Path(f"tests/{name}/fake_api.py"): "fake_api.py.tmpl",
        Path(f"tests/{name}/test_{name}.py"): "test_pipeline.py.tmpl",
    }


def container_image(root: Path) -> str:
    """The flows' image from the pins: uv in the Makefile, Python in .python-version."""
    uv = re.search(r"^UV_VERSION := (\S+)$", (root / "Makefile").read_text(), re.M)
    if uv is None:
        raise ScaffoldError("UV_VERSION not found in the Makefile")
    python = (root / ".python-version").read_text().strip()
    return f"ghcr.io/astral-sh/uv:{uv.group(1)}-python{python}-bookworm-slim"


def values(name: str, root: Path, cron: str, title: str | None) -> dict[str, str]:
    return {
        "name": name,
        "PREFIX": name.upper(),
        "title": title or name.replace("_", " ").capitalize(),
        "flow_id": name.replace("_", "-"),
        "namespace": f"{name.replace('_', '-')}.pipelines",
        "container_image": container_image(root),
        "cron": cron,
    }


def append(path: Path, text: str) -> None:
    existing = path.read_text()
    path.write_text(existing.rstrip("\n") + "\n\n" + text)


def add_secret(root: Path, secret: str) -> str | None:
    """Add `secret` with the placeholder value to the manifest; the manual step if encrypted."""
    manifest = root / SECRETS_MANIFEST
    text = manifest.read_text()
    if re.search(r"^sops:", text, re.M):
        return (
            f"add {secret} to the encrypted {SECRETS_MANIFEST} (base64 value):\n"
            f'  sops set {SECRETS_MANIFEST} \'["stringData"]["{secret}"]\' '
            '"\\"$(printf %s "$VALUE" | base64 -w0)\\""'
        )
    if re.search(rf"^  {secret}:", text, re.M):
        return None
    block = re.search(r"^stringData:\n((?:  .*\n?)*)", text, re.M)
    if block is None:
        raise ScaffoldError(f"no stringData block in {SECRETS_MANIFEST}")
    end = block.end(1)
    line = f"  {secret}: {PLACEHOLDER}\n"
    manifest.write_text(
        text[:end] + ("" if text[:end].endswith("\n") else "\n") + line + text[end:]
    )
    return None


def scaffold(name: str, root: Path, cron: str, title: str | None = None) -> list[str]:
    """Write the pipeline; returns the manual steps left (empty when none)."""
    check_name(name, root)
    fill = values(name, root, cron, title)
    for path, template in planned_files(name).items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(Template((TEMPLATES / template).read_text()).substitute(fill))
    append(
        root / "pipelines/dlt/.dlt/config.toml",
        f"[sources.{name}]\n"
        f"# The API the {name} source reads (its tests point SOURCES__{fill['PREFIX']}__BASE_URL\n"
        "# at their fake API). Replace with the real one.\n"
        'base_url = "https://api.example.com/v1"\n'
        "page_size = 100\n",
    )
    append(
        root / "pipelines/dlt/.dlt/secrets.toml.example",
        f"[sources.{name}]\n"
        f'api_key = "<api key>"   # in Kestra: secret("{fill["PREFIX"]}_API_KEY")\n',
    )
    manual = add_secret(root, f"{fill['PREFIX']}_API_KEY")
    return [manual] if manual else []


def tidy(root: Path, name: str) -> None:
    """Imports sorted and code formatted by the project's ruff (the templates cannot know
    where the package's name sorts)."""
    python = [str(path) for path in planned_files(name) if path.suffix == ".py"]
    ruff = [sys.executable, "-m", "ruff"]
    subprocess.run(
        [*ruff, "check", "--fix", "--select", "I", "--quiet", *python], cwd=root, check=True
    )
    subprocess.run([*ruff, "format", "--quiet", *python], cwd=root, check=True)


def regenerate(root: Path) -> None:
    """`make manifests`: the deployment and the alert rules follow the new flow."""
    for tool in ("tools/manifests.py", "tools/monitoring.py"):
        subprocess.run([sys.executable, tool, "write"], cwd=root, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="the pipeline's name: package, script, flow, dataset")
    parser.add_argument("--cron", default="0 6 * * *", help="the flow's schedule (UTC)")
    parser.add_argument("--title", help="what it loads, for docstrings (default: from NAME)")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        manual = scaffold(args.name, args.root, args.cron, args.title)
    except ScaffoldError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tidy(args.root, args.name)
    regenerate(args.root)
    print(f"wrote pipeline {args.name!r}:")
    for path in planned_files(args.name):
        print(f"  {path}")
    print(f"  pipelines/dlt/.dlt/config.toml, secrets.toml.example: [sources.{args.name}]")
    print(f"  {SECRETS_MANIFEST}: {args.name.upper()}_API_KEY (placeholder)")
    print("  k8s/apps/pipelines/, k8s/monitoring/pipeline-rules.yaml (make manifests)")
    for step in manual:
        print(f"left to you: {step}")
    print(
        "next: `make check`, then make the source read your API "
        f"(pipelines/dlt/{args.name}/__init__.py and tests/{args.name}/fake_api.py)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
