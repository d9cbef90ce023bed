"""Check that a Kestra image holds every plugin type the flows use.

    docker run --rm IMAGE plugins list --core --plugins /app/plugins > listing.txt
    check_plugin_types.py listing.txt pipelines/*.yml

`kestra plugins list` prints one line per plugin (Kestra 1.3 cli/.../plugins/
PluginListCommand.java, core/.../plugins/RegisteredPlugin.java toString): "Found plugin on
path: <jar> [Tasks: a.B, c.D] [Triggers: ...] [Task Runners: ...] ..." or "Core plugin: [...]",
class names only (no aliases). Every `type` in a flow must be one of them: a missing one is
a flow Kestra rejects, or an alias (use the class name). Standard library + PyYAML.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

SECTION = re.compile(r"\[(?P<kind>[A-Za-z ]+): (?P<names>[^\]]*)\]")


def listed_types(listing: str) -> dict[str, str]:
    """Class name -> the line's plugin (jar path, or `core`)."""
    found = {}
    for line in listing.splitlines():
        origin = "core" if line.startswith("Core plugin:") else line.split(" [", 1)[0]
        origin = origin.removeprefix("Found plugin on path: ").strip()
        for section in SECTION.finditer(line):
            for name in section["names"].split(","):
                if name.strip():
                    found[name.strip()] = origin
    return found


# A plugin type is a qualified class name; input types (STRING, BOOL) and retry types
# (constant, exponential) are not.
QUALIFIED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")


def flow_types(node: Any) -> set[str]:
    """Every plugin `type` anywhere in a flow (tasks, errors, triggers, task runners)."""
    found: set[str] = set()
    if isinstance(node, dict):
        if isinstance(node.get("type"), str) and QUALIFIED.fullmatch(node["type"]):
            found.add(node["type"])
        for value in node.values():
            found |= flow_types(value)
    elif isinstance(node, list):
        for item in node:
            found |= flow_types(item)
    return found


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    listed = listed_types(Path(argv[0]).read_text())
    if not listed:
        print(f"error: no plugin class in {argv[0]}: not a `plugins list` output", file=sys.stderr)
        return 1
    status = 0
    for flow_file in argv[1:]:
        for plugin_type in sorted(flow_types(yaml.safe_load(Path(flow_file).read_text()))):
            if plugin_type in listed:
                print(f"ok {flow_file}: {plugin_type} ({listed[plugin_type]})")
            else:
                print(
                    f"FAILED {flow_file}: {plugin_type} is no plugin class of this image "
                    "(missing plugin, or an alias: use the class name)",
                    file=sys.stderr,
                )
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
