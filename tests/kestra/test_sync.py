"""The sync Job, run the way Kubernetes runs it, uploads exactly pipelines/ into Kestra."""

from __future__ import annotations

import copy
import os
import sys

import pytest
import yaml

from tests.conftest import ROOT
from tests.kestra import twin

sys.path.insert(0, str(ROOT / "tools"))
import manifests

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 and not os.environ.get("CI"),
    reason="needs root to lay out volumes with the kubelet's owners and run as uid 1000",
)


def test_sync_uploads_every_flow_and_file_into_its_namespace(flux_objects, shared_tmp) -> None:
    assert manifests.stale() == [], "k8s/apps/pipelines is stale: run `make manifests`"
    sync = twin.run_sync(flux_objects, shared_tmp)
    assert sync.ok, sync.result.stderr + str(sync.error)
    store = sync.store
    plan = manifests.build_plan()
    assert store.namespaces() == plan.namespaces
    code = ROOT / "pipelines" / "dlt"
    for namespace in plan.namespaces:
        assert store.files(namespace) == {
            "/" + path: (code / path).read_bytes() for path in plan.files
        }
        flows = {yaml.safe_load(src)["id"]: src for src in store.flows(namespace).values()}
        expected = {
            fid: (ROOT / "pipelines" / name).read_text().strip()
            for name, (ns, fid) in plan.flows.items()
            if ns == namespace
        }
        assert flows == expected
    assert "/.dlt/config.toml" in store.files(plan.namespaces[0])


def test_sync_keeps_git_authoritative_with_delete(flux_objects, shared_tmp) -> None:
    """A flow or a file removed from git is removed from Kestra."""
    namespace = manifests.build_plan().namespaces[0]
    stale = shared_tmp / "kestra" / "namespaces" / namespace
    (stale / "files" / "old_pipeline").mkdir(parents=True)
    (stale / "files" / "old_pipeline" / "gone.py").write_text("print('removed from git')")
    (stale / "flows").mkdir(parents=True)
    (stale / "flows" / "removed-flow.yml").write_text(f"id: removed-flow\nnamespace: {namespace}\n")
    sync = twin.run_sync(flux_objects, shared_tmp)
    assert sync.ok, sync.result.stderr + str(sync.error)
    store = sync.store
    assert "/old_pipeline/gone.py" not in store.files(namespace)
    assert "removed-flow" not in store.flows(namespace)
    assert len(sync.calls) == 2 * len(store.namespaces())
    assert all("--delete" in call for call in sync.calls)


def test_sync_job_reads_its_credentials_as_uid_1000(flux_objects, shared_tmp) -> None:
    job = twin.find(flux_objects, "Job", "pipelines-sync")
    assert job["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 1000
    # The manifest as it was before the fix: 0400 and no fsGroup.
    broken = copy.deepcopy(job)
    pod_spec = broken["spec"]["template"]["spec"]
    del pod_spec["securityContext"]["fsGroup"]
    for volume in pod_spec["volumes"]:
        if "secret" in volume:
            volume["secret"]["defaultMode"] = 0o400
    sync = twin.run_sync(flux_objects, shared_tmp, broken)
    assert sync.result.returncode != 0
    assert "sync: cannot read Kestra's credentials in" in sync.result.stderr
    assert "as uid 1000" in sync.result.stderr
    assert sync.calls == []


def test_wrong_credentials_fail_the_sync(flux_objects, shared_tmp) -> None:
    objects = copy.deepcopy(flux_objects)
    job = twin.find(objects, "Job", "pipelines-sync")
    pod = twin.Pod.of_job(job, objects, shared_tmp / "pod")
    cli = twin.fake_cli(shared_tmp / "bin", shared_tmp / "kestra", "admin@example.com:other")
    result = pod.run({"KESTRA_CLI": str(cli)})
    assert result.returncode != 0
    assert "401 Unauthorized" in result.stderr
    assert "other" not in result.stdout + result.stderr
