"""Pushes the flows of pipelines/ and the files of pipelines/dlt/ into Kestra through its API,
one flow namespace at a time, changing only what differs from git.

Per namespace: (1) upload the namespace files that are new or whose content changed,
(2) send every flow of the namespace (deleting the namespace's flows that left git), then
(3) delete the namespace files that left git. Files before flows, so a new flow never runs
old code; deletions last, so an old flow never loses a file while it is still deployed.
Only namespaces the plan marks `code` (a flow of theirs reads namespace files) get files;
in any other (the `system` alerting flow's) the sync sends the flows and never lists,
uploads or deletes a file.
An unchanged file is never re-uploaded: Kestra keeps every upload as a new revision
(core/.../storages/InternalNamespace.java putFile: version + 1, a new `.vN` object), and the
namespace is never empty, as it was with `kestra namespace files update --delete` (which
soft-deletes every file, then uploads them all again).

Runs in the sync Job (k8s/apps/pipelines/sync-job.yaml, a pinned Python image; standard
library only) and in tests/kestra/ (the execution twin) against a model of Kestra's API.
Kestra 1.3 API (webserver/.../controllers/api/, tenant `main` in open-source Kestra):
  NamespaceFileController  GET    /api/v1/{tenant}/namespaces/{ns}/files/search?q=/   paths
                           GET    /api/v1/{tenant}/namespaces/{ns}/files?path=        content
                           POST   /api/v1/{tenant}/namespaces/{ns}/files?path=        multipart
                                  `fileContent` (a part whose file name ends in .zip is
                                  unpacked instead: this sends another name)
                           DELETE /api/v1/{tenant}/namespaces/{ns}/files?path=        soft delete
  FlowController           POST   /api/v1/{tenant}/flows/{ns}?override=false&delete=true
                                  multipart `flows` (what `kestra flow namespace update
                                  --delete` sends, cli/.../FlowNamespaceUpdateCommand.java)
  MiscController           GET    /api/v1/configs (open), /api/v1/basicAuthValidationErrors
                                  (open while Kestra holds no valid credentials)

Inputs (env): SYNC_PLAN (sync-plan.tsv), SYNC_FLOWS_DIR and SYNC_FILES_DIR (mounted
ConfigMaps), KESTRA_URL, KESTRA_AUTH_DIR (files `username`, `password`), KESTRA_TENANT
(default main), SYNC_WAIT_S (how long to wait for Kestra's API to answer, default 300).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from base64 import b64encode
from pathlib import Path

# Kestra 1.3 webserver/.../services/BasicAuthService.java: the configured pair is stored at
# start-up only if it passes these (Matcher.matches(): the whole string); otherwise Kestra
# records the errors, keeps the pair it had (none on a first start) and answers 401.
# Java's `.` stops at \n \r \u0085 \u2028 \u2029, Python's only at \n: spelled out here.
_DOT = "[^\n\r\u0085\u2028\u2029]"
EMAIL = re.compile(r"^[a-zA-Z0-9_!#$%&'*+/=?`{|}~^.-]+@[a-zA-Z0-9.-]+$")
PASSWORD = re.compile(f"(?={_DOT}{{8,}})(?={_DOT}*[a-z])(?={_DOT}*[A-Z])(?={_DOT}*[0-9]){_DOT}*")
MAX_LEN = 256  # String.length(): UTF-16 code units
RULE = (
    "Kestra accepts basic-auth credentials only if the username is an e-mail address and the "
    "password has 8+ characters with an upper-case letter, a lower-case letter and a digit "
    "(at most 256 characters each); it reads them at start-up only"
)
UPLOAD_NAME = "content"  # never ends in .zip: NamespaceFileController would unpack it


class SyncError(Exception):
    """The sync cannot go on; the message says why (never a credential)."""


def java_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def credential_problems(username: str, password: str) -> list[str]:
    """BasicAuthService.save's checks, with its messages."""
    problems = []
    if not EMAIL.fullmatch(username):
        problems.append(
            "Invalid username for Basic Authentication. Please provide a valid email address."
        )
    if not PASSWORD.fullmatch(password):
        problems.append(
            "Invalid password for Basic Authentication. The password must have 8 chars, "
            "one upper, one lower and one number"
        )
    if java_length(username) > MAX_LEN or java_length(password) > MAX_LEN:
        problems.append("The length of email or password should not exceed 256 characters.")
    return problems


class Unauthorized(Exception):
    pass


class Api:
    def __init__(self, url: str, tenant: str, username: str, password: str) -> None:
        self.url = url.rstrip("/")
        self.tenant = tenant
        token = b64encode(f"{username}:{password}".encode()).decode()
        self.auth = {"Authorization": f"Basic {token}"}

    def call(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
        auth: bool = True,
    ) -> tuple[int, bytes]:
        url = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        headers = dict(self.auth) if auth else {}
        if content_type:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            if error.code == 401 and auth:
                raise Unauthorized from None
            return error.code, error.read()

    def ok(self, method: str, path: str, **kwargs: object) -> bytes:
        status, body = self.call(method, path, **kwargs)  # type: ignore[arg-type]
        if not 200 <= status < 300:
            detail = body[:300].decode(errors="replace")
            raise SyncError(f"{method} {path}: HTTP {status}: {detail}")
        return body

    def tenant_path(self, path: str) -> str:
        return f"/api/v1/{self.tenant}{path}"


def multipart(parts: list[tuple[str, str, str, bytes]]) -> tuple[bytes, str]:
    """(field, file name, content type, content) -> body and its Content-Type."""
    boundary = uuid.uuid4().hex
    chunks = []
    for field, filename, content_type, content in parts:
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n'.encode()
        )
        chunks.append(content + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def read_plan(plan: Path) -> tuple[dict[str, list[str]], dict[str, str], set[str]]:
    """sync-plan.tsv -> (namespace -> flow keys, stored path -> file key, namespaces that
    get the files)."""
    flows: dict[str, list[str]] = {}
    files: dict[str, str] = {}
    code: set[str] = set()
    for line in plan.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        kind, *fields = line.split("\t")
        if kind == "flow" and len(fields) == 2:
            flows.setdefault(fields[0], []).append(fields[1])
        elif kind == "file" and len(fields) == 2:
            files["/" + fields[1]] = fields[0]
        elif kind == "code" and len(fields) == 1:
            code.add(fields[0])
        else:
            raise SyncError(f"unknown line in {plan}: {line!r}")
    if code - set(flows):
        raise SyncError(f"{plan}: code for namespaces without flows: {sorted(code - set(flows))}")
    return flows, files, code


def wait_for_api(api: Api, seconds: float) -> None:
    """Kestra answers GET /api/v1/configs without credentials once it is up."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            status, _ = api.call("GET", "/api/v1/configs", auth=False)
            if status == 200:
                return
            problem = f"HTTP {status}"
        except (urllib.error.URLError, OSError) as error:
            problem = str(error)
        if time.monotonic() > deadline:
            raise SyncError(
                f"Kestra's API at {api.url} did not answer in {seconds:.0f}s: {problem}"
            )
        time.sleep(5)


def sync_namespace(
    api: Api,
    namespace: str,
    flow_keys: list[str],
    files: dict[str, str] | None,
    env: dict[str, Path],
) -> None:
    """`files` None: the namespace gets no code, its namespace files are left as they are."""
    base = api.tenant_path(f"/namespaces/{quote(namespace)}/files")
    code = files is not None
    if files is None:
        files, stored = {}, set()
    else:
        stored = {
            "/" + p.lstrip("/")
            for p in json.loads(api.ok("GET", base + "/search", query={"q": "/"}))
        }
    uploaded = unchanged = 0
    for path, key in sorted(files.items()):
        content = (env["files"] / key).read_bytes()
        if path in stored:
            status, current = api.call("GET", base, query={"path": path})
            if status == 200 and current == content:
                unchanged += 1
                continue
        body, content_type = multipart(
            [("fileContent", UPLOAD_NAME, "application/octet-stream", content)]
        )
        api.ok("POST", base, query={"path": path}, body=body, content_type=content_type)
        print(f"sync: {namespace}: uploaded {path}")
        uploaded += 1

    flows = [
        ("flows", key, "application/x-yaml", (env["flows"] / key).read_bytes()) for key in flow_keys
    ]
    body, content_type = multipart(flows)
    api.ok(
        "POST",
        api.tenant_path(f"/flows/{quote(namespace)}"),
        query={"override": "false", "delete": "true"},
        body=body,
        content_type=content_type,
    )

    deleted = 0
    for path in sorted(stored - set(files)):
        api.ok("DELETE", base, query={"path": path})
        print(f"sync: {namespace}: deleted {path} (not in git)")
        deleted += 1
    if not code:
        print(
            f"sync: {namespace}: {len(flow_keys)} flow(s); no namespace files (no flow reads any)"
        )
        return
    print(
        f"sync: {namespace}: {len(flow_keys)} flow(s); files: {uploaded} uploaded, "
        f"{unchanged} unchanged, {deleted} deleted"
    )


def explain_401(api: Api) -> str:
    """Why Kestra refused the pair: its own errors while it holds none, else the rule."""
    status, body = api.call("GET", "/api/v1/basicAuthValidationErrors", auth=False)
    if status == 200 and json.loads(body or b"[]"):
        errors = "; ".join(json.loads(body))
        return (
            f"Kestra refused its configured credentials at start-up ({errors}) and holds none. "
            f"{RULE}: fix the kestra-basic-auth Secret"
        )
    return (
        "Kestra holds other credentials than the kestra-basic-auth Secret: it reads them at "
        "start-up only, and keeps its last valid pair when the configured one breaks the rule. "
        f"{RULE}. Restart Kestra after a change (the HelmRelease's secrets-revision annotation "
        "does it when the Secret file changes in git)"
    )


def main() -> int:
    env = {
        "plan": Path(os.environ["SYNC_PLAN"]),
        "flows": Path(os.environ["SYNC_FLOWS_DIR"]),
        "files": Path(os.environ["SYNC_FILES_DIR"]),
    }
    auth_dir = Path(os.environ["KESTRA_AUTH_DIR"])
    try:
        # Exactly the Secret's bytes, as Kestra gets them in its env (no newline translation).
        username = (auth_dir / "username").read_bytes().decode()
        password = (auth_dir / "password").read_bytes().decode()
    except OSError:
        print(
            f"sync: cannot read Kestra's credentials in {auth_dir} as uid {os.getuid()}",
            file=sys.stderr,
        )
        return 1
    problems = credential_problems(username, password)
    if problems:
        print(
            "sync: the kestra-basic-auth Secret breaks Kestra's rule, so Kestra answers 401 to "
            f"every call: {' '.join(problems)} {RULE}.",
            file=sys.stderr,
        )
        return 2
    api = Api(os.environ["KESTRA_URL"], os.environ.get("KESTRA_TENANT", "main"), username, password)
    try:
        flows, files, code = read_plan(env["plan"])
        wait_for_api(api, float(os.environ.get("SYNC_WAIT_S", "300")))
        for namespace in sorted(flows):
            sync_namespace(
                api, namespace, flows[namespace], files if namespace in code else None, env
            )
    except Unauthorized:
        print(f"sync: 401 Unauthorized: {explain_401(api)}.", file=sys.stderr)
        return 1
    except SyncError as error:
        print(f"sync: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
