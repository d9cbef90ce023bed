"""The sync Job, run the way Kubernetes runs it, against a model of Kestra's API
(tests/kestra/fake_kestra_api.py, cited there): git's flows and files land in Kestra, only
what changed is uploaded, only what left git is deleted, the namespace is never empty, and
credentials Kestra refuses are reported as what they are."""

from __future__ import annotations

import base64
import copy
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import manifests
from tests.conftest import ROOT
from tests.kestra import fake_kestra_api, twin
from tests.kestra.test_kestra_files import java

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 and not os.environ.get("CI"),
    reason="needs root to lay out volumes with the kubelet's owners and run as uid 1000",
)

SYNC = ROOT / "k8s" / "apps" / "pipelines" / "sync.py"
VALID = twin.TEST_CREDENTIALS
with_credentials = twin.with_credentials


def namespace() -> str:
    """The (first) namespace that gets pipeline code."""
    return sorted(manifests.build_plan().code_namespaces)[0]


def with_code_change(objects: list[dict[str, Any]], key: str, content: str) -> list[dict]:
    """The rendered objects after a commit that changed one file of pipelines/dlt."""
    objects = copy.deepcopy(objects)
    (code,) = [
        o
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("pipelines-code-")
    ]
    code["data"][key] = content
    return objects


@pytest.fixture
def objects(flux_objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What Flux applies, with credentials Kestra accepts (the committed ones are
    placeholders, which Kestra refuses: see the tests at the end)."""
    return with_credentials(flux_objects, *VALID)


def test_sync_uploads_every_flow_and_file_into_its_namespace(objects, shared_tmp) -> None:
    assert manifests.stale() == [], "k8s/apps/pipelines is stale: run `make manifests`"
    sync = twin.run_sync(objects, shared_tmp)
    assert sync.ok, sync.error
    store = sync.store
    plan = manifests.build_plan()
    assert store.namespaces() == plan.namespaces
    code = ROOT / "pipelines" / "dlt"
    for ns in plan.namespaces:
        expected_files = {"/" + path: (code / path).read_bytes() for path in plan.files}
        assert store.files(ns) == (expected_files if ns in plan.code_namespaces else {})
        flows = {yaml.safe_load(src)["id"]: src for src in store.flows(ns).values()}
        expected = {
            fid: (ROOT / "pipelines" / name).read_text().strip()
            for name, (n, fid) in plan.flows.items()
            if n == ns
        }
        assert flows == expected
    assert "/.dlt/config.toml" in store.files(namespace())


def test_only_namespaces_whose_flows_read_namespace_files_get_the_code(objects, shared_tmp) -> None:
    """The alerting flow's `system` namespace holds flows but no task reading namespace files:
    it gets no pipeline code, and files someone keeps there are never listed or deleted."""
    plan = manifests.build_plan()
    assert "system" in plan.namespaces and "system" not in plan.code_namespaces
    assert "chess.pipelines" in plan.code_namespaces
    assert plan.files_of("system") == [] and plan.files_of("chess.pipelines")
    store = twin.KestraStore()
    store.start(*VALID)
    store.put_file("system", "/kept.txt", b"not from git")
    sync = twin.run_sync(objects, shared_tmp, store=store)
    assert sync.ok, sync.error
    assert store.files("system") == {"/kept.txt": b"not from git"}
    assert "alert-pipeline-failures" in {
        yaml.safe_load(s)["id"] for s in store.flows("system").values()
    }
    system_file_calls = [c for c in store.calls if "/namespaces/system/files" in c[1]]
    assert system_file_calls == [], system_file_calls
    assert "sync: system: 1 flow(s); no namespace files" in sync.result.stdout


def test_sync_keeps_git_authoritative_and_deletes_softly(objects, shared_tmp) -> None:
    """A flow or a file removed from git is removed from Kestra; Kestra's delete is soft
    (InternalNamespace.delete: the row is marked deleted, the stored object stays)."""
    ns = namespace()
    store = twin.KestraStore()
    store.start(*VALID)
    store.put_file(ns, "/old_pipeline/gone.py", b"print('removed from git')")
    store.update_flows(ns, [f"id: removed-flow\nnamespace: {ns}\n"], delete=False)
    sync = twin.run_sync(objects, shared_tmp, store=store)
    assert sync.ok, sync.error
    assert "/old_pipeline/gone.py" not in store.files(ns)
    assert "removed-flow" not in store.flows(ns)
    (row,) = store.revisions(ns, "/old_pipeline/gone.py")
    assert row.deleted and (ns, "old_pipeline/gone.py") in store.objects
    assert "deleted /old_pipeline/gone.py (not in git)" in sync.result.stdout


def test_an_unchanged_sync_uploads_nothing_and_adds_no_revision(objects, shared_tmp) -> None:
    store = twin.run_sync(objects, shared_tmp / "first").store
    rows, objects_before = len(store.rows), dict(store.objects)
    again = twin.run_sync(objects, shared_tmp / "again", store=store)
    assert again.ok, again.error
    assert len(store.rows) == rows and store.objects == objects_before
    uploads = [c for c in store.calls if c[0] == "POST" and "/files?" in c[1]]
    plan = manifests.build_plan()
    assert len(uploads) == len(plan.files) * len(plan.code_namespaces), "only the first uploads"
    assert "0 uploaded" in again.result.stdout and "0 deleted" in again.result.stdout


def test_a_changed_file_gets_one_revision_and_the_namespace_never_empties(
    objects, shared_tmp
) -> None:
    ns = namespace()
    store = twin.run_sync(objects, shared_tmp / "first").store
    planned = frozenset(store.files(ns))
    store.history.clear()
    changed = with_code_change(objects, "warehouse.py", "# changed in git\n")
    sync = twin.run_sync(changed, shared_tmp / "second", store=store)
    assert sync.ok, sync.error
    assert store.files(ns)["/warehouse.py"] == b"# changed in git\n"
    revised = {p for p in planned if len(store.revisions(ns, p)) > 1}
    assert revised == {"/warehouse.py"}
    assert [r.version for r in store.revisions(ns, "/warehouse.py")] == [1, 2]
    assert (ns, "warehouse.py.v2") in store.objects  # NamespaceFile: revision N is `.vN`
    missing = [planned - snap.get(ns, frozenset()) for snap in store.history]
    assert not any(missing), f"files missing from Kestra during the sync: {missing}"


def old_cli_sync(store: twin.KestraStore, ns: str, files: dict[str, bytes]) -> None:
    """What `kestra namespace files update NS DIR / --delete` sends
    (cli/.../NamespaceFilesUpdateCommand.java): DELETE ?path=/, then one POST per file."""
    store.handle("DELETE", f"/api/v1/main/namespaces/{ns}/files?path=/", AUTH, b"")
    for path, content in files.items():
        body, ctype = multipart(content)
        headers = {**AUTH, "content-type": ctype}
        store.handle("POST", f"/api/v1/main/namespaces/{ns}/files?path={path}", headers, body)


AUTH = {"authorization": "Basic " + base64.b64encode(":".join(VALID).encode()).decode()}


def multipart(content: bytes) -> tuple[bytes, str]:
    body = (
        b'--b\r\nContent-Disposition: form-data; name="fileContent"; filename="f.py"\r\n\r\n'
        + content
        + b"\r\n--b--\r\n"
    )
    return body, "multipart/form-data; boundary=b"


def test_the_old_delete_then_upload_sync_empties_the_namespace_and_revises_every_file(
    objects, shared_tmp
) -> None:
    """The checks above fail on what the sync did before (the CLI with --delete)."""
    ns = namespace()
    store = twin.run_sync(objects, shared_tmp).store
    files = store.files(ns)
    store.history.clear()
    old_cli_sync(store, ns, files)
    assert store.files(ns) == files
    assert store.history[0].get(ns, frozenset()) == frozenset(), "a moment without files"
    assert all(len(store.revisions(ns, p)) == 2 for p in files), "a revision of every file"


def test_sync_job_reads_its_credentials_as_uid_1000(objects, shared_tmp) -> None:
    job = twin.find(objects, "Job", "pipelines-sync")
    assert job["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 1000
    # The manifest as it was before the fix: 0400 and no fsGroup.
    broken = copy.deepcopy(job)
    pod_spec = broken["spec"]["template"]["spec"]
    del pod_spec["securityContext"]["fsGroup"]
    for volume in pod_spec["volumes"]:
        if "secret" in volume:
            volume["secret"]["defaultMode"] = 0o400
    sync = twin.run_sync(objects, shared_tmp, broken)
    assert sync.result.returncode != 0
    assert "sync: cannot read Kestra's credentials in" in sync.result.stderr
    assert "as uid 1000" in sync.result.stderr
    assert sync.calls == []


# --- basic auth: Kestra's rule, as Kestra applies it ------------------------------------------


def test_kestra_keeps_other_credentials_and_the_sync_says_why(objects, shared_tmp) -> None:
    """The Secret changed but Kestra was not restarted (it reads the pair at start-up only):
    every call is 401; the sync names the cause and never prints the password."""
    store = twin.KestraStore()
    store.start("admin@example.com", "Other-Passw0rd")
    sync = twin.run_sync(objects, shared_tmp, store=store)
    assert sync.result.returncode == 1
    assert "401 Unauthorized: Kestra holds other credentials" in sync.result.stderr
    assert "reads them at start-up only" in sync.result.stderr
    assert VALID[1] not in sync.result.stdout + sync.result.stderr
    assert store.files(namespace()) == {}


def test_placeholder_credentials_are_refused_before_any_call(flux_objects, shared_tmp) -> None:
    """The committed placeholders (CHANGE_ME): Kestra stores no pair at start-up, so the sync
    reports the rule instead of retrying a 401."""
    store = twin.KestraStore()
    store.start(*twin.kestra_start_credentials(flux_objects))
    assert not store.initialized
    assert fake_kestra_api.INVALID_USERNAME in store.auth_errors
    sync = twin.run_sync(flux_objects, shared_tmp, store=store)
    assert sync.result.returncode == 2
    assert "breaks Kestra's rule" in sync.result.stderr
    assert "username is an e-mail address" in sync.result.stderr
    assert store.calls == []


def test_a_401_from_a_kestra_that_refused_its_pair_reports_kestras_own_errors(
    objects, shared_tmp
) -> None:
    """Kestra started with a pair it refused (here: placeholders) while the Secret now holds a
    valid one: its open /api/v1/basicAuthValidationErrors says why."""
    store = twin.KestraStore()
    store.start("CHANGE_ME", "CHANGE_ME")
    sync = twin.run_sync(objects, shared_tmp, store=store)
    assert sync.result.returncode == 1
    assert "Kestra refused its configured credentials at start-up" in sync.result.stderr
    assert fake_kestra_api.INVALID_PASSWORD in sync.result.stderr


def test_kestra_keeps_its_last_valid_pair_when_a_restart_brings_an_invalid_one() -> None:
    store = twin.KestraStore()
    store.start(*VALID)
    store.start("ops@example.com", "weak")
    assert store.credentials == VALID and store.auth_errors == [fake_kestra_api.INVALID_PASSWORD]
    store.start("", " ")  # blank: BasicAuthService.init returns before saving
    assert store.credentials == VALID
    store.start("new@example.com", "Rotated-Passw0rd")
    assert store.credentials == ("new@example.com", "Rotated-Passw0rd") and not store.auth_errors


CANDIDATES = [
    ("ops@example.com", "Sync-Passw0rd"), ("ops@example.com", "Short1a"),
    ("ops@example.com", "Passw0rd"), ("ops@example.com", "password1"),
    ("ops@example.com", "PASSWORD1"), ("ops@example.com", "Password"),
    ("CHANGE_ME", "CHANGE_ME"), ("ops", "Sync-Passw0rd"), ("a@b", "Aa1aaaaa"),
    ("a b@example.com", "Aa1aaaaa"), ("ops@exa_mple.com", "Aa1aaaaa"),
    ("ops@example.com\n", "Aa1aaaaa"), ("ops@example.com", "Aa1aaaaa\n"),
    ("ops@example.com", "Aa1aa\raaa"), ("ops@example.com", "Aa1aa\u2028aaa"),
    ("ops@example.com", "Aa1aa\u0085aaa"), ("ops@example.com", "Éé1aaaaa"),
    ("ops@example.com", "Aa1" + "\U0001f600" * 3), ("ops@example.com", "Aa1" + "x" * 253),
    ("ops@example.com", "Aa1" + "x" * 254), ("ops@example.com", "Aa1" + "\U0001f600" * 127),
    ("x" * 250 + "@e.com", "Aa1aaaaa"), ("x" * 251 + "@e.com", "Aa1aaaaa"),
    ("ops@example.com", ""), ("", "Aa1aaaaa"), (None, "Aa1aaaaa"), ("ops@example.com", None),
    ("ops!#$%&'*+/=?`{|}~^.-@example.com", "Aa1aaaaa"), ("ops@example.com", "Aa1:aaaa"),
]  # fmt: skip


def encode(value: str | None) -> str:
    return "-" if value is None else base64.b64encode(value.encode()).decode()


def test_the_twin_refuses_exactly_the_credentials_kestra_refuses() -> None:
    """fake_kestra_api.save_errors against the JVM running BasicAuthService's own patterns
    and checks (tests/kestra/BasicAuthRule.java); sync.py's pre-check against both."""
    out = subprocess.run(
        [java(), str(Path(__file__).with_name("BasicAuthRule.java"))],
        input="".join(f"{encode(u)}\t{encode(p)}\n" for u, p in CANDIDATES),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    jvm = out.stdout.split("\n")[: len(CANDIDATES)]
    twin_answers = ["|".join(fake_kestra_api.save_errors(u, p)) for u, p in CANDIDATES]
    disagree = [(c, j, t) for c, j, t in zip(CANDIDATES, jvm, twin_answers, strict=True) if j != t]
    assert disagree == []
    assert "" in jvm and any("|" in j for j in jvm), "both accepted and refused pairs"
    import importlib.util

    spec = importlib.util.spec_from_file_location("sync", SYNC)  # k8s/apps/pipelines/sync.py
    assert spec and spec.loader
    sync = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sync)

    for (user, password), answer in zip(CANDIDATES, jvm, strict=True):
        if user is not None and password is not None:
            assert bool(sync.credential_problems(user, password)) == bool(answer), (user, password)
