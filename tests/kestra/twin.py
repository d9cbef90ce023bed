"""A Kestra execution twin: what Flux applies -> what the sync Job uploads -> what a task runs.

Each step follows the runtime's own code (cited where it is modelled) or runs the real thing:

1. Render: `kubectl kustomize --load-restrictor LoadRestrictionsNone` of a Flux path, as
   kustomize-controller builds it.
2. Mount: the sync Job's volumes laid out as the kubelet does (kubernetes
   pkg/volume/util/atomic_writer.go: `..<timestamp>/` holds the files, `..data` points at
   it, each key is a symlink through `..data`; ConfigMap/Secret `defaultMode`, 0644 when
   unset; pkg/volume/volume_linux.go SetVolumeOwnership with fsGroup: group := fsGroup,
   mode |= 0440 (read-only volumes) or 0660, setgid on directories).
3. Sync: the Job's real command (python3 k8s/apps/pipelines/sync.py) runs under the pod's
   uid/gid/groups (setpriv; the kernel enforces the modes) against a model of Kestra's API
   (fake_kestra_api.py: BasicAuthService, NamespaceFileController, InternalNamespace's
   revisions and soft delete, FlowController), started with the credentials the Kestra pod
   gets from its HelmRelease (`kestra_start_credentials`).
4. Execute: a task's namespace files picked with Kestra's matching (tools/kestra_files.py),
   its env rendered with the expression subset the flows use (`inputs.*` from the execution,
   the Schedule trigger's `inputs` and declared `defaults`; `??`; `vars.*`; `flow.*`;
   `execution.id`; `secret('X')` as open-source Kestra's SecretService reads it), then its
   `beforeCommands` + `commands` run as the script plugin runs them
   (kestra script/.../AbstractExecScript.java + core/.../runners/ScriptService.java:
   interpreter `/bin/sh -c`, `set -e`, commands joined by newlines).
5. Every flow: the flows of the rendered flows ConfigMap (`rendered_flows`), each python
   Commands task run from only its picked files with `--help` appended, and, where the
   pipeline ships `tests/<package>/fake_api.py` (`twin_env()`, FAKE_API), a short load on
   DuckDB against it (`with_script_args(..., "--destination", "duckdb")`).
"""

from __future__ import annotations

import base64
import copy
import importlib.util
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import check_plugin_types
import kestra_files
import validate_flows
from tests.conftest import ROOT
from tests.kestra import fake_kestra_api


@contextmanager
def traversable_tmp(prefix: str) -> Iterator[Path]:
    """A temp dir other users can traverse (pytest's tmp_path is 0700): the sync Job runs
    as uid 1000. Removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def kustomize(path: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise RuntimeError("kubectl is required (it carries the kustomize Flux runs)")
    out = subprocess.run(
        [kubectl, "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(path)],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"kustomize build {path} failed:\n{out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for obj in objects:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise LookupError(f"no {kind} {name} in the rendered manifests")


def secret_data(secret: dict[str, Any]) -> dict[str, bytes]:
    """The API server merges `stringData` into `data` (stringData wins)."""
    data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    data.update({k: str(v).encode() for k, v in (secret.get("stringData") or {}).items()})
    return data


# --- 2. the kubelet's volumes -------------------------------------------------------------


def write_atomic_volume(target: Path, files: dict[str, bytes], mode: int) -> None:
    """AtomicWriter's layout: files in a timestamped dir, `..data` link, per-key links."""
    payload = target / "..2026_11_29_00_00_00.000000000"
    payload.mkdir(parents=True)
    for key, content in files.items():
        (payload / key).write_bytes(content)
        (payload / key).chmod(mode)
    (target / "..data").symlink_to(payload.name)
    for key in files:
        (target / key).symlink_to(f"..data/{key}")


def apply_fs_group(target: Path, fs_group: int, read_only: bool) -> None:
    """SetVolumeOwnership: chown to fsGroup and add group bits, walking the volume."""
    mask = 0o440 if read_only else 0o660
    for path in [target, *target.rglob("*")]:
        if path.is_symlink():
            continue
        st = path.stat()
        os.chown(path, st.st_uid, fs_group)
        extra = stat.S_ISGID if path.is_dir() else 0
        path.chmod(stat.S_IMODE(st.st_mode) | mask | extra)


# The sync image's PATH (python:3.11-slim-bookworm: /usr/local/bin before Debian's default):
# its `python3` is this machine's, found there (another user's pyenv or venv is not).
IMAGE_PATH = "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class Pod:
    """A Job's pod laid out on this machine: mount path -> host directory."""

    root: Path
    spec: dict[str, Any]
    mounts: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def of_job(cls, job: dict[str, Any], objects: list[dict[str, Any]], root: Path) -> Pod:
        spec = job["spec"]["template"]["spec"]
        pod = cls(root, spec)
        (container,) = spec["containers"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        fs_group = spec.get("securityContext", {}).get("fsGroup")
        for mount in container["volumeMounts"]:
            volume = volumes[mount["name"]]
            host = root / "volumes" / mount["name"]
            if "configMap" in volume:
                cm = find(objects, "ConfigMap", volume["configMap"]["name"])
                files = {k: v.encode() for k, v in (cm.get("data") or {}).items()}
                write_atomic_volume(host, files, volume["configMap"].get("defaultMode", 0o644))
                read_only = True
            elif "secret" in volume:
                secret = find(objects, "Secret", volume["secret"]["secretName"])
                write_atomic_volume(
                    host, secret_data(secret), volume["secret"].get("defaultMode", 0o644)
                )
                read_only = True
            elif "emptyDir" in volume:
                host.mkdir(parents=True)
                host.chmod(0o777)
                read_only = False
            else:
                raise NotImplementedError(f"volume type of {mount['name']}")
            # Files the kubelet writes are root's; the mount point is traversable.
            for path in [host, *host.rglob("*")]:
                if not path.is_symlink():
                    os.chown(path, 0, 0)
            host.chmod(0o755 if read_only else 0o777)
            if fs_group is not None:
                apply_fs_group(host, fs_group, read_only)
            pod.mounts[mount["mountPath"]] = host
        return pod

    def host_path(self, value: str) -> str:
        """A container path (or a value holding one at its start) on this machine."""
        for mount_path, host in sorted(self.mounts.items(), key=lambda m: -len(m[0])):
            if value == mount_path or value.startswith(mount_path + "/"):
                return str(host) + value[len(mount_path) :]
        return value

    def run(self, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """The container's command, as the pod's user, with its env and mounts mapped."""
        (container,) = self.spec["containers"]
        argv = [self.host_path(a) for a in [*container["command"], *container.get("args", [])]]
        container_env = {e["name"]: self.host_path(str(e["value"])) for e in container["env"]}
        security = self.spec.get("securityContext", {})
        uid, gid = security.get("runAsUser", 0), security.get("runAsGroup", 0)
        groups = [security["fsGroup"]] if "fsGroup" in security else []
        groups += security.get("supplementalGroups", [])
        setpriv = [
            "setpriv",
            f"--reuid={uid}",
            f"--regid={gid}",
            f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups",
        ]
        return subprocess.run(
            [*setpriv, *argv],
            env={"PATH": IMAGE_PATH, **container_env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )


# --- 3. the sync against Kestra's API ------------------------------------------------------

# Namespace files and flows as Kestra's API stored them (tenant `main`).
KestraStore = fake_kestra_api.KestraModel

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


def kestra_start_credentials(objects: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    """The `kestra.server.basic-auth` pair the Kestra pod starts with: the HelmRelease's
    configuration, its `${ENV}` placeholders resolved from the container's `extraEnv`
    (secretKeyRef into the rendered Secrets), as Micronaut resolves them at start-up."""
    values = find(objects, "HelmRelease", "kestra")["spec"]["values"]
    env = {}
    for item in values["common"].get("extraEnv", []):
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref is None:
            env[item["name"]] = item.get("value")
            continue
        try:
            data = secret_data(find(objects, "Secret", ref["name"]))
        except LookupError:
            continue  # e.g. kestra-db-app, made by CloudNativePG in the cluster
        if ref["key"] in data:
            env[item["name"]] = data[ref["key"]].decode()
    basic = values["configurations"]["application"]["kestra"]["server"]["basic-auth"]

    def resolve(value: str | None) -> str | None:
        if value is None:
            return None
        return _PLACEHOLDER.sub(lambda m: env[m.group(1)], str(value))

    return resolve(basic.get("username")), resolve(basic.get("password"))


# A pair Kestra's rule accepts (fake_kestra_api.save_errors): the committed Secret holds
# placeholders, which Kestra refuses (no pair stored, every call 401).
TEST_CREDENTIALS = ("ops@example.com", "Sync-Passw0rd")


def with_credentials(
    objects: list[dict[str, Any]], user: str, password: str
) -> list[dict[str, Any]]:
    """The rendered objects with the basic-auth Secret holding this pair (as after k8s/README.md
    step 2): Kestra starts with it, the sync Job reads it."""
    objects = copy.deepcopy(objects)
    secret = find(objects, "Secret", "kestra-basic-auth")
    secret.pop("data", None)
    secret["stringData"] = {"username": user, "password": password}
    return objects


@dataclass
class Sync:
    """One run of the sync Job: its process and what Kestra holds afterwards."""

    result: subprocess.CompletedProcess[str]
    store: KestraStore

    @property
    def ok(self) -> bool:
        return self.result.returncode == 0

    @property
    def calls(self) -> list[tuple[str, str]]:
        return self.store.calls

    @property
    def error(self) -> str:
        return self.result.stderr


def run_sync(
    objects: list[dict[str, Any]],
    root: Path,
    job: dict[str, Any] | None = None,
    store: KestraStore | None = None,
) -> Sync:
    """Run the sync Job of `objects` against Kestra's API. A new `store` is a Kestra started
    with the credentials its pod gets from `objects`; pass one to sync into a Kestra that
    already holds files (from an earlier sync) or started with other credentials."""
    job = job or find(objects, "Job", "pipelines-sync")
    if store is None:
        store = KestraStore()
        store.start(*kestra_start_credentials(objects))
    pod = Pod.of_job(job, objects, root / "pod")
    with fake_kestra_api.serve(store) as url:
        result = pod.run({"KESTRA_URL": url, "SYNC_WAIT_S": "0"})
    return Sync(result, store)


# --- 4. an execution -----------------------------------------------------------------------


class RenderError(Exception):
    """Kestra fails the task before it starts (IllegalVariableEvaluationException)."""


_LINE_BREAKS = re.compile(r"\r\n|[\n\x0b\x0c\r\x85\u2028\u2029]")  # Java's \R


def kestra_secrets(server_env: dict[str, str]) -> dict[str, str]:
    """core/.../secret/SecretService.java: env `SECRET_*`, base64 (line breaks removed),
    names upper-cased; a value that does not decode is skipped (logged, not fatal)."""
    secrets = {}
    for name, value in server_env.items():
        if not name.startswith("SECRET_"):
            continue
        text = _LINE_BREAKS.sub("", value)
        try:
            # java.util.Base64.getDecoder(): RFC 4648 alphabet, padding optional.
            decoded = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
            secrets[name.removeprefix("SECRET_").upper()] = decoded.decode()
        except ValueError:
            continue
    return secrets


def server_env_from(objects: list[dict[str, Any]], values: dict[str, str]) -> dict[str, str]:
    """The Kestra pod's env: the HelmRelease's `common.extraEnvFrom` Secrets with their prefix.

    `values` fills the Secret's keys (plain text; base64-encoded here as k8s/README.md tells
    operators to); the keys must be exactly the manifest's."""
    release = find(objects, "HelmRelease", "kestra")
    env = {}
    for source in release["spec"]["values"]["common"]["extraEnvFrom"]:
        secret = find(objects, "Secret", source["secretRef"]["name"])
        keys = set(secret_data(secret))
        if set(values) != keys:
            raise ValueError(
                f"secret values for {sorted(values)} but the manifest has {sorted(keys)}"
            )
        for key, value in values.items():
            env[source.get("prefix", "") + key] = base64.b64encode(value.encode()).decode()
    return env


@dataclass
class Execution:
    """One execution of a flow: inputs resolved, expressions rendered."""

    flow: dict[str, Any]
    secrets: dict[str, str]
    inputs: dict[str, Any]
    execution_id: str = "2Lq0dTwinExec01"

    @classmethod
    def scheduled(cls, flow: dict[str, Any], trigger_id: str, secrets: dict[str, str]) -> Execution:
        """A Schedule trigger fires: its `inputs`, then each input's `defaults`."""
        trigger = next(t for t in flow.get("triggers", []) if t["id"] == trigger_id)
        return cls.manual(flow, trigger.get("inputs") or {}, secrets)

    @classmethod
    def manual(
        cls, flow: dict[str, Any], given: dict[str, Any], secrets: dict[str, str]
    ) -> Execution:
        inputs: dict[str, Any] = {}
        for spec in flow.get("inputs", []):
            name = spec["id"]
            value = given.get(name, spec.get("defaults"))
            if value is None and spec.get("required", True):
                raise RenderError(f"Missing required input: {name}")
            validator = spec.get("validator")
            if value is not None and validator and not re.fullmatch(validator, str(value)):
                raise RenderError(f"Invalid input '{name}': does not match validator")
            if spec["type"] == "BOOL" and isinstance(value, str):
                value = value.lower() == "true"
            inputs[name] = value
        return cls(flow, secrets, inputs)

    def _lookup(self, expression: str) -> Any:
        expression = expression.strip()
        literal = re.fullmatch(r"'([^']*)'|\"([^\"]*)\"", expression)
        if literal:
            return literal.group(1) if literal.group(1) is not None else literal.group(2)
        secret = re.fullmatch(r"secret\(\s*'([^']+)'\s*\)", expression)
        if secret:
            key = secret.group(1)
            if key.upper() not in self.secrets:
                raise RenderError(f"Cannot find secret for key '{key}'.")
            return self.secrets[key.upper()]
        scopes = {
            "inputs": self.inputs,
            "vars": self.flow.get("variables", {}),
            "flow": {"id": self.flow["id"], "namespace": self.flow["namespace"]},
            "execution": {"id": self.execution_id},
        }
        dotted = re.fullmatch(r"(inputs|vars|flow|execution)\.([A-Za-z0-9_]+)", expression)
        if not dotted:
            raise NotImplementedError(f"expression outside the twin's subset: {expression!r}")
        scope = scopes[dotted.group(1)]
        if dotted.group(2) not in scope:
            raise AttributeError(expression)  # Pebble strict variables
        return scope[dotted.group(2)]

    def _evaluate(self, expression: str) -> Any:
        """`a ?? b`: NullCoalescingExpression (null or undefined left -> right)."""
        *options, last = expression.split("??")
        for option in options:
            try:
                value = self._lookup(option)
            except AttributeError:
                continue
            if value is not None:
                return value
        try:
            return self._lookup(last)
        except AttributeError:
            raise RenderError(f"Unable to find `{last.strip()}` used in the expression") from None

    def render(self, text: str) -> str:
        def one(match: re.Match[str]) -> str:
            value = self._evaluate(match.group(1))
            if value is None:
                return ""
            if isinstance(value, bool):
                return "true" if value else "false"
            return str(value)

        return re.sub(r"\{\{(.*?)\}\}", one, str(text))

    def task(self, task_id: str) -> dict[str, Any]:
        return next(t for t in self.flow["tasks"] if t["id"] == task_id)

    def task_env(self, task_id: str) -> dict[str, str]:
        return {k: self.render(v) for k, v in (self.task(task_id).get("env") or {}).items()}

    def namespace_files(self, task_id: str, stored: dict[str, bytes]) -> dict[str, bytes]:
        """Working-dir path -> content, for a task's `namespaceFiles`."""
        spec = self.task(task_id).get("namespaceFiles") or {}
        if not spec.get("enabled", True) or not spec:
            return {}
        picked = kestra_files.select(list(stored), spec.get("include"), spec.get("exclude"))
        return {kestra_files.working_dir_path(p): stored[p] for p in picked}

    def script(self, task_id: str) -> str:
        """The `/bin/sh -c` argument the script plugin builds (failFast: `set -e` first)."""
        task = self.task(task_id)
        lines = ["set -e", *task.get("beforeCommands", []), *task.get("commands", [])]
        return "\n".join(self.render(line) for line in lines)


# --- 5. plugin types and plugin configuration -----------------------------------------------

# Every plugin type the flows use -> the class that defines it (no alias: `kestra plugins
# list` prints class names only). That kestra/kestra:v1.3.15 holds each of them is checked
# against the image itself in the e2e workflow (tools/e2e/check_plugin_types.py on
# `kestra plugins list --core`, cli/.../plugins/PluginListCommand.java +
# core/.../plugins/RegisteredPlugin.java toString); offline, tests/kestra check this table
# covers every type the flows use.
PLUGIN_TYPES = {
    "io.kestra.plugin.scripts.python.Commands": (
        "kestra-io/plugin-scripts plugin-script-python/src/main/java/io/kestra/plugin/scripts/"
        "python/Commands.java"
    ),
    "io.kestra.plugin.scripts.runner.docker.Docker": (
        "kestra-io/kestra 1.3 script/src/main/java/io/kestra/plugin/scripts/runner/docker/"
        "Docker.java (no alias)"
    ),
    "io.kestra.plugin.slack.notifications.SlackIncomingWebhook": (
        "kestra-io/plugin-slack src/main/java/io/kestra/plugin/slack/notifications/"
        "SlackIncomingWebhook.java (aliases io.kestra.plugin.notifications.slack."
        "SlackIncomingWebhook, io.kestra.plugin.slack.SlackIncomingWebhook); plugin-slack 1.0.0 "
        "had it as io.kestra.plugin.slack.SlackIncomingWebhook, so the image's plugin version "
        "decides: the e2e check settles it"
    ),
    "io.kestra.plugin.core.trigger.Schedule": (
        "kestra-io/kestra 1.3 core/src/main/java/io/kestra/plugin/core/trigger/Schedule.java"
    ),
}

DOCKER_RUNNER = "io.kestra.plugin.scripts.runner.docker.Docker"
# Docker.java: VOLUME_ENABLED_CONFIG, and the deprecated application property it falls back to.
VOLUME_ENABLED = "volume-enabled"
LEGACY_VOLUME_ENABLED = ("tasks", "scripts", "docker", "volume-enabled")


def plugin_types(flow: dict[str, Any]) -> set[str]:
    """Every `type` of a mapping anywhere in a flow (the e2e check's own reading)."""
    return check_plugin_types.flow_types(flow)


def plugin_configuration(objects: list[dict[str, Any]], plugin_type: str) -> dict[str, Any]:
    """core/.../plugins/PluginConfigurations.getConfigurationByPluginType: the `values` of
    every `kestra.plugins.configurations` entry whose type equals the plugin's, ignoring case,
    merged in order (Docker has no alias to fall back to). The task runner gets its own
    (DefaultRunContext.cloneForPlugin, called by CommandsWrapper for the runner)."""
    kestra = find(objects, "HelmRelease", "kestra")["spec"]["values"]["configurations"]
    entries = kestra["application"]["kestra"].get("plugins", {}).get("configurations") or []
    merged: dict[str, Any] = {}
    for entry in entries:
        if str(entry.get("type", "")).lower() == plugin_type.lower():
            merged.update(entry.get("values") or {})
    return merged


class TaskFailure(Exception):
    """Kestra fails the task at run time (here: a ClassCastException in the runner)."""


def docker_binds(task: dict[str, Any], objects: list[dict[str, Any]]) -> list[str]:
    """The `volumes` the Docker task runner really binds (Docker.java configure()): only when
    the runner's plugin configuration, else the legacy `kestra.tasks.scripts.docker.
    volume-enabled` property, is true; otherwise they are dropped without an error. The value
    is unboxed as a Boolean: a string ("true") fails the task."""
    runner = task.get("taskRunner") or {}
    if runner.get("type") != DOCKER_RUNNER or not runner.get("volumes"):
        return []
    enabled: Any = plugin_configuration(objects, DOCKER_RUNNER).get(VOLUME_ENABLED)
    if enabled is None:
        node: Any = find(objects, "HelmRelease", "kestra")["spec"]["values"]["configurations"]
        node = node["application"].get("kestra", {})
        for key in LEGACY_VOLUME_ENABLED:
            node = node.get(key) if isinstance(node, dict) else None
        # ApplicationContext.getProperty(..., Boolean.class) converts a string.
        enabled = node.lower() == "true" if isinstance(node, str) else node
    if enabled is not None and not isinstance(enabled, bool):
        raise TaskFailure(f"{VOLUME_ENABLED}: {enabled!r} is not a boolean (ClassCastException)")
    return list(runner["volumes"]) if enabled else []


def dropped_volumes(flow: dict[str, Any], objects: list[dict[str, Any]]) -> list[str]:
    """Tasks whose Docker runner declares volumes the deployed Kestra would drop silently."""
    problems = []
    for task in [*flow.get("tasks", []), *flow.get("errors", []), *flow.get("finally", [])]:
        declared = (task.get("taskRunner") or {}).get("volumes") or []
        try:
            bound = docker_binds(task, objects)
        except TaskFailure as failure:
            problems.append(f"{flow['id']}.{task['id']}: the task fails: {failure}")
            continue
        if declared and bound != declared:
            problems.append(
                f"{flow['id']}.{task['id']}: volumes {declared} are dropped: the Kestra "
                f"HelmRelease does not set `{VOLUME_ENABLED}: true` for {DOCKER_RUNNER}"
            )
    return problems


def global_plugin_defaults(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`kestra.plugins.defaults` of the Kestra HelmRelease (PluginGlobalDefaultConfiguration)
    as rendered (overlays applied); validate_flows.apply_plugin_defaults merges them."""
    values = find(objects, "HelmRelease", "kestra")["spec"]["values"]
    kestra = values["configurations"]["application"]["kestra"]
    return list(kestra.get("plugins", {}).get("defaults") or [])


# --- 6. a script task run the way the Docker task runner runs it ----------------------------

UV_BIN = ROOT / ".venv-tools" / "bin"
# Container-only paths of the flow's image and runner, mapped onto this machine.
VENV_IN_CONTAINER = "/opt/venv"
UV_CACHE_IN_CONTAINER = "/cache/uv"
HOST_NETWORK = re.compile(r"(?i)proxy$|^ssl_cert_|ca_bundle$|^uv_index|^uv_native_tls$")


@dataclass
class TaskRun:
    result: subprocess.CompletedProcess[str]
    workdir: Path
    venv: Path
    env: dict[str, str]

    @property
    def output(self) -> str:
        return self.result.stdout + self.result.stderr


def run_task(
    execution: Execution,
    store: KestraStore,
    task_id: str,
    root: Path,
    network: dict[str, str],
) -> TaskRun:
    """What the Docker task runner does for a script task, with the container's paths mapped:
    only the namespace files the task's include picks (Execution.namespace_files) in a fresh
    working directory, the rendered env, then `/bin/sh -c` of beforeCommands + commands.
    `network` is what the container can reach (fake APIs, the emulator): it wins over the
    task's env."""
    workdir, venv, home = root / "workdir", root / "opt-venv", root / "home"
    for path in (workdir, home):
        path.mkdir(parents=True)
    for rel, content in execution.namespace_files(
        task_id, store.files(execution.flow["namespace"])
    ).items():
        (workdir / rel).parent.mkdir(parents=True, exist_ok=True)
        (workdir / rel).write_bytes(content)
    env = execution.task_env(task_id)
    uv_cache = subprocess.run(
        [str(UV_BIN / "uv"), "cache", "dir"], capture_output=True, text=True, check=True
    ).stdout.strip()
    env = {k: v.replace(UV_CACHE_IN_CONTAINER, uv_cache) for k, v in env.items()}
    script = execution.script(task_id).replace(VENV_IN_CONTAINER, str(venv))
    process_env = {
        # The image's tools: uv (the same pinned version) first, then a Python 3.11.
        "PATH": f"{UV_BIN}:{os.environ['PATH']}",
        "HOME": str(home),
        "UV_PYTHON_DOWNLOADS": "never",
        # The host's way out to PyPI (proxy, CA bundle), as the Docker daemon's would be.
        **{k: v for k, v in os.environ.items() if HOST_NETWORK.search(k)},
        # A fresh container: dlt's working directory starts empty.
        "DLT_DATA_DIR": str(root / "dlt-data"),
        **env,
        **network,
    }
    result = subprocess.run(
        ["/bin/sh", "-c", script],
        cwd=workdir,
        env=process_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return TaskRun(result, workdir, venv, process_env)


# --- 7. every deployed flow's python tasks ---------------------------------------------------

PYTHON_COMMANDS = "io.kestra.plugin.scripts.python.Commands"
# Convention: a pipeline whose source package is `pipelines/dlt/<package>/` may ship a fake of
# its API as `tests/<package>/fake_api.py` exposing `twin_env()`, a context manager that
# serves a small world and yields the env a short load needs (base URL, what to load, ...).
FAKE_API = "tests/{package}/fake_api.py"


def rendered_flows(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Flow id -> flow, from the flows ConfigMap Flux applies (what the sync Job uploads)."""
    flows: dict[str, dict[str, Any]] = {}
    for obj in objects:
        name = obj["metadata"]["name"]
        if obj["kind"] == "ConfigMap" and name.rsplit("-", 1)[0] == "pipelines-flows":
            for text in (obj.get("data") or {}).values():
                flow = yaml.safe_load(text)
                flows[flow["id"]] = flow
    return flows


def deployed_flow(store: KestraStore, flow_id: str) -> dict[str, Any]:
    for namespace in store.namespaces():
        flows = store.flows(namespace)
        if flow_id in flows:
            return yaml.safe_load(flows[flow_id])
    raise LookupError(f"{flow_id} was not deployed")


def python_tasks(flow: dict[str, Any]) -> list[str]:
    """The flow's python Commands tasks that run a script (`python x.py`, `python -m m`)."""
    return [
        task["id"]
        for task in flow.get("tasks") or []
        if task.get("type") == PYTHON_COMMANDS and validate_flows.python_runs(task.get("commands"))
    ]


def with_script_args(flow: dict[str, Any], task_id: str, *args: str) -> dict[str, Any]:
    """The flow with `args` appended to each command of the task that runs python (the last
    of a repeated flag wins in argparse: `--destination snowflake --destination duckdb`)."""
    flow = copy.deepcopy(flow)
    task = next(t for t in flow["tasks"] if t["id"] == task_id)
    runs = {run.command for run in validate_flows.python_runs(task.get("commands"))}
    task["commands"] = [
        f"{line} {' '.join(args)}" if i in runs else line
        for i, line in enumerate(task.get("commands") or [])
    ]
    return flow


def started(flow: dict[str, Any], secrets: dict[str, str]) -> Execution:
    """What the flow's Schedule trigger starts, or a manual run with the defaults."""
    schedules = [t for t in flow.get("triggers") or [] if t["type"].endswith(".Schedule")]
    if schedules:
        return Execution.scheduled(flow, schedules[0]["id"], secrets)
    return Execution.manual(flow, {}, secrets)


def script_packages(flow: dict[str, Any], task_id: str, root: Path = ROOT) -> list[str]:
    """Top-level local packages the task's script imports (validate_flows.local_imports)."""
    code_dir = root / "pipelines" / "dlt"
    task = next(t for t in flow["tasks"] if t["id"] == task_id)
    packages: set[str] = set()
    for run in validate_flows.python_runs(task.get("commands")):
        if run.script and (code_dir / run.script).is_file():
            for file in validate_flows.local_imports(code_dir / run.script):
                rel = file.relative_to(code_dir)
                if len(rel.parts) > 1:
                    packages.add(rel.parts[0])
    return sorted(packages)


def fake_api(
    flow: dict[str, Any], task_id: str, root: Path = ROOT
) -> AbstractContextManager[dict[str, str]] | None:
    """`twin_env()` of the first `tests/<package>/fake_api.py` among the packages the task's
    script imports, or None."""
    for package in script_packages(flow, task_id, root):
        path = root / FAKE_API.format(package=package)
        if path.is_file():
            spec = importlib.util.spec_from_file_location(f"tests.{package}.fake_api", path)
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module.twin_env()
    return None


# Secrets whose value must be real for a run (a key the emulator accepts, its user...): the
# caller gives them; every other key of the manifest gets a generated plain value.
def secret_values(
    real: dict[str, str], manifest: Path = validate_flows.SECRETS_MANIFEST
) -> dict[str, str]:
    names = validate_flows.deployed_secret_names(manifest) or set()
    unknown = sorted(set(real) - names)
    if unknown:
        raise ValueError(f"values for {unknown}, which the manifest {manifest} does not have")

    def generated(name: str) -> str:
        slug = name.lower().replace("_", "-")
        return f"https://{slug}.twin.example.invalid/" if name.endswith("_URL") else f"twin-{slug}"

    return {name: real.get(name, generated(name)) for name in sorted(names)}


def duckdb_rows(run: TaskRun) -> dict[str, int]:
    """Rows per `schema.table` (dlt's own `_dlt_*` tables left out) of every DuckDB file the
    run left in its working directory."""
    import duckdb

    rows: dict[str, int] = {}
    for file in sorted(run.workdir.rglob("*.duckdb")):
        with duckdb.connect(str(file), read_only=True) as con:
            tables = con.execute(
                "select table_schema, table_name from information_schema.tables "
                "where table_name not like '\\_dlt%' escape '\\'"
            ).fetchall()
            for schema, table in tables:
                (count,) = con.execute(f'select count(*) from "{schema}"."{table}"').fetchone()
                rows[f"{schema}.{table}"] = count
    return rows
