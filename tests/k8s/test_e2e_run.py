"""The e2e workflow's run of the chess flow, checked offline: the runner fix for rootless
dind comes before kind, the cluster's images are pre-pulled and loaded, the e2e services
are where the CI overlay points the flow, the job's values make a key pair the emulator's
account accepts, and each helper script fails when it should.

What only GitHub Actions proves: dind starting on the runner's kernel, Kestra running the
flow in kind, the emulator and the fake API answering inside the cluster, a rotation
restarting Kestra (tools/e2e/rotate-credentials.sh). tests/kestra/test_execution.py runs
the same flow, games check included (tools/e2e/check_games.py), against the same services
on this machine.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

import check_games
import images
from tests.conftest import ROOT
from tests.fake_chesscom import FakeChessCom, World
from tests.k8s.test_manifests import render
from tests.k8s.test_sops import OPS_PYTHON

E2E = ROOT / "tools" / "e2e"
WORKFLOW = ROOT / ".github" / "workflows" / "e2e.yml"
PYTHON = ROOT / ".venv" / "bin" / "python"


def steps() -> list[dict[str, Any]]:
    return yaml.safe_load(WORKFLOW.read_text())["jobs"]["kind"]["steps"]


def step_index(needle: str) -> int:
    (index,) = [i for i, s in enumerate(steps()) if needle in s.get("run", s.get("uses", ""))]
    return index


def kestra_values() -> dict[str, Any]:
    (release,) = [o for o in render("k8s/infrastructure/production") if o["kind"] == "HelmRelease"]
    return release["spec"]["values"]


# --- 1. rootless dind on the runner's kernel ----------------------------------------------------


def test_the_runner_allows_user_namespaces_before_kind_starts() -> None:
    """Rootless dind (the chart's mode here) needs unprivileged user namespaces; kind's nodes
    share the runner's kernel, so the sysctl is set before the cluster exists."""
    assert kestra_values()["dind"]["mode"] == "rootless"
    assert step_index("tools/e2e/allow-userns.sh") < step_index("helm/kind-action@")


def fake_tools(tmp_path: Path, value: str | None, sticks: bool = True) -> dict[str, str]:
    """`sysctl` and `sudo` stand-ins: the key holds `value` (None: no such key)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    state = tmp_path / "value"
    if value is not None:
        state.write_text(value)
    (bin_dir / "sysctl").write_text(
        f"""#!/bin/sh
echo "$@" >>{tmp_path}/calls
if [ "$1" = -n ]; then
  [ -f {state} ] || {{ echo "sysctl: cannot stat $2" >&2; exit 255; }}
  cat {state}; exit 0
fi
if [ "$1" = -w ]; then
  {'echo "${2#*=}" >' + str(state) if sticks else ":"}
  echo "$2"; exit 0
fi
exit 1
"""
    )
    (bin_dir / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


@pytest.mark.parametrize(
    ("value", "sticks", "code"), [("1", True, 0), ("0", True, 0), (None, True, 0), ("1", False, 1)]
)
def test_allow_userns_sets_the_apparmor_restriction_off(
    tmp_path: Path, value: str | None, sticks: bool, code: int
) -> None:
    env = fake_tools(tmp_path, value, sticks)
    out = subprocess.run([E2E / "allow-userns.sh"], capture_output=True, text=True, env=env)
    assert out.returncode == code, out.stdout + out.stderr
    calls = (tmp_path / "calls").read_text() if (tmp_path / "calls").exists() else ""
    written = "-w kernel.apparmor_restrict_unprivileged_userns=0" in calls
    assert written == (value == "1")
    if code:
        assert "is still 1" in out.stderr


# --- 7. images: pre-pulled before kind, loaded after, none pulled from Docker Hub ---------------


def test_images_are_pulled_before_kind_and_loaded_into_it() -> None:
    assert step_index("images.sh pull") < step_index("helm/kind-action@")
    assert step_index("helm/kind-action@") < step_index("images.sh load e2e")
    assert step_index("images.sh load e2e") < step_index("tools/e2e/wait-ready.sh")
    kind = steps()[step_index("helm/kind-action@")]
    assert kind["with"]["cluster_name"] == "e2e"
    assert step_index("build-services.sh chess-e2e-services:ci") < step_index("images.sh load")


def test_image_list_is_what_the_manifests_run() -> None:
    listed = images.images()
    values = kestra_values()
    assert f"kestra/kestra:{values['image']['tag']}" in listed
    assert f"docker:{values['dind']['base']['rootless']['image']['tag']}" in listed
    (cluster,) = [o for o in render("k8s/infrastructure/production") if o["kind"] == "Cluster"]
    assert cluster["spec"]["imageName"] in listed
    (job,) = [o for o in render("k8s/apps/production") if o["kind"] == "Job"]
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] in listed
    assert images.SERVICES_IMAGE in listed


@pytest.mark.parametrize(
    ("image", "hub"),
    [
        ("kestra/kestra:v1.3.15", True), ("docker:27.5.1-dind-rootless", True), ("busybox", True),
        ("docker.io/library/busybox", False), ("ghcr.io/cloudnative-pg/postgresql:16.9", False),
        ("localhost:5000/x", False), ("kind-registry:5000/x", False),
    ],
)  # fmt: skip
def test_docker_hub_references(image: str, hub: bool) -> None:
    """docker.io spelled out is also Docker Hub, but the check only has to know that an
    unqualified reference is (the cluster's images are written unqualified)."""
    assert images.docker_hub(image) is hub


def pods(*container_images: str) -> dict[str, Any]:
    return {
        "items": [
            {
                "metadata": {"namespace": "kestra", "name": f"p{i}"},
                "spec": {"containers": [{"image": image}]},
            }
            for i, image in enumerate(container_images)
        ]
        + [
            {
                "metadata": {"namespace": "kube-system", "name": "coredns"},
                "spec": {"containers": [{"image": "registry.k8s.io/coredns/coredns:v1"}]},
            }
        ]
    }


def run_images_check(payload: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, E2E / "images.py", "check"],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_images_check_passes_when_docker_hub_images_were_preloaded() -> None:
    out = run_images_check(pods(*images.images(), "ghcr.io/cloudnative-pg/cloudnative-pg:1.27"))
    assert out.returncode == 0, out.stderr
    assert "note kestra/p" in out.stdout  # the operator's image: reported, not a failure


def test_images_check_fails_on_an_image_the_cluster_pulled_from_docker_hub() -> None:
    out = run_images_check(pods(*images.images(), "busybox:1.36"))
    assert out.returncode == 1
    assert "busybox:1.36 was pulled, not pre-loaded" in out.stderr


# --- 7. the flow's network: the e2e services --------------------------------------------------


def services() -> dict[tuple[str, str], dict[str, Any]]:
    docs = yaml.safe_load_all((E2E / "services.yaml").read_text())
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def ci_env() -> dict[str, str]:
    (release,) = [o for o in render("k8s/infrastructure/ci") if o["kind"] == "HelmRelease"]
    kestra = release["spec"]["values"]["configurations"]["application"]["kestra"]
    (default,) = kestra["plugins"]["defaults"]
    return default["values"]["env"]


def service_host(name: str) -> tuple[str, int]:
    service = services()[("Service", name)]
    (port,) = service["spec"]["ports"]
    return f"{name}.{service['metadata']['namespace']}.svc.cluster.local", port["port"]


def test_the_ci_overlay_points_the_flow_at_the_e2e_services() -> None:
    base = urlparse(ci_env()["SOURCES__CHESS__BASE_URL"])
    assert (base.hostname, base.port) == service_host("fake-chesscom") and base.path == "/pub"
    query = json.loads(ci_env()["DESTINATION__SNOWFLAKE__CREDENTIALS__QUERY"])
    assert (query["host"], query["port"]) == service_host("snowflake")
    assert query["protocol"] == "http"


@pytest.mark.parametrize("name", ["fake-chesscom", "snowflake"])
def test_each_service_selects_a_ready_checked_pod_of_the_loaded_image(name: str) -> None:
    deployment = services()[("Deployment", name)]
    service = services()[("Service", name)]
    template = deployment["spec"]["template"]
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    spec = template["spec"]
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        assert container["image"] == images.SERVICES_IMAGE
        assert container["imagePullPolicy"] == "Never", "kind-loaded, never pulled"
    (port,) = service["spec"]["ports"]
    probes = [c["readinessProbe"] for c in spec["containers"] if "readinessProbe" in c]
    assert probes == [{"tcpSocket": {"port": port["targetPort"]}, "periodSeconds": 2}]
    namespace = services()[("Namespace", "chess-e2e")]["metadata"]["name"]
    assert deployment["metadata"]["namespace"] == namespace != "kestra"


def test_the_services_get_their_inputs_from_the_deploy_script() -> None:
    script = (E2E / "deploy-services.sh").read_text()
    for configmap in ("e2e-world", "snowflake-account"):
        assert f"create configmap {configmap}" in script
    fake = services()[("Deployment", "fake-chesscom")]["spec"]["template"]["spec"]
    (env,) = fake["containers"][0]["env"]
    assert env["valueFrom"]["configMapKeyRef"] == {"name": "e2e-world", "key": "players"}
    assert "$(PLAYERS)" in fake["containers"][0]["command"]
    assert "pipelines/dlt/.dlt/config.toml" in script
    assert step_index("deploy-services.sh") < step_index("check-kestra.sh")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_relay_serves_the_fake_api_on_another_address() -> None:
    """The fake API binds loopback (tests/fake_chesscom/server.py); the relay is what the
    Service reaches."""
    world = World(seed=3)
    world.populate(["alice"], months=1, games_per_month=2)
    with FakeChessCom(world) as api:
        port = free_port()
        target = urlparse(api.base_url).port
        relay = subprocess.Popen(
            [sys.executable, E2E / "relay.py", str(port), f"127.0.0.1:{target}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert relay.stdout is not None
            assert relay.stdout.readline().startswith(f"relay 0.0.0.0:{port} -> 127.0.0.1:")
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/pub/player/alice/games/archives",
                headers={"User-Agent": "tests (ci@example.com)"},
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                assert len(json.loads(response.read())["archives"]) == 1
        finally:
            relay.terminate()
            relay.wait(timeout=30)


# --- 7. the job's values: a key pair the emulated account accepts --------------------------------


@pytest.fixture
def values(tmp_path: Path) -> tuple[Path, Path]:
    out = subprocess.run(
        [PYTHON, E2E / "e2e_values.py", tmp_path / "values", tmp_path / "account"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and out.stdout == "", out.stderr
    return tmp_path / "values", tmp_path / "account"


def test_the_job_values_are_a_key_pair_for_the_bootstraps_user(values: tuple[Path, Path]) -> None:
    from cryptography.hazmat.primitives import serialization

    value_dir, account = values
    assert oct(value_dir.stat().st_mode & 0o777) == "0o700"
    key = serialization.load_pem_private_key(
        (value_dir / "SNOWFLAKE_PRIVATE_KEY").read_bytes(),
        (value_dir / "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE").read_bytes(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert public == (account / "snowflake.pub").read_bytes()
    sql = (account / "bootstrap.sql").read_text()
    body = "".join(line for line in public.decode().splitlines() if "-----" not in line)
    assert f"RSA_PUBLIC_KEY = '{body}'" in sql and "<RSA_PUBLIC_KEY>" not in sql
    user = (value_dir / "SNOWFLAKE_USERNAME").read_text()
    assert re.search(rf"CREATE USER IF NOT EXISTS {user}\b", sql)


def test_fill_takes_the_job_values_and_keeps_kestras_encoding(
    values: tuple[Path, Path], tmp_path: Path
) -> None:
    """The PEM goes in base64 once (Kestra's SECRET_ env), as one YAML scalar; keys without a
    job value get generated test values; `-` and a file list restrict the fill."""
    value_dir, _ = values
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "k8s", tree / "k8s")
    fill = [OPS_PYTHON, E2E / "ci_secrets.py", "fill", tree]
    out = subprocess.run([*fill, value_dir], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    secrets = yaml.safe_load(
        (tree / "k8s/infrastructure/production/kestra-secrets.sops.yaml").read_text()
    )
    data = {k: base64.b64decode(v).decode() for k, v in secrets["stringData"].items()}
    for key in ("SNOWFLAKE_PRIVATE_KEY", "SNOWFLAKE_USERNAME", "SNOWFLAKE_HOST"):
        assert data[key] == (value_dir / key).read_text()
    assert data["CHESSCOM_CONTACT"] == "ci@example.com"
    again = subprocess.run(
        [*fill, "-", "kestra-basic-auth.sops.yaml"], capture_output=True, text=True
    )
    assert again.returncode != 0 and "no CHANGE_ME placeholder" in again.stderr


# --- 7. the games check ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("served", "loaded", "problems"),
    [
        ({"a", "b"}, ["a", "b"], []),
        ({"a", "b"}, ["a"], ["1 served game(s) not in Snowflake"]),
        ({"a"}, ["a", "z"], ["1 game(s) in Snowflake the fake API never served"]),
        ({"a"}, ["a", "a"], ["1 game row(s) loaded twice"]),
        (set(), [], ["the fake API served no game: nothing was checked"]),
    ],
    ids=["same", "missing", "extra", "twice", "empty"],
)
def test_games_compare(served: set[str], loaded: list[str], problems: list[str]) -> None:
    assert check_games.compare(served, loaded) == problems


def test_the_games_check_reads_every_archive_month_of_the_configured_players() -> None:
    world = World(seed=4)
    world.populate(["alice", "bob"], months=3, games_per_month=4, shared_per_month=1)
    with FakeChessCom(world) as api:
        served = check_games.served_games(api.base_url, ["alice", "bob"])
    assert served == set(world.all_games())
    assert len(served) < sum(len(world.games_in(p)) for p in ("alice", "bob")), "shared once"


# --- 5. the rotation names what the chart deploys --------------------------------------------------


def test_rotation_watches_the_charts_deployment_and_the_sync_job() -> None:
    """chart kestra 1.0.54: kestra.fullname is the release name when it contains the chart's
    name (templates/_helpers.tpl), the Deployment `<fullname>-standalone`, its pods labelled
    `app.kubernetes.io/component: standalone` (templates/deployment.yaml)."""
    script = (E2E / "rotate-credentials.sh").read_text()
    (release,) = [o for o in render("k8s/infrastructure/production") if o["kind"] == "HelmRelease"]
    name = release["spec"].get("releaseName", release["metadata"]["name"])
    assert "kestra" in name
    assert f"deployment=deployment/{name}-standalone" in script
    assert "app.kubernetes.io/component=standalone" in script
    assert "job/pipelines-sync" in script
    assert "kestra-basic-auth.sops.yaml" in script
    assert step_index("check-kestra.sh") < step_index("rotate-credentials.sh")
    assert step_index("rotate-credentials.sh") < len(steps()) - 1


def test_the_deployment_check_runs_on_the_live_deployment() -> None:
    run = steps()[step_index("check_kestra_deployment.py")]["run"]
    assert run.startswith("kubectl -n kestra get deployments -o yaml |")
    assert step_index("tools/e2e/wait-ready.sh") < step_index("check_kestra_deployment.py")
