"""Throwaway secrets for a test deployment: an age key and test values for the Secrets.

    ci_secrets.py keygen IDENTITY_FILE   write a new age identity (0600), print its recipient
    ci_secrets.py fill TREE [VALUES_DIR|-] [FILE...]
                                         replace the placeholders of TREE's Secret files (or
                                         of FILE... only): a key's value is VALUES_DIR/<key>
                                         when that file exists, else a generated test value

Used by the e2e workflow (.github/workflows/e2e.yml) and by tests/k8s/test_sops.py, which
then run k8s/README.md's `sops --encrypt --in-place` (tools/e2e/encrypt-secrets.sh). `fill`
edits the files as a person with an editor would: only placeholder values change, comments
and key order stay. A value keeps its placeholder's encoding: where the placeholder is
base64 (`kestra-secrets`, read by Kestra as base64), the test value is base64 too.
No value is ever printed. Runs in the ops environment (.venv-ops: pyrage).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import secrets
import sys
from pathlib import Path

import pyrage
import yaml

# The Secret files k8s/README.md "2. Secrets" asks to fill and encrypt.
SECRET_FILES = "k8s/infrastructure/production/*.sops.yaml"
PLACEHOLDER = "CHANGE_ME"
PLACEHOLDER_B64 = base64.b64encode(PLACEHOLDER.encode()).decode()
# `key: placeholder` at any indentation (stringData/data entries).
ENTRY = re.compile(
    rf"^(?P<indent>\s+)(?P<key>[A-Za-z0-9_.-]+): (?P<value>{PLACEHOLDER}|{PLACEHOLDER_B64})$"
)


def keygen(identity_file: Path) -> str:
    """Write an age X25519 identity in age-keygen's file format; return the recipient."""
    identity = pyrage.x25519.Identity.generate()
    recipient = str(identity.to_public())
    created = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    fd = os.open(identity_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(f"# created: {created}\n# public key: {recipient}\n{identity}\n")
    return recipient


def test_value(key: str) -> str:
    """A value Kestra accepts: its basic auth rejects a username that is not an e-mail and a
    password without 8 chars, one upper, one lower and one digit (Kestra 1.3
    webserver/src/main/java/io/kestra/webserver/services/BasicAuthService.java,
    EMAIL_PATTERN and PASSWORD_PATTERN)."""
    if key == "username" or key.endswith("CONTACT"):
        return "ci@example.com"
    # Upper, lower and a digit whatever the random part holds; no ':' (user:password splits).
    return f"Ci-{secrets.token_urlsafe(18)}-9a"


def yaml_scalar(value: str) -> str:
    """A YAML scalar for the value: as is when YAML reads it back unchanged, else a
    double-quoted string (JSON's escapes are YAML's), e.g. a multi-line PEM key."""
    if value and "\n" not in value and yaml.safe_load(f"k: {value}") == {"k": value}:
        return value
    return json.dumps(value)


def fill(tree: Path, values: Path | None = None, only: list[str] | None = None) -> list[Path]:
    """Replace every placeholder value in TREE's Secret files (those named in `only`, if
    given); a key's value comes from `values`/<key> when that file exists (the e2e job's real
    key pair, an emulator's account), else test_value. Return the files changed."""
    files = sorted(tree.glob(SECRET_FILES))
    if only:
        files = [f for f in files if f.name in only]
    if not files:
        raise SystemExit(f"error: no {SECRET_FILES} under {tree}")
    for file in files:
        lines = file.read_text().splitlines(keepends=True)
        filled = 0
        for i, line in enumerate(lines):
            match = ENTRY.match(line.rstrip("\n"))
            if not match:
                continue
            given = values / match["key"] if values else None
            value = given.read_text() if given and given.is_file() else test_value(match["key"])
            if match["value"] == PLACEHOLDER_B64:
                value = base64.b64encode(value.encode()).decode()
            lines[i] = f"{match['indent']}{match['key']}: {yaml_scalar(value)}\n"
            filled += 1
        if not filled:
            raise SystemExit(f"error: {file} has no {PLACEHOLDER} placeholder to fill")
        file.write_text("".join(lines))
    return files


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "keygen":
        print(keygen(Path(argv[1])))
        return 0
    if len(argv) >= 2 and argv[0] == "fill":
        values = Path(argv[2]) if len(argv) > 2 and argv[2] != "-" else None
        for file in fill(Path(argv[1]), values, argv[3:] or None):
            print(f"filled {file}", file=sys.stderr)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
