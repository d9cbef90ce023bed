"""What the offline flow validator knows about Kestra 1.x flows.

Patterns and constraints mirror what Kestra 1.3's bean validation enforces; the type
allow-list holds the task, trigger and runner types this repository uses or is likely
to, with their properties. A type not listed here is reported as unknown to the
validator (add it here, with its properties, after checking the plugin docs).
"""

from __future__ import annotations

import re

FLOW_ID = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]*$")
NAMESPACE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
TASK_ID = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]*$")
INPUT_ID = re.compile(r"^[a-zA-Z0-9][.a-zA-Z0-9_-]*$")
# java.time.Duration.parse: PnDTnHnMn.nS (no years, months or weeks).
DURATION = re.compile(
    r"^(?P<sign>-?)P(?=\d|T\d)(?:(?P<d>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
# Pinned: a digest, or a tag carrying a full x.y.z version (`3.11` moves, `3.11.14` does not).
IMAGE_TAG_PINNED = re.compile(r"^[^\s:@]+:[^\s:@]*\d+\.\d+\.\d+[^\s:@]*$")
IMAGE_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")

FLOW_PROPERTIES = {
    "id", "namespace", "revision", "description", "labels", "inputs", "outputs",
    "variables", "tasks", "errors", "finally", "afterExecution", "triggers",
    "concurrency", "retry", "sla", "checks", "disabled", "deleted", "workerGroup",
    "pluginDefaults",
}  # fmt: skip

INPUT_TYPES = {
    "STRING", "INT", "FLOAT", "BOOL", "SELECT", "MULTISELECT", "DATETIME", "DATE",
    "TIME", "DURATION", "FILE", "JSON", "URI", "SECRET", "ARRAY", "YAML", "EMAIL",
}  # fmt: skip
INPUT_PROPERTIES = {
    "id", "type", "description", "displayName", "required", "defaults", "validator",
    "values", "expression", "allowCustomValue", "dependsOn", "min", "max", "itemType",
    "isRadio", "autoSelectFirst", "prefill", "allowedFileExtensions", "after", "before",
}  # fmt: skip

RETRY_TYPES = {
    "constant": {"interval"},
    "exponential": {"interval", "maxInterval", "delayFactor"},
    "random": {"minInterval", "maxInterval"},
}
RETRY_REQUIRED = {
    "constant": ("interval",),
    "exponential": ("interval", "maxInterval"),
    "random": ("minInterval", "maxInterval"),
}
RETRY_COMMON = {"type", "maxAttempts", "maxDuration", "warningOnRetry", "behavior"}
RETRY_DURATIONS = ("interval", "maxInterval", "minInterval", "maxDuration")
CONCURRENCY_BEHAVIORS = {"QUEUE", "CANCEL", "FAIL"}

TASK_COMMON = {
    "id", "type", "description", "retry", "timeout", "disabled", "workerGroup",
    "logLevel", "allowFailure", "allowWarning", "logToFile", "runIf",
}  # fmt: skip
SCRIPT_COMMON = TASK_COMMON | {
    "containerImage", "taskRunner", "beforeCommands", "env", "namespaceFiles",
    "inputFiles", "outputFiles", "interpreter", "failFast", "targetOS",
    "warningOnStdErr", "dependencies", "dependencyCacheEnabled", "pythonVersion",
    "packageManager",
}  # fmt: skip
TRIGGER_COMMON = {
    "id", "type", "description", "disabled", "conditions", "stopAfter", "logLevel",
    "workerGroup", "failOnTriggerError",
}  # fmt: skip

NAMESPACE_FILES = {"enabled", "include", "exclude", "ifExists", "folderPerNamespace", "namespaces"}

# type -> allowed properties. Nested task lists are validated recursively.
KNOWN_TYPES: dict[str, set[str]] = {
    "io.kestra.plugin.scripts.python.Commands": SCRIPT_COMMON | {"commands"},
    "io.kestra.plugin.scripts.python.Script": SCRIPT_COMMON | {"script"},
    "io.kestra.plugin.scripts.shell.Commands": SCRIPT_COMMON | {"commands"},
    "io.kestra.plugin.scripts.shell.Script": SCRIPT_COMMON | {"script"},
    "io.kestra.plugin.core.log.Log": TASK_COMMON | {"message", "level"},
    "io.kestra.plugin.core.debug.Return": TASK_COMMON | {"format"},
    "io.kestra.plugin.core.flow.WorkingDirectory": TASK_COMMON
    | {"tasks", "cache", "namespaceFiles", "inputFiles", "outputFiles"},
    "io.kestra.plugin.core.flow.Sequential": TASK_COMMON | {"tasks", "errors", "finally"},
    "io.kestra.plugin.core.flow.Parallel": TASK_COMMON | {"tasks", "concurrent", "errors"},
    "io.kestra.plugin.core.flow.If": TASK_COMMON | {"condition", "then", "else", "errors"},
    "io.kestra.plugin.git.Clone": TASK_COMMON
    | {"url", "branch", "tag", "depth", "directory", "username", "password",
       "privateKey", "passphrase", "cloneSubmodules", "commit"},
    "io.kestra.plugin.slack.notifications.SlackIncomingWebhook": TASK_COMMON
    | {"url", "payload", "messageText", "options"},
    "io.kestra.plugin.core.trigger.Schedule": TRIGGER_COMMON
    | {"cron", "timezone", "inputs", "withSeconds", "backfill", "lateMaximumDelay",
       "recoverMissedSchedules", "labels"},
    # core/.../plugin/core/trigger/Flow.java (+ AbstractTrigger): `states` filters first,
    # then every `conditions` entry must hold (executor/.../FlowTriggerService.java).
    "io.kestra.plugin.core.trigger.Flow": TRIGGER_COMMON
    | {"inputs", "preconditions", "states", "labels", "allowConcurrent", "logToFile"},
    "io.kestra.plugin.scripts.runner.docker.Docker": {
        "type", "config", "credentials", "volumes", "pullPolicy", "cpu", "memory",
        "networkMode", "user", "shmSize", "privileged", "deviceRequests", "entryPoint",
        "extraHosts", "host", "wait", "delete", "fileHandlingStrategy", "resume",
        "killGracePeriod", "portBindings",
    },
    "io.kestra.plugin.core.runner.Process": {"type", "version"},
}  # fmt: skip
TASK_RUNNER_TYPES = {
    "io.kestra.plugin.scripts.runner.docker.Docker",
    "io.kestra.plugin.core.runner.Process",
}
TRIGGER_TYPES = {t for t in KNOWN_TYPES if ".trigger." in t}
NESTED_TASK_KEYS = ("tasks", "then", "else", "errors", "finally")

# Old names: aliases in 1.x, removed in 2.0.
DEPRECATED_TYPES = {
    "io.kestra.core.tasks.log.Log": "io.kestra.plugin.core.log.Log",
    "io.kestra.core.tasks.debugs.Return": "io.kestra.plugin.core.debug.Return",
    "io.kestra.core.tasks.flows.WorkingDirectory": "io.kestra.plugin.core.flow.WorkingDirectory",
    "io.kestra.core.tasks.flows.Sequential": "io.kestra.plugin.core.flow.Sequential",
    "io.kestra.core.tasks.flows.Parallel": "io.kestra.plugin.core.flow.Parallel",
    "io.kestra.core.tasks.flows.If": "io.kestra.plugin.core.flow.If",
    "io.kestra.core.models.triggers.types.Schedule": "io.kestra.plugin.core.trigger.Schedule",
    "io.kestra.core.models.triggers.types.Flow": "io.kestra.plugin.core.trigger.Flow",
    "io.kestra.plugin.notifications.slack.SlackIncomingWebhook": (
        "io.kestra.plugin.slack.notifications.SlackIncomingWebhook"
    ),
}
DEPRECATED_INPUT_TYPES = {"BOOLEAN": "BOOL", "ENUM": "SELECT"}
# Removed or renamed properties: property -> advice.
DEPRECATED_PROPERTIES = {
    "runner": "use taskRunner (runner was removed)",
    "docker": "use taskRunner with io.kestra.plugin.scripts.runner.docker.Docker",
    "maxAttempt": "use maxAttempts (maxAttempt is gone in 2.0)",
    "pluginDefaults": "Kestra 2.0 drops pluginDefaults: set properties on the tasks",
    "taskDefaults": "use explicit task properties (taskDefaults was removed)",
}

CRON_FIELDS = (  # name, min, max, names
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    (
        "month",
        1,
        12,
        {m: i + 1 for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())},
    ),
    ("day of week", 0, 7, {d: i for i, d in enumerate("SUN MON TUE WED THU FRI SAT".split())}),
)
CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}

# Flow SLAs (core/.../models/flows/sla/SLA.java, MaxDurationSLA, ExecutionAssertionSLA):
# type -> the property it requires; behaviors from SLA.Behavior.
SLA_TYPES = {"MAX_DURATION": "duration", "EXECUTION_ASSERTION": "assert"}
SLA_BEHAVIORS = {"FAIL", "CANCEL", "NONE"}

# Execution states: Kestra 1.3 core/.../models/flows/State.java `State.Type`. Jackson binds
# enum names exactly (no case-insensitive feature in JacksonMapper).
STATE_TYPES = {
    "CREATED", "SUBMITTED", "RUNNING", "PAUSED", "RESTARTED", "KILLING", "SUCCESS",
    "WARNING", "FAILED", "KILLED", "CANCELLED", "QUEUED", "RETRYING", "RETRIED", "SKIPPED",
    "BREAKPOINT", "RESUBMITTED",
}  # fmt: skip
# A Flow trigger reacts to state changes: never to CREATED (trigger/Flow.java `states`).
FLOW_TRIGGER_STATES = STATE_TYPES - {"CREATED"}

# Trigger conditions (core/.../plugin/core/condition/, Kestra 1.3): type -> (properties,
# required properties, enum-valued properties -> allowed values). Every condition has
# `type` (core/.../models/conditions/Condition.java). `in`/`notIn`/`comparison` are
# Property<...> values that Kestra converts only when it evaluates the condition
# (ExecutionStatus.test: runContext.render(in).asList(State.Type.class)); a bad value then
# throws, ConditionService.valid logs it and counts the condition as false: the trigger
# silently never fires. Hence the enum checks here.
CONDITION_TYPES: dict[str, tuple[set[str], set[str], dict[str, set[str]]]] = {
    # ExecutionStatus.java: passes when the state is in `in` (if non-empty) and not in
    # `notIn` (if non-empty); both empty matches every state.
    "io.kestra.plugin.core.condition.ExecutionStatus": (
        {"type", "in", "notIn"},
        set(),
        {"in": STATE_TYPES, "notIn": STATE_TYPES},
    ),
    # ExecutionNamespace.java: `namespace` @NotNull; `comparison` EQUALS|PREFIX|SUFFIX
    # (String.equals/startsWith/endsWith), else `prefix: true` means PREFIX, else EQUALS.
    "io.kestra.plugin.core.condition.ExecutionNamespace": (
        {"type", "namespace", "comparison", "prefix"},
        {"namespace"},
        {"comparison": {"EQUALS", "PREFIX", "SUFFIX"}},
    ),
    # ExecutionFlow.java: `namespace` and `flowId` @NotNull.
    "io.kestra.plugin.core.condition.ExecutionFlow": (
        {"type", "namespace", "flowId"},
        {"namespace", "flowId"},
        {},
    ),
}
# Flow trigger `preconditions` (trigger/Flow.java Preconditions, ExecutionFilter, Filter).
PRECONDITION_PROPERTIES = {"id", "timeWindow", "resetOnSuccess", "flows", "where"}
PRECONDITION_FILTER_FIELDS = {"FLOW_ID", "NAMESPACE", "STATE", "EXPRESSION"}
PRECONDITION_FILTER_TYPES = {
    "EQUAL_TO", "NOT_EQUAL_TO", "IN", "NOT_IN", "IS_TRUE", "IS_FALSE", "IS_NULL",
    "IS_NOT_NULL", "STARTS_WITH", "ENDS_WITH", "REGEX", "CONTAINS",
}  # fmt: skip
