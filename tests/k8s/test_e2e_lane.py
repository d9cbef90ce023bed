"""The e2e lane (.github/workflows/e2e.yml) checked offline: the CI cluster path is
production's chain with only the intended changes, every name and pin the job's scripts use
agrees with the manifests, the source the job pushes is deployable and encrypted, and the
API check passes on a Kestra holding git's flows and files and fails on every difference.

What only GitHub Actions proves: Flux really reconciling this on kind, Kestra starting, the
sync Job uploading, and Kestra's real API answering (here it is a stand-in modelled on the
controllers cited in tools/e2e/check_kestra.py).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import pytest
import yaml

from tests.conftest import ROOT
from tests.k8s.test_manifests import BY_NAME, SOPS_VALUE, render, tool
from tests.k8s.test_sops import OPS_PYTHON, sops_binary

# kind has no Prometheus Operator: the CI chain is production's without its monitoring
# (k8s/clusters/production/monitoring.yaml; tests/monitoring checks that one).
PRODUCTION = {name: k for name, k in BY_NAME.items() if name != "monitoring"}
CI_CLUSTER = "k8s/clusters/ci"
E2E = ROOT / "tools" / "e2e"
WORKFLOW = ROOT / ".github" / "workflows" / "e2e.yml"
CHECK = E2E / "check_kestra.py"
PYTHON = ROOT / ".venv" / "bin" / "python"


def ci_kustomizations() -> dict[str, dict[str, Any]]:
    docs = render(CI_CLUSTER)
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "Kustomization"}


def script_value(script: str, name: str) -> str:
    match = re.search(rf"^{name}=\$?\{{?([^\s}}]+)", (E2E / script).read_text(), re.M)
    assert match, f"{name} not set in tools/e2e/{script}"
    value = match.group(1)
    return value.split(":-", 1)[1] if ":-" in value else value


# --- the CI cluster path -------------------------------------------------------------------


def test_ci_chain_is_production_with_only_source_and_infrastructure_path_changed() -> None:
    ci = ci_kustomizations()
    assert set(ci) == set(PRODUCTION)
    for name, prod in PRODUCTION.items():
        if name == "flux-system":
            continue
        want = copy.deepcopy(prod)
        want["spec"]["sourceRef"] = {"kind": "OCIRepository", "name": "flux-system"}
        if name == "infrastructure":
            want["spec"]["path"] = "./k8s/infrastructure/ci"
        assert ci[name] == want, name
    assert ci["flux-system"]["spec"]["path"] == f"./{CI_CLUSTER}"


@pytest.mark.parametrize("name", sorted(PRODUCTION))
def test_ci_kustomization_paths_exist_render_and_resolve(name: str) -> None:
    spec = ci_kustomizations()[name]["spec"]
    path = spec["path"].removeprefix("./")
    assert (ROOT / path).is_dir(), f"{name}: {path} does not exist"
    objects = render(path)
    assert objects, f"{name}: {path} renders nothing"
    sources = [o for o in render(CI_CLUSTER) if o["kind"] == spec["sourceRef"]["kind"]]
    assert spec["sourceRef"]["name"] in {s["metadata"]["name"] for s in sources}
    for dep in spec.get("dependsOn", []):
        assert dep["name"] in PRODUCTION
    if any(o["kind"] == "Secret" for o in objects):
        assert spec["decryption"] == {"provider": "sops", "secretRef": {"name": "sops-age"}}


def test_ci_infrastructure_is_production_with_one_postgres_instance_and_the_e2e_network() -> None:
    """Only two changes: one Postgres instance, and Kestra's global plugin defaults pointing
    the flow's Python task at the e2e services (tests/kestra/test_plugins.py models how
    Kestra merges them into the unchanged flow)."""

    def key(o: dict[str, Any]) -> tuple[str, str]:
        return o["kind"], o["metadata"]["name"]

    prod = {key(o): o for o in render("k8s/infrastructure/production")}
    ci = {key(o): o for o in render("k8s/infrastructure/ci")}
    assert ci.keys() == prod.keys()
    differ = [k for k in prod if prod[k] != ci[k]]
    assert sorted(differ) == [("Cluster", "kestra-db"), ("HelmRelease", "kestra")]
    assert ci[("Cluster", "kestra-db")]["spec"]["instances"] == 1
    release = copy.deepcopy(ci[("HelmRelease", "kestra")])
    plugins = release["spec"]["values"]["configurations"]["application"]["kestra"]["plugins"]
    (default,) = plugins.pop("defaults")
    assert release == prod[("HelmRelease", "kestra")]
    assert default["type"] == "io.kestra.plugin.scripts.python.Commands"
    assert not default.get("forced"), "the flow's own env must win"
    assert set(default["values"]) == {"env"}


def test_oci_source_is_where_the_job_pushes_it() -> None:
    (repo,) = [o for o in render(CI_CLUSTER) if o["kind"] == "OCIRepository"]
    url = urlparse(repo["spec"]["url"])
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["kind"]["steps"]
    (kind,) = [s for s in steps if s.get("uses", "").startswith("helm/kind-action@")]
    assert kind["with"]["registry"] is True
    # helm/kind-action registry.sh: container `kind-registry`, port 5000 by default.
    name = kind["with"].get("registry_name", "kind-registry")
    port = str(kind["with"].get("registry_port", 5000))
    assert url.scheme == "oci" and url.netloc == f"{name}:{port}"
    assert repo["spec"]["insecure"] is True, "the job's registry speaks plain HTTP"
    assert script_value("push-source.sh", "registry") == f"localhost:{port}"
    assert url.path.lstrip("/") == script_value("push-source.sh", "repository")
    assert repo["spec"]["ref"] == {"tag": script_value("push-source.sh", "tag")}


def test_wait_script_waits_for_the_deployed_names() -> None:
    text = (E2E / "wait-ready.sh").read_text()
    listed = re.search(r"^kustomizations=\(([^)]*)\)", text, re.M)
    assert listed and set(listed.group(1).split()) == set(PRODUCTION)
    order = listed.group(1).split()
    for name in order:
        for dep in ci_kustomizations()[name]["spec"].get("dependsOn", []):
            assert order.index(dep["name"]) < order.index(name), "waits in dependency order"
    jobs = [o for o in render("k8s/apps/production") if o["kind"] == "Job"]
    assert [(j["metadata"]["name"], j["metadata"].get("namespace")) for j in jobs] == [
        (script_value("wait-ready.sh", "sync_job"), "kestra")
    ]


def test_flux_version_has_one_value() -> None:
    ci = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    e2e = yaml.safe_load(WORKFLOW.read_text())
    assert e2e["env"]["FLUX_VERSION"] == ci["env"]["FLUX_VERSION"]
    (action,) = [
        s for s in e2e["jobs"]["kind"]["steps"] if "fluxcd/flux2/action" in s.get("uses", "")
    ]
    assert action["uses"].endswith(f"@v{e2e['env']['FLUX_VERSION']}")
    assert action["with"]["version"] == "${{ env.FLUX_VERSION }}"


# --- the source the job pushes ---------------------------------------------------------------


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """tools/e2e/make-source.sh as the job runs it (on the committed tree, HEAD)."""
    sops = sops_binary()
    tool("python (ops lane)", OPS_PYTHON)
    tmp = tmp_path_factory.mktemp("e2e-source")
    tree, identity = tmp / "source", tmp / "age.agekey"
    out = subprocess.run(
        [E2E / "make-source.sh", tree, identity],
        capture_output=True,
        text=True,
        env={**os.environ, "SOPS": sops},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "CHANGE_ME" not in out.stdout + out.stderr
    yield {"tree": tree, "identity": identity, "sops": Path(sops)}
    shutil.rmtree(tmp)  # the private key does not outlive the tests


def test_pushed_source_has_only_committed_files_and_encrypted_secrets(
    source: dict[str, Path],
) -> None:
    tree = source["tree"]
    assert not any(p.name.startswith(".venv") for p in tree.iterdir())
    assert oct(source["identity"].stat().st_mode & 0o777) == "0o600"
    recipient = source["identity"].read_text().splitlines()[1].removeprefix("# public key: ")
    secrets = sorted((tree / "k8s" / "infrastructure" / "production").glob("*.sops.yaml"))
    assert len(secrets) == 2
    for file in secrets:
        doc = yaml.safe_load(file.read_text())
        assert all(SOPS_VALUE.match(v) for v in doc["stringData"].values()), file.name
        assert doc["sops"]["age"][0]["recipient"] == recipient
        decrypted = subprocess.run(
            [source["sops"], "--decrypt", file],
            capture_output=True,
            text=True,
            env={**os.environ, "SOPS_AGE_KEY_FILE": str(source["identity"])},
        )
        assert decrypted.returncode == 0, decrypted.stderr
        values = yaml.safe_load(decrypted.stdout)["stringData"].values()
        assert values and not set(values) & {"CHANGE_ME", "Q0hBTkdFX01F"}, file.name


def test_pushed_source_renders_every_ci_path(source: dict[str, Path]) -> None:
    tree = source["tree"]
    for name, ks in ci_kustomizations().items():
        out = subprocess.run(
            [
                tool("kubectl"),
                "kustomize",
                "--load-restrictor",
                "LoadRestrictionsNone",
                str(tree / ks["spec"]["path"].removeprefix("./")),
            ],
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, f"{name}: {out.stderr}"


# --- the API check against a stand-in Kestra -------------------------------------------------


class FakeKestra:
    """Answers the Kestra 1.3 API paths check_kestra.py uses (see its docstring for the
    controllers): flows by namespace and id, file search and content, executions."""

    def __init__(self, user: str, password: str) -> None:
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.flows: dict[str, dict[str, dict[str, Any]]] = {}
        self.files: dict[str, dict[str, bytes]] = {}
        self.executions: dict[str, dict[str, Any]] = {}
        self.posted: list[tuple[str, str, bytes, str | None]] = []
        # The states an execution shows on successive GETs (the last one stays).
        self.states = ["RUNNING", "SUCCESS"]
        self.logs = [{"taskId": "load", "level": "INFO", "message": "players loaded: 3"}]
        self.polls = 0

    def handle(self, method: str, url: str, body: bytes, ctype: str | None) -> tuple[int, Any]:
        parsed = urlparse(url)
        parts = [unquote(p) for p in parsed.path.split("/")[1:]]
        query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
        if parts[:3] != ["api", "v1", "main"]:
            return 404, {"message": "not found"}
        rest = parts[3:]
        if method == "GET" and rest[0] == "flows" and len(rest) == 2:
            return 200, list(self.flows.get(rest[1], {}).values())
        if method == "GET" and rest[0] == "flows" and len(rest) == 3:
            flow = self.flows.get(rest[1], {}).get(rest[2])
            return (200, flow) if flow else (404, {"message": "flow not found"})
        if method == "GET" and rest[0] == "namespaces" and rest[2:] == ["files", "search"]:
            return 200, [p.lstrip("/") for p in self.files.get(rest[1], {})]
        if method == "GET" and rest[0] == "namespaces" and rest[2:] == ["files"]:
            content = self.files.get(rest[1], {}).get(query["path"])
            return (200, content) if content is not None else (404, {"message": "no file"})
        if method == "POST" and rest[0] == "executions" and len(rest) == 3:
            if rest[2] not in self.flows.get(rest[1], {}):
                return 404, {"message": "flow not found"}
            self.posted.append((rest[1], rest[2], body, ctype))
            execution = {"id": f"ex{len(self.posted)}", "state": {"current": "CREATED"}}
            self.executions[execution["id"]] = execution
            return 200, execution
        if method == "GET" and rest[0] == "executions" and len(rest) == 2:
            state = self.states[min(self.polls, len(self.states) - 1)]
            self.polls += 1
            tasks = [{"taskId": "load", "state": {"current": state}}]
            return 200, {
                **self.executions[rest[1]],
                "state": {"current": state},
                "taskRunList": tasks,
            }
        if method == "GET" and rest[0] == "logs" and len(rest) == 2:
            assert query.get("minLevel") == "INFO"
            return (200, self.logs) if rest[1] in self.executions else (404, {"message": "no"})
        return 404, {"message": "not found"}


@pytest.fixture
def kestra() -> Iterator[tuple[FakeKestra, str]]:
    fake = FakeKestra("ci@example.com", "Ci-secret-9a")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def answer(self, method: str) -> None:
            if self.headers.get("Authorization") != fake.auth:
                self.send_response(401)
                self.end_headers()
                return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, payload = fake.handle(method, self.path, body, self.headers["Content-Type"])
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self.answer("GET")

        def do_POST(self) -> None:
            self.answer("POST")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def plan() -> dict[str, Any]:
    tool("python", PYTHON)
    out = subprocess.run(
        [PYTHON, ROOT / "tools" / "manifests.py", "plan"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def deploy_as_git_says(fake: FakeKestra, the_plan: dict[str, Any]) -> None:
    """What a good sync leaves in Kestra: each planned flow (parsed from its file, as the
    API returns it) and each planned namespace file with git's content."""
    flows = {}
    for file in (ROOT / "pipelines").glob("*.yml"):
        flow = yaml.safe_load(file.read_text())
        flows[(flow["namespace"], flow["id"])] = flow
    for ns, wanted in the_plan["namespaces"].items():
        fake.flows[ns] = {fid: {**flows[(ns, fid)], "revision": 1} for fid in wanted["flows"]}
        fake.files[ns] = {
            p: (ROOT / "pipelines" / "dlt" / p.lstrip("/")).read_bytes() for p in wanted["files"]
        }


def run_check(
    url: str,
    the_plan: dict[str, Any],
    tmp_path: Path,
    password: str = "Ci-secret-9a",
    extra: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(the_plan))
    env = {
        **os.environ,
        "KESTRA_USER": "ci@example.com",
        "KESTRA_PASSWORD": password,
        "KESTRA_START_TIMEOUT": "4",
        "KESTRA_RUN_TIMEOUT": "4",
        "KESTRA_POLL_S": "0.2",
    }
    return subprocess.run(
        [PYTHON, CHECK, url, plan_file, ROOT / "pipelines" / "dlt", *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_check_passes_when_kestra_holds_git_and_posts_the_schedule_inputs(
    kestra: tuple[FakeKestra, str], tmp_path: Path
) -> None:
    fake, url = kestra
    the_plan = plan()
    deploy_as_git_says(fake, the_plan)
    out = run_check(url, the_plan, tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    scheduled = [
        (ns, fid)
        for ns, wanted in the_plan["namespaces"].items()
        for fid in wanted["flows"]
        if any(t["type"].endswith("trigger.Schedule") for t in fake.flows[ns][fid]["triggers"])
    ]
    # every scheduled flow is started; the alerting flow (a Flow trigger only) is not
    assert scheduled and [(ns, fid) for ns, fid, _, _ in fake.posted] == scheduled
    assert ("system", "alert-pipeline-failures") not in [p[:2] for p in fake.posted]
    ns, fid, body, ctype = fake.posted[0]
    schedule = next(
        t for t in fake.flows[ns][fid]["triggers"] if t["type"].endswith("trigger.Schedule")
    )
    for name, value in schedule.get("inputs", {}).items():
        assert f'name="{name}"\r\n\r\n{json.dumps(value)}'.encode() in body
        assert ctype and ctype.startswith("multipart/form-data; boundary=")
    assert "Ci-secret-9a" not in out.stdout + out.stderr


def first_namespace(the_plan: dict[str, Any]) -> str:
    return next(iter(the_plan["namespaces"]))


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (
            lambda f, ns: f.files[ns].pop("/chess_com/client.py"),
            "only in git ['/chess_com/client.py']",
        ),
        (lambda f, ns: f.files[ns].update({"/old.py": b"x"}), "only in Kestra ['/old.py']"),
        (
            lambda f, ns: f.files[ns].update({"/.dlt/config.toml": b"[old]"}),
            "/.dlt/config.toml: content differs from git",
        ),
        (
            lambda f, ns: f.flows[ns].update({"removed-flow": {"id": "removed-flow"}}),
            "!= flows in git",
        ),
        (lambda f, ns: f.flows[ns].clear(), "flows in Kestra [] != flows in git"),
        (
            lambda f, ns: setattr(f, "states", ["CREATED"]),
            "not over after 4s: CREATED, task runs {'load': 'CREATED'}",
        ),
        (
            lambda f, ns: setattr(f, "states", ["RUNNING", "RETRYING", "FAILED"]),
            "ended FAILED, task runs {'load': 'FAILED'}; last logs:\n  load INFO players loaded: 3",
        ),
        (lambda f, ns: setattr(f, "states", ["WARNING"]), "ended WARNING"),
        (lambda f, ns: setattr(f, "states", ["KILLED"]), "ended KILLED"),
    ],
    ids=[
        "missing-file",
        "extra-file",
        "stale-file",
        "extra-flow",
        "no-flow",
        "never-over",
        "failed",
        "warning",
        "killed",
    ],
)
def test_check_fails_naming_what_differs(
    kestra: tuple[FakeKestra, str], tmp_path: Path, break_it: Any, message: str
) -> None:
    fake, url = kestra
    the_plan = plan()
    deploy_as_git_says(fake, the_plan)
    break_it(fake, first_namespace(the_plan))
    out = run_check(url, the_plan, tmp_path)
    assert out.returncode == 1
    assert message in out.stderr, out.stderr


def test_check_without_run_starts_no_execution(
    kestra: tuple[FakeKestra, str], tmp_path: Path
) -> None:
    fake, url = kestra
    the_plan = plan()
    deploy_as_git_says(fake, the_plan)
    fake.states = ["FAILED"]
    out = run_check(url, the_plan, tmp_path, extra=("--no-run",))
    assert out.returncode == 0, out.stderr
    assert fake.posted == []


def test_check_fails_on_rejected_credentials(
    kestra: tuple[FakeKestra, str], tmp_path: Path
) -> None:
    fake, url = kestra
    the_plan = plan()
    deploy_as_git_says(fake, the_plan)
    out = run_check(url, the_plan, tmp_path, password="wrong-Password-1")
    assert out.returncode == 1
    assert "Kestra rejected the credentials" in out.stderr
    assert "wrong-Password-1" not in out.stdout + out.stderr


# --- what kind enforces and offline schemas do not -------------------------------------------


def admits(policy: dict[str, Any], labels: dict[str, str], namespace: str, port: int) -> bool:
    """Whether a NetworkPolicy ingress rule admits a pod (networking.k8s.io/v1
    NetworkPolicyPeer: a `podSelector` alone selects pods in the policy's own namespace;
    `matchLabels` must all be among the pod's labels)."""
    for rule in policy["spec"].get("ingress", []):
        if not any(p["port"] == port for p in rule.get("ports", [{"port": port}])):
            continue
        for peer in rule.get("from", []):
            if set(peer) == {"podSelector"} and namespace == policy["metadata"]["namespace"]:
                wanted = peer["podSelector"].get("matchLabels", {})
                if wanted.items() <= labels.items():
                    return True
    return False


def test_sync_job_is_admitted_to_kestra_api() -> None:
    """kind's CNI enforces NetworkPolicy since kind v0.24.0 (kubernetes-sigs/kind#842, PR
    #3612: kube-network-policies in kindnetd), as production CNIs do: a sync pod that the
    `kestra-api` policy does not admit never reaches Kestra, and the e2e lane would only fail
    after its timeouts."""
    (job,) = [o for o in render("k8s/apps/production") if o["kind"] == "Job"]
    labels = job["spec"]["template"]["metadata"]["labels"]
    (policy,) = [
        o
        for o in render("k8s/infrastructure/production")
        if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "kestra-api"
    ]
    assert admits(policy, labels, job["metadata"]["namespace"], 8080), (
        f"kestra-api admits {policy['spec']['ingress']}, the sync pod has labels {labels}"
    )


def test_admits_models_selectors() -> None:
    policy = {
        "metadata": {"namespace": "kestra"},
        "spec": {
            "ingress": [
                {"from": [{"podSelector": {"matchLabels": {"app": "a"}}}], "ports": [{"port": 80}]}
            ]
        },
    }
    assert admits(policy, {"app": "a", "x": "y"}, "kestra", 80)
    assert not admits(policy, {"app": "b"}, "kestra", 80)
    assert not admits(policy, {"app": "a"}, "other", 80)
    assert not admits(policy, {"app": "a"}, "kestra", 8080)
