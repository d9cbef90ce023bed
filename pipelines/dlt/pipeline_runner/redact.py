"""Keep credentials that ride inside URLs out of everything a run prints or outputs.

A base URL such as `https://user:secret@proxy.example/pub` (or `...?token=secret`) is a
valid setting, and the URL reaches error messages, the summary, the summary JSON and
Kestra outputs. Everything printed goes through `redact_url` (text) or `redact` (nested
JSON-like values). No dlt import here: the source's HTTP client imports this module too.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"
# scheme://userinfo@host: greedy up to the last "@" before the path, so a password that
# itself contains "@" is masked whole.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^\s/?#]*)@")
# Query parameters whose name says they carry a secret (token=, api_key=, sig=, ...).
_SECRET_PARAM = re.compile(
    r"(?P<name>[?&;][^=&;#\s]*(?:token|key|secret|password|passwd|pwd|sig|signature|auth)"
    r"[^=&;#\s]*=)(?P<value>[^&;#\s\"']+)",
    re.IGNORECASE,
)


def redact_url(text: str) -> str:
    """`text` (a URL, or any message containing URLs) with userinfo and secret query values
    replaced by `***`: `https://u:pw@h/p?token=t` -> `https://***@h/p?token=***`."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    return _SECRET_PARAM.sub(lambda m: f"{m['name']}{MASK}", text)


def redact(value: Any) -> Any:
    """`value` with every string (keys included) inside dicts, lists and tuples redacted."""
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, dict):
        return {redact(k): redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v) for v in value)
    return value
