"""A model of the Kestra 1.3 API the sync Job talks to, served over HTTP on loopback.

Modelled on Kestra 1.3's own code (binhth-vuejx/kestra-1.3.25; the same files in
Mattlk13/kestra at the 1.3 branch point), not on its documentation:

- webserver/.../services/BasicAuthService.java: at start-up (`init`) the configured pair is
  stored only if `save` accepts it (EMAIL_PATTERN, PASSWORD_PATTERN, 256 chars); otherwise the
  errors are stored under `kestra.server.authentication-configuration-error` and the pair
  stored before (none on a first start) stays. A blank pair is skipped. `isAuthenticated`:
  Basic header, base64 (java.util.Base64), split at the first `:`.
- webserver/.../filter/AuthenticationFilter.java: every `/api/v1/**` call needs that pair,
  except `/api/v1/configs`, and `/api/v1/basicAuthValidationErrors` and
  `/api/v1/{tenant}/basicAuth` while no pair is stored; otherwise 401.
- webserver/.../controllers/api/NamespaceFileController.java: search (`all(q)`), content,
  create (a part whose file name ends in `.zip` is unpacked), delete (the "zombie-aware"
  walk: a parent directory with one child is deleted instead; its query has no namespace
  filter), `/_flows/` refused.
- core/.../storages/InternalNamespace.java: `putFile` (revision = last revision + 1, even
  over a deleted one; a new storage object each time; parents created by `mkDirs`),
  `delete` (soft: the file's and its children's last rows marked deleted, objects kept),
  `all`, `children`.
- jdbc/.../AbstractJdbcNamespaceFileMetadataRepository.java `save`: the previous last row
  becomes `last=false`, directories stay at version 1, a delete marks the last row deleted
  without a new version. core/.../storages/NamespaceFile.java: the object of revision 1 is
  `path`, of revision N `path.vN`.
- webserver/.../controllers/api/FlowController.java `updateFlowsInNamespace` /
  `bulkUpdateOrCreate`: flows of another namespace and duplicate ids are refused (422);
  with `delete=true` the namespace's flows missing from the upload are deleted.

`history` records, after every call, which files each namespace holds, so a test can ask
whether the namespace was ever without a file (an execution starting then fails).
"""

from __future__ import annotations

import base64
import binascii
import json
import posixpath
import re
import threading
import unicodedata
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml

TENANT = "main"
# BasicAuthService.EMAIL_PATTERN / PASSWORD_PATTERN, used with Matcher.matches(). Java's
# `.` excludes \n \r \u0085 \u2028 \u2029 (Python's only \n): spelled out.
_DOT = "[^\n\r\u0085\u2028\u2029]"
EMAIL_PATTERN = re.compile(r"^[a-zA-Z0-9_!#$%&'*+/=?`{|}~^.-]+@[a-zA-Z0-9.-]+$")
PASSWORD_PATTERN = re.compile(
    f"(?={_DOT}{{8,}})(?={_DOT}*[a-z])(?={_DOT}*[A-Z])(?={_DOT}*[0-9]){_DOT}*"
)
EMAIL_PASSWORD_MAX_LEN = 256
INVALID_USERNAME = (
    "Invalid username for Basic Authentication. Please provide a valid email address."
)
NO_USERNAME = "No user name set for Basic Authentication. Please provide a user name."
NO_PASSWORD = "No password set for Basic Authentication. Please provide a password."
INVALID_PASSWORD = (
    "Invalid password for Basic Authentication. The password must have 8 chars, one upper, "
    "one lower and one number"
)
TOO_LONG = "The length of email or password should not exceed 256 characters."
_JAVA_CONTROL_WHITESPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f"
_NON_BREAKING = "\u00a0\u2007\u202f"


def java_length(text: str) -> int:
    """String.length(): UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def java_is_whitespace(char: str) -> bool:
    """Character.isWhitespace: space separators but the non-breaking ones, and \t \n \v \f
    \r \x1c-\x1f."""
    if char in _JAVA_CONTROL_WHITESPACE:
        return True
    return unicodedata.category(char) in ("Zs", "Zl", "Zp") and char not in _NON_BREAKING


def is_blank(text: str | None) -> bool:
    """commons-lang3 StringUtils.isBlank."""
    return text is None or all(map(java_is_whitespace, text))


def save_errors(username: str | None, password: str | None) -> list[str]:
    """BasicAuthService.save's validation, in its order, with its messages."""
    errors = []
    if username is not None and not EMAIL_PATTERN.fullmatch(username):
        errors.append(INVALID_USERNAME)
    if username is None:
        errors.append(NO_USERNAME)
    if password is None:
        errors.append(NO_PASSWORD)
    if password is not None and not PASSWORD_PATTERN.fullmatch(password):
        errors.append(INVALID_PASSWORD)
    if (username is not None and java_length(username) > EMAIL_PASSWORD_MAX_LEN) or (
        password is not None and java_length(password) > EMAIL_PASSWORD_MAX_LEN
    ):
        errors.append(TOO_LONG)
    return errors


# --- namespace files -------------------------------------------------------------------------


def parent_path(path: str) -> str | None:
    """NamespaceFileMetadata.parentPath."""
    without = path[:-1] if path.endswith("/") else path
    return without[: without.rindex("/") + 1] if "/" in without else None


def normalize(path: str) -> str:
    """NamespaceFile.normalize: leading `/`, `..` refused, java.nio Path.normalize (which
    also drops a trailing `/`)."""
    logical = path.replace("\\", "/")
    if not logical.startswith("/"):
        logical = "/" + logical
    if any(part == ".." for part in logical.split("/")):
        raise ValueError(
            "File should be accessed with their full path and not using relative '..' path."
        )
    normalized = posixpath.normpath(logical)
    return "/" + normalized.lstrip("/")


def storage_object(path: str, version: int) -> str:
    """NamespaceFile.of(...).storagePath(): `path` for revision 1, `path.vN` after."""
    relative = re.sub(r"^[.]*[\\|/]+", "", path, count=1)
    if relative.endswith("/") or version <= 1:
        return relative
    return f"{relative}.v{version}"


@dataclass
class Row:
    """One NamespaceFileMetadata row."""

    namespace: str
    path: str
    version: int
    size: int
    last: bool = True
    deleted: bool = False

    @property
    def parent(self) -> str | None:
        return parent_path(self.path)

    @property
    def directory(self) -> bool:
        return self.path.endswith("/")


@dataclass
class KestraModel:
    """Kestra's state: basic auth, namespace file rows and objects, flows."""

    credentials: tuple[str, str] | None = None
    auth_errors: list[str] = field(default_factory=list)
    rows: dict[tuple[str, str, int], Row] = field(default_factory=dict)
    objects: dict[tuple[str, str], bytes] = field(default_factory=dict)
    flow_sources: dict[str, dict[str, str]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    history: list[dict[str, frozenset[str]]] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)

    # -- BasicAuthService -----------------------------------------------------------------

    def start(self, username: str | None, password: str | None) -> None:
        """A (re)start of the Kestra server with this configured pair (`init`)."""
        if is_blank(username) and is_blank(password):
            return
        errors = save_errors(username, password)
        if errors:
            self.auth_errors = errors
            return
        assert username is not None and password is not None
        self.credentials = (username, password)
        self.auth_errors = []

    @property
    def initialized(self) -> bool:
        return self.credentials is not None and not any(map(is_blank, self.credentials))

    def authenticated(self, header: str | None) -> bool:
        if self.credentials is None or not header or not header.lower().startswith("basic"):
            return False
        try:
            decoded = base64.b64decode(header[len("Basic ") :], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        if ":" not in decoded:
            return False
        username, _, password = decoded.partition(":")
        return (username, password) == self.credentials

    # -- the metadata repository (JDBC) ---------------------------------------------------

    def _last(self, namespace: str, path: str) -> Row | None:
        """findByPath: the last row of `path` or `path/`, deleted or not."""
        bare = path[:-1] if path.endswith("/") and path != "/" else path
        for row in self.rows.values():
            if row.namespace == namespace and row.last and row.path in (bare, bare + "/"):
                return row
        return None

    def _save(self, namespace: str, path: str, size: int, deleted: bool = False) -> Row:
        previous = self._last(namespace, path)
        if previous is not None and deleted:
            previous.deleted = True  # previous.toDeleted(), same version
            return previous
        version = 1
        if previous is not None:
            version = 1 if previous.directory else previous.version + 1
            previous.last = False
        row = Row(namespace, path, version, size)
        self.rows[(namespace, path, version)] = row
        return row

    # -- InternalNamespace --------------------------------------------------------------------

    def _find(self, namespace: str, path: str, allow_deleted: bool = False) -> Row | None:
        row = self._last(namespace, normalize(path))
        return row if row is not None and (allow_deleted or not row.deleted) else None

    def _exists(self, namespace: str, path: str) -> bool:
        return self._find(namespace, path) is not None

    def _create_directory(self, namespace: str, path: str) -> None:
        normalized = normalize(path)
        self._save(namespace, normalized if normalized.endswith("/") else normalized + "/", 0)

    def _mk_dirs(self, namespace: str, path: str) -> None:
        parent = parent_path(path)
        while parent is not None and not self._exists(namespace, parent):
            self._create_directory(namespace, parent)
            parent = parent_path(parent)

    def put_file(self, namespace: str, path: str, content: bytes) -> None:
        """putFile with the default conflict strategy, OVERWRITE."""
        normalized = normalize(path)
        current = self._find(namespace, normalized, allow_deleted=True)
        version = (current.version if current else 0) + 1
        self.objects[(namespace, storage_object(normalized, version))] = content
        self._mk_dirs(namespace, normalized)
        self._save(namespace, normalized, len(content))

    def _children(self, namespace: str, parent: str) -> list[Row]:
        prefix = normalize(parent)
        prefix = prefix if prefix.endswith("/") else prefix + "/"
        return [
            r
            for r in self.rows.values()
            if r.namespace == namespace
            and r.last
            and not r.deleted
            and r.parent is not None
            and r.parent.startswith(prefix)
        ]

    def delete(self, namespace: str, path: str) -> None:
        normalized = normalize(path)
        own = self._find(namespace, normalized)
        for row in [*self._children(namespace, normalized), *([own] if own else [])]:
            self._save(namespace, row.path, row.size, deleted=True)

    def all_files(self, namespace: str) -> list[str]:
        """all(null, false): live files, no directories, never `/`."""
        return sorted(
            r.path
            for r in self.rows.values()
            if r.namespace == namespace and r.last and not r.deleted and not r.directory
        )

    def content(self, namespace: str, path: str) -> bytes | None:
        row = self._find(namespace, path)
        if row is None or row.directory:
            return None
        return self.objects[(namespace, storage_object(row.path, row.version))]

    # -- NamespaceFileController --------------------------------------------------------------

    def controller_delete(self, namespace: str, path: str) -> None:
        """innerDeleteFileDirectory: climb while the parent has exactly one live child (the
        query, limited to 2 rows, filters on tenant and parent path only)."""
        target = path if path.startswith("/") else "/" + path
        parent = parent_path(target)
        while parent is not None and parent != "/":
            siblings = [
                r for r in self.rows.values() if r.last and not r.deleted and r.parent == parent
            ]
            if len(siblings[:2]) != 1:
                break
            target, parent = parent, parent_path(parent)
        self.delete(namespace, target)

    # -- FlowController -----------------------------------------------------------------------

    def update_flows(self, namespace: str, sources: list[str], delete: bool) -> list[str]:
        flows = {}
        for source in sources:
            flow = yaml.safe_load(source)
            if flow["namespace"] != namespace:
                raise ValueError(f"{flow['namespace']}.{flow['id']} - flow namespace is invalid")
            if flow["id"] in flows:
                raise ValueError("Duplicate flow id")
            flows[flow["id"]] = source
        stored = self.flow_sources.setdefault(namespace, {})
        if delete:
            for flow_id in [f for f in stored if f not in flows]:
                del stored[flow_id]
        stored.update(flows)
        return list(flows)

    # -- what Kestra holds (the twin's store interface) ---------------------------------------

    def namespaces(self) -> list[str]:
        live = {ns for ns, flows in self.flow_sources.items() if flows}
        live |= {r.namespace for r in self.rows.values() if r.last and not r.deleted}
        return sorted(live)

    def files(self, namespace: str) -> dict[str, bytes]:
        return {p: self.content(namespace, p) or b"" for p in self.all_files(namespace)}

    def flows(self, namespace: str) -> dict[str, str]:
        return dict(self.flow_sources.get(namespace, {}))

    def revisions(self, namespace: str, path: str) -> list[Row]:
        """Every row of a file (FetchVersion.ALL, deleted ones too), oldest first."""
        return sorted(
            (r for r in self.rows.values() if r.namespace == namespace and r.path == path),
            key=lambda r: r.version,
        )

    def snapshot(self) -> None:
        namespaces = {r.namespace for r in self.rows.values()}
        self.history.append({ns: frozenset(self.all_files(ns)) for ns in namespaces})

    # -- HTTP ---------------------------------------------------------------------------------

    def handle(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes | Any]:
        with self.lock:
            try:
                return self._route(method, raw_path, headers, body)
            finally:
                self.calls.append((method, raw_path))
                self.snapshot()

    def _route(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes | Any]:
        url = urllib.parse.urlsplit(raw_path)
        path = re.sub("/+", "/", url.path)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        config_endpoint = path == "/api/v1/configs" or (
            (re.fullmatch(r"/api/v1(/[^/]+)?/basicAuth", path) is not None
             or path == "/api/v1/basicAuthValidationErrors")
            and not self.initialized
        )  # fmt: skip
        open_call = config_endpoint or not path.startswith("/api/v1/")
        if not open_call and not self.authenticated(headers.get("authorization")):
            return 401, b""
        if path == "/api/v1/configs":
            return 200, {"isBasicAuthInitialized": self.initialized}
        if path == "/api/v1/basicAuthValidationErrors":
            return 200, list(self.auth_errors)
        parts = [urllib.parse.unquote(p) for p in path.split("/")[1:]]
        if parts[:3] != ["api", "v1", TENANT]:
            return 404, {"message": "not found"}
        rest = parts[3:]
        if rest[:1] == ["namespaces"] and len(rest) >= 3 and rest[2] == "files":
            return self._files(method, rest[1], rest[3:], query, headers, body)
        if rest[:1] == ["flows"] and len(rest) == 2 and method == "POST":
            sources = [
                c.decode() for name, _, c in parse_multipart(headers, body) if name == "flows"
            ]
            try:
                ids = self.update_flows(
                    rest[1], [s.strip() for s in sources], query.get("delete", "true") == "true"
                )
            except ValueError as error:
                return 422, {"message": str(error)}
            return 200, [{"id": i, "namespace": rest[1]} for i in ids]
        return 404, {"message": "not found"}

    def _files(
        self,
        method: str,
        namespace: str,
        sub: list[str],
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
    ) -> tuple[int, bytes | Any]:
        if sub == ["search"] and method == "GET":
            return 200, self.all_files(namespace)
        if sub:
            return 404, {"message": "not found"}
        path = query.get("path")
        if path is None:
            return 400, {"message": "path is required"}
        if re.fullmatch(r"/_flows(/.*)?", path):
            return 422, {"message": "Forbidden path"}
        if method == "GET":
            content = self.content(namespace, path)
            return (200, content) if content is not None else (404, {"message": "not found"})
        if method == "POST":
            for name, filename, content in parse_multipart(headers, body):
                if name != "fileContent":
                    continue
                if filename.lower().endswith(".zip"):
                    raise NotImplementedError("zip uploads are unpacked by Kestra: not modelled")
                self.put_file(namespace, path, content)
                return 200, b""
            return 400, {"message": "fileContent is required"}
        if method == "DELETE":
            self.controller_delete(namespace, path)
            return 200, b""
        return 405, {"message": "method not allowed"}


def parse_multipart(headers: dict[str, str], body: bytes) -> list[tuple[str, str, bytes]]:
    """(field name, file name, content) of each part of a multipart/form-data body."""
    head = f"Content-Type: {headers.get('content-type', '')}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    parts = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition") or ""
        parts.append((str(name), part.get_filename() or "", part.get_payload(decode=True) or b""))
    return parts


@contextmanager
def serve(model: KestraModel) -> Iterator[str]:
    """The model behind an HTTP server on loopback; yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload = model.handle(self.command, self.path, headers, body)
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            if status == 401:
                self.send_header("WWW-Authenticate", "Basic")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = do_PUT = answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
