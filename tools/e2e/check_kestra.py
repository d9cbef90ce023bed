"""Check a deployed Kestra against what git says should be there, through Kestra's API.

    KESTRA_USER=... KESTRA_PASSWORD=... check_kestra.py URL PLAN_JSON FILES_ROOT [--no-run]

PLAN_JSON is `python tools/manifests.py plan` ({"namespaces": {ns: {"flows": [id...],
"files": ["/path"...]}}}); FILES_ROOT is the directory the namespace files come from
(pipelines/dlt). For every namespace: exactly the planned flows exist, exactly the planned
namespace files exist with the content of git, and every scheduled flow, started with its
Schedule's inputs, ends in SUCCESS (the e2e cluster serves the fake Chess.com API and the Snowflake
emulator, k8s/infrastructure/ci; tools/e2e/check_games.py then checks what landed). On
another end state the task runs and the execution's last log lines are printed.
--no-run checks the API, the flows and the files only (after a credentials rotation).
Standard library only.

API paths are Kestra 1.3's (source of 1.3.25, GitHub binhth-vuejx/kestra-1.3.25, in
webserver/src/main/java/io/kestra/webserver/controllers/api/; the same in Mattlk13/kestra),
tenant `main` in open-source Kestra:
  FlowController          GET  /api/v1/{tenant}/flows/{namespace}          listFlowsByNamespace
                          GET  /api/v1/{tenant}/flows/{namespace}/{id}     getFlow
  NamespaceFileController GET  /api/v1/{tenant}/namespaces/{namespace}/files/search?q=
                               (core/.../storages/InternalNamespace.all: q "/" = every
                               file, no directories; flows uploaded under /_flows/ are
                               imported as flows, never stored as files)
                          GET  /api/v1/{tenant}/namespaces/{namespace}/files?path=  content
  ExecutionController     POST /api/v1/{tenant}/executions/{namespace}/{id}  multipart
                               inputs, answers the new execution (state CREATED)
                          GET  /api/v1/{tenant}/executions/{executionId}
  LogController           GET  /api/v1/{tenant}/logs/{executionId}?minLevel=INFO
core/.../models/flows/State.java: an execution is over when its state isTerminated()
(SUCCESS, WARNING, FAILED, KILLED, CANCELLED, RETRIED, SKIPPED, RESUBMITTED).
Credentials come from the environment, never from arguments, and are never printed.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

SCHEDULE = "io.kestra.plugin.core.trigger.Schedule"
# State.Type.isTerminated() (core/.../models/flows/State.java, Kestra 1.3).
TERMINATED = {
    "SUCCESS",
    "WARNING",
    "FAILED",
    "KILLED",
    "CANCELLED",
    "RETRIED",
    "SKIPPED",
    "RESUBMITTED",
}
POLL_S = float(os.environ.get("KESTRA_POLL_S", "10"))
LOG_LINES = 60


class CheckFailed(Exception):
    """Kestra does not hold what git says; the message names what differs."""


class Api:
    def __init__(self, url: str, tenant: str, user: str, password: str) -> None:
        self.base = f"{url.rstrip('/')}/api/v1/{tenant}"
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}"}

    def request(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> tuple[int, bytes]:
        url = self.base + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        headers = dict(self.headers)
        if content_type:
            headers["Content-Type"] = content_type
        req = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            if err.code == 401:
                raise CheckFailed(f"{method} {path}: Kestra rejected the credentials") from None
            return err.code, err.read()

    def json(self, path: str, query: dict[str, str] | None = None) -> Any:
        status, body = self.request("GET", path, query)
        if status != 200:
            raise CheckFailed(f"GET {path} {query or ''}: HTTP {status}: {body[:300]!r}")
        return json.loads(body)


def quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def wait_for_api(api: Api, namespace: str, timeout: float) -> None:
    """Kestra answers only once started; the port-forward may also need a moment."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, _ = api.request("GET", f"/flows/{quote(namespace)}")
            if status == 200:
                return
            problem = f"HTTP {status}"
        except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
            problem = str(err)
        if time.monotonic() > deadline:
            raise CheckFailed(f"Kestra's API did not answer within {timeout:.0f}s: {problem}")
        time.sleep(3)


def check_flows(api: Api, namespace: str, planned: list[str]) -> list[dict[str, Any]]:
    listed = {f["id"] for f in api.json(f"/flows/{quote(namespace)}")}
    if listed != set(planned):
        raise CheckFailed(
            f"{namespace}: flows in Kestra {sorted(listed)} != flows in git {sorted(planned)}"
        )
    flows = []
    for flow_id in planned:
        flow = api.json(f"/flows/{quote(namespace)}/{quote(flow_id)}")
        if (flow.get("namespace"), flow.get("id")) != (namespace, flow_id):
            raise CheckFailed(f"{namespace}.{flow_id}: Kestra answered another flow")
        flows.append(flow)
        print(f"ok flow {namespace}.{flow_id} (revision {flow.get('revision')})")
    return flows


def check_files(api: Api, namespace: str, planned: list[str], root: Path) -> None:
    found = api.json(f"/namespaces/{quote(namespace)}/files/search", {"q": "/"})
    # Stored paths start with '/'; accept either spelling in the answer.
    stored = {"/" + p.lstrip("/") for p in found}
    if stored != set(planned):
        raise CheckFailed(
            f"{namespace}: namespace files only in Kestra {sorted(stored - set(planned))}, "
            f"only in git {sorted(set(planned) - stored)}"
        )
    for path in planned:
        status, content = api.request(
            "GET", f"/namespaces/{quote(namespace)}/files", {"path": path}
        )
        if status != 200:
            raise CheckFailed(f"{namespace}:{path}: HTTP {status}")
        if content != (root / path.lstrip("/")).read_bytes():
            raise CheckFailed(f"{namespace}:{path}: content differs from git")
    print(f"ok {len(planned)} namespace files in {namespace}, content as in git")


def multipart(fields: dict[str, Any]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        text = json.dumps(value) if isinstance(value, bool) else str(value)
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{text}\r\n'
        )
    body = "".join(parts) + f"--{boundary}--\r\n"
    return body.encode(), f"multipart/form-data; boundary={boundary}"


def is_scheduled(flow: dict[str, Any]) -> bool:
    return any(t.get("type") == SCHEDULE for t in flow.get("triggers") or [])


def schedule_inputs(flow: dict[str, Any]) -> dict[str, Any]:
    """The inputs the flow's Schedule passes: what its daily run gets."""
    for trigger in flow.get("triggers") or []:
        if trigger.get("type") == SCHEDULE:
            return dict(trigger.get("inputs") or {})
    return {}


def last_logs(api: Api, execution_id: str) -> list[str]:
    status, body = api.request("GET", f"/logs/{quote(execution_id)}", {"minLevel": "INFO"})
    if status != 200:
        return [f"(logs: HTTP {status})"]
    entries = json.loads(body)
    return [f"{e.get('taskId') or '-'} {e.get('level')} {e.get('message')}" for e in entries][
        -LOG_LINES:
    ]


def check_execution_succeeds(api: Api, flow: dict[str, Any], timeout: float) -> str:
    """Start the flow as its Schedule does and wait for the end: SUCCESS or a failure
    naming the state, the task runs and the last log lines."""
    namespace, flow_id = flow["namespace"], flow["id"]
    inputs = schedule_inputs(flow)
    body, content_type = multipart(inputs) if inputs else (None, None)
    path = f"/executions/{quote(namespace)}/{quote(flow_id)}"
    status, answer = api.request("POST", path, body=body, content_type=content_type)
    if status != 200:
        raise CheckFailed(f"POST {path}: HTTP {status}: {answer[:300]!r}")
    execution_id = json.loads(answer)["id"]
    print(f"ok execution {execution_id} of {namespace}.{flow_id} created")
    deadline = time.monotonic() + timeout
    while True:
        current = api.json(f"/executions/{quote(execution_id)}")
        state = current["state"]["current"]
        tasks = {t["taskId"]: t["state"]["current"] for t in current.get("taskRunList") or []}
        if state == "SUCCESS":
            print(f"ok execution {execution_id}: SUCCESS, task runs {tasks}")
            return state
        if state in TERMINATED or time.monotonic() > deadline:
            what = (
                f"ended {state}"
                if state in TERMINATED
                else f"not over after {timeout:.0f}s: {state}"
            )
            logs = "\n  ".join(last_logs(api, execution_id))
            raise CheckFailed(
                f"execution {execution_id} of {namespace}.{flow_id} {what}, task runs {tasks}; "
                f"last logs:\n  {logs}"
            )
        time.sleep(POLL_S)


def check(
    api: Api,
    plan: dict[str, Any],
    root: Path,
    start_timeout: float,
    run_timeout: float,
    run: bool = True,
) -> None:
    namespaces = plan["namespaces"]
    if not namespaces:
        raise CheckFailed("the plan has no namespace: nothing was deployed")
    wait_for_api(api, next(iter(namespaces)), timeout=start_timeout)
    for namespace, wanted in namespaces.items():
        check_files(api, namespace, wanted["files"], root)
        for flow in check_flows(api, namespace, wanted["flows"]):
            # Only scheduled flows are started: a flow run by other flows' executions (the
            # shared alerting flow's Flow trigger) has nothing to do when started by hand.
            if run and is_scheduled(flow):
                check_execution_succeeds(api, flow, timeout=run_timeout)


def main(argv: list[str]) -> int:
    run = "--no-run" not in argv
    argv = [a for a in argv if a != "--no-run"]
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    url, plan_file, root = argv
    user, password = os.environ.get("KESTRA_USER"), os.environ.get("KESTRA_PASSWORD")
    if not user or not password:
        print("error: set KESTRA_USER and KESTRA_PASSWORD", file=sys.stderr)
        return 2
    api = Api(url, os.environ.get("KESTRA_TENANT", "main"), user, password)
    plan = json.loads(Path(plan_file).read_text())
    start_timeout = float(os.environ.get("KESTRA_START_TIMEOUT", "600"))
    run_timeout = float(os.environ.get("KESTRA_RUN_TIMEOUT", "1800"))
    try:
        check(api, plan, Path(root), start_timeout, run_timeout, run)
    except CheckFailed as err:
        print(f"FAILED: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
