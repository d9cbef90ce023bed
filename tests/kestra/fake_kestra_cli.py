"""Stand-in for the Kestra 1.3 server CLI's two API commands the sync Job uses.

The client half runs inside the pod as a shell script (`CLIENT`, written by
twin.fake_cli): it checks basic auth, records the call and snapshots the directory it
would upload. The server half (`apply`) replays the calls afterwards, in order, on a
directory standing for Kestra's storage. Modelled on Kestra 1.3 (binhth-vuejx/kestra-1.3.25):
- cli/.../namespaces/files/NamespaceFilesUpdateCommand.java: `to` gets a leading and a
  trailing `/`; `--delete` first deletes everything under `to`; then every regular file
  under FROM (Files.walk, hidden files included) is uploaded to `to + relative path`.
- cli/.../flows/namespaces/FlowNamespaceUpdateCommand.java: every `.yml`/`.yaml` under DIR;
  none is an error ("No flow found"); POST /flows/{namespace}?override=&delete=.
- webserver/.../api/FlowController.java bulkUpdateOrCreate: a flow whose namespace is not
  exactly {namespace} is rejected, duplicate ids are rejected, and with delete the flows of
  {namespace} missing from the upload are deleted.
- AbstractApiCommand `--user user:password` (basic auth, split at the first `:`); a wrong
  pair is the server's 401.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

CLIENT = r"""#!/bin/sh
# Stand-in for /app/kestra (tests/kestra/fake_kestra_cli.py): auth check, then record.
set -e
store='@STORE@'
user=''
prev=''
for arg in "$@"; do
  [ "$prev" = --user ] && user=$arg
  prev=$arg
done
if [ "$user" != "$(cat "$store/auth")" ]; then
  echo "401 Unauthorized" >&2
  exit 1
fi
call="$store/spool/$(printf %04d "$(ls "$store/spool" | wc -l)")"
mkdir -p "$call"
for arg in "$@"; do
  case "$arg" in *:*) [ "$arg" = "$user" ] && arg='<user>' ;; esac
  printf '%s\n' "$arg"
done >"$call/argv"
# Both commands name the directory to upload fifth: `<a> <b> update NS DIR`.
[ -d "$5" ] && cp -R "$5" "$call/payload"
"""


class ServerError(Exception):
    """What the Kestra API would answer with an error (the real CLI exits 1)."""


def apply(store: Path) -> list[list[str]]:
    """Replay the recorded calls on the store; returns the calls (argv without auth)."""
    calls = []
    for call in sorted((store / "spool").iterdir()):
        argv = (call / "argv").read_text().splitlines()
        calls.append(argv)
        options = {a.removeprefix("--") for a in argv if a.startswith("--")}
        positional = [a for a in argv if not a.startswith("--")]
        payload = call / "payload"
        match positional:
            case ["namespace", "files", "update", namespace, _source, *rest]:
                to = "/" + (rest[0] if rest and rest[0] != "<user>" else "/").strip("/")
                base = store / "namespaces" / namespace / "files"
                target = base / to.strip("/")
                if "delete" in options and target.exists():
                    shutil.rmtree(target)
                if (payload / ".kestraignore").exists():
                    raise ServerError(".kestraignore is not modelled by the twin")
                for path in sorted(payload.rglob("*")):
                    if path.is_file():
                        dest = target / path.relative_to(payload)
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(path, dest)
            case ["flow", "namespace", "update", namespace, directory, *_]:
                update_flows(store, namespace, payload, directory, "delete" in options)
            case _:
                raise ServerError(f"unsupported command: {' '.join(positional)}")
    return calls


def update_flows(store: Path, namespace: str, payload: Path, directory: str, delete: bool) -> None:
    files = [p for p in sorted(payload.rglob("*")) if p.suffix in (".yml", ".yaml")]
    if not files:
        raise ServerError(f"No flow found in '{directory}'!")
    flows: dict[str, str] = {}
    for file in files:
        source = file.read_text().strip()
        flow = yaml.safe_load(source)
        if flow["namespace"] != namespace:
            raise ServerError(f"{flow['namespace']}.{flow['id']} - flow namespace is invalid")
        if flow["id"] in flows:
            raise ServerError("Duplicate flow id")
        flows[flow["id"]] = source
    base = store / "namespaces" / namespace / "flows"
    base.mkdir(parents=True, exist_ok=True)
    if delete:
        for old in base.glob("*.yml"):
            if old.stem not in flows:
                old.unlink()
    for flow_id, source in flows.items():
        (base / f"{flow_id}.yml").write_text(source)
