"""A local HTTP server that behaves like the Chess.com PubAPI for tests and benchmarks.

Serves a `World` under `/pub/...` with weak ETags, Chess.com-style Last-Modified,
304 on `If-None-Match` / verbatim `If-Modified-Since`, 404 for unknown players and
malformed URLs, 410 for closed accounts, 403 without a User-Agent, and 429 when more
requests are in flight than `max_in_flight`. Optional latency per request. Counts every
request by kind and status so tests can assert what was (not) downloaded.

Fault injection (see `FakeChessCom.override`): serve a raw body / status / headers for a
path, N times or always, trickle a body at B bytes/s, or answer 304 whatever validators
the client sent. `faults[path] = [500, 429]` still queues bare error statuses.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .world import Document, World, chesscom_date

ROUTES = [
    ("profile", re.compile(r"^/pub/player/([^/]+)$")),
    ("stats", re.compile(r"^/pub/player/([^/]+)/stats$")),
    ("archives", re.compile(r"^/pub/player/([^/]+)/games/archives$")),
    ("games", re.compile(r"^/pub/player/([^/]+)/games/(\d{4})/(\d{2})$")),
]


@dataclass
class RequestLog:
    path: str
    kind: str
    status: int
    nbytes: int
    headers: dict[str, str]


@dataclass
class Override:
    """A scripted answer for the paths matching `pattern` (exact, or an fnmatch glob).

    `body` None keeps the normal document (so `status`, `headers` or `trickle_bps` alone
    alter a normal answer); bytes/str are sent raw (malformed JSON is fine); anything else
    is JSON-encoded. A scripted body gets its own validators, like any Chess.com document,
    and a request echoing them gets 304 (so a client that kept the validators of a bad
    answer would never see the good one). `times` None means always; otherwise the override is used up after
    that many answers and the path is served normally again. `not_modified` answers 304
    (with the document's validators) even to a request that sent none.
    """

    pattern: str
    status: int | None = None
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    times: int | None = None
    trickle_bps: float | None = None
    not_modified: bool = False
    served: int = 0
    created: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    def matches(self, path: str) -> bool:
        return path == self.pattern or fnmatchcase(path, self.pattern)

    @property
    def used_up(self) -> bool:
        return self.times is not None and self.served >= self.times

    def encoded_body(self) -> bytes | None:
        if self.body is None:
            return None
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


@dataclass
class ServerStats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    log: list[RequestLog] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight_seen: int = 0

    def counts(self) -> Counter[tuple[str, int]]:
        with self.lock:
            return Counter((r.kind, r.status) for r in self.log)

    def by_status(self) -> Counter[int]:
        with self.lock:
            return Counter(r.status for r in self.log)

    def bytes_sent(self) -> int:
        with self.lock:
            return sum(r.nbytes for r in self.log)

    def paths(self, status: int | None = None) -> list[str]:
        with self.lock:
            return [r.path for r in self.log if status is None or r.status == status]

    def reset(self) -> None:
        with self.lock:
            self.log.clear()
            self.max_in_flight_seen = 0


class FakeChessCom:
    """Run with `with FakeChessCom(world) as api:` and point the pipeline at `api.base_url`."""

    def __init__(
        self,
        world: World,
        latency: float = 0.0,
        max_in_flight: int | None = None,
        retry_after: int | None = None,
        port: int = 0,
    ) -> None:
        self.world = world
        self.latency = latency
        self.max_in_flight = max_in_flight
        self.retry_after = retry_after
        self.stats = ServerStats()
        # path -> statuses to answer before serving normally (e.g. [429] or [500] * 10)
        self.faults: dict[str, list[int]] = {}
        # Scripted answers, first match wins (see `override`).
        self.overrides: list[Override] = []
        self.stopping = threading.Event()
        handler = type("Handler", (_Handler,), {"api": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/pub"

    def start(self) -> FakeChessCom:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()  # ends trickles in progress
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> FakeChessCom:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- fault injection ---------------------------------------------------------------
    def override(
        self,
        pattern: str,
        *,
        status: int | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        times: int | None = None,
        trickle_bps: float | None = None,
        not_modified: bool = False,
    ) -> Override:
        """Answer requests for `pattern` (a path like `/pub/player/alice/games/2024/05`, or
        a glob like `/pub/player/*/stats`) as scripted; see `Override`. Returns the rule,
        whose `served` counts the answers it gave. Later rules do not shadow earlier ones."""
        rule = Override(
            pattern,
            status=status,
            body=body,
            headers=dict(headers or {}),
            times=times,
            trickle_bps=trickle_bps,
            not_modified=not_modified,
        )
        with self.world.lock:
            self.overrides.append(rule)
        return rule

    def clear_overrides(self) -> None:
        with self.world.lock:
            self.overrides.clear()
            self.faults.clear()

    def _take_override(self, path: str) -> Override | None:
        with self.world.lock:
            for rule in self.overrides:
                if not rule.used_up and rule.matches(path):
                    rule.served += 1
                    return rule
        return None

    # -- routing ----------------------------------------------------------------------
    def resolve(self, path: str) -> tuple[str, int, Document | None, str]:
        """Return (kind, status, document, error message) for a path."""
        for kind, pattern in ROUTES:
            match = pattern.match(path)
            if not match:
                continue
            name = match.group(1).lower()
            with self.world.lock:
                if name in self.world.gone:
                    return kind, 410, None, "This account is closed."
                player = self.world.players.get(name)
                if player is None:
                    return kind, 404, None, f'User "{name}" not found.'
                if kind == "profile":
                    return kind, 200, player.profile, ""
                if kind == "stats":
                    return kind, 200, player.stats, ""
                if kind == "archives":
                    urls = [
                        f"{self.base_url}/player/{name}/games/{key}"
                        for key in sorted(player.months)
                        if player.months[key].body["games"]
                    ]
                    return kind, 200, Document({"archives": urls}, _latest(player)), ""
                month = f"{match.group(2)}/{match.group(3)}"
                if not 1 <= int(match.group(3)) <= 12:
                    return kind, 404, None, "Date is invalid."
                doc = player.months.get(month)
                return kind, 200, doc or Document({"games": []}), ""
        return "other", 404, None, "Not found."


def _latest(player: Any) -> Any:
    stamps = [d.modified for d in player.months.values()]
    return max(stamps) if stamps else player.profile.modified


class _Handler(BaseHTTPRequestHandler):
    api: FakeChessCom
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        api = self.api
        stats = api.stats
        with stats.lock:
            stats.in_flight += 1
            stats.max_in_flight_seen = max(stats.max_in_flight_seen, stats.in_flight)
            over = api.max_in_flight is not None and stats.in_flight > api.max_in_flight
        trickle: float | None = None
        try:
            if api.latency:
                time.sleep(api.latency)
            kind, status, body, headers = self._answer(over)
            rule = None if over else api._take_override(self.path.split("?", 1)[0])
            if rule is not None:
                status, body, headers = _apply(rule, self.headers, status, body, headers)
                trickle = rule.trickle_bps
        finally:
            # Leave the in-flight count before replying, so a client that sends its next
            # request as soon as it reads this reply is not counted twice.
            with stats.lock:
                stats.in_flight -= 1
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            if trickle:
                self._trickle(body, trickle)
            else:
                self.wfile.write(body)
        except OSError:  # the client gave up (e.g. its total-time bound): that is the point
            self.close_connection = True
        with stats.lock:
            stats.log.append(
                RequestLog(self.path, kind, status, len(body), dict(self.headers.items()))
            )

    def _trickle(self, body: bytes, bytes_per_second: float) -> None:
        """Send `body` a byte at a time, `bytes_per_second`, until done or the server stops."""
        pause = 1.0 / bytes_per_second
        for i in range(len(body)):
            if self.api.stopping.wait(pause):
                self.close_connection = True
                return
            self.wfile.write(body[i : i + 1])
            self.wfile.flush()

    def _answer(self, over_limit: bool) -> tuple[str, int, bytes, dict[str, str]]:
        api = self.api
        path = self.path.split("?", 1)[0]
        kind, status, doc, message = api.resolve(path)
        json_type = {"Content-Type": "application/json; charset=utf-8"}
        if not self.headers.get("User-Agent"):
            return kind, 403, _error(0, "User-Agent required"), json_type
        if over_limit:
            extra = {"Retry-After": str(api.retry_after)} if api.retry_after is not None else {}
            return kind, 429, _error(0, "Too many requests"), {**json_type, **extra}
        with api.world.lock:
            queued = api.faults.get(path)
            if queued:
                fault = queued.pop(0)
                return kind, fault, _error(0, f"injected {fault}"), json_type
            if doc is None:
                return kind, status, _error(0, message), json_type
            validators = {"ETag": doc.etag, "Last-Modified": doc.last_modified}
            cache = {"Cache-Control": "public, max-age=5"}
            if (
                self.headers.get("If-None-Match") == doc.etag
                or self.headers.get("If-Modified-Since") == doc.last_modified
            ):
                return kind, 304, b"", {**validators, **cache}
            return kind, 200, doc.encoded(), {**json_type, **validators, **cache}


def _apply(
    rule: Override, request: Any, status: int, body: bytes, headers: dict[str, str]
) -> tuple[int, bytes, dict[str, str]]:
    """The normal answer (status, body, headers) altered by an override rule."""
    if rule.not_modified:
        validators = {k: v for k, v in headers.items() if k in ("ETag", "Last-Modified")}
        return 304, b"", {**validators, **rule.headers}
    raw = rule.encoded_body()
    if raw is not None:
        body = raw
        etag = 'W/"' + hashlib.md5(raw).hexdigest() + '"'
        modified = chesscom_date(rule.created)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "ETag": etag,
            "Last-Modified": modified,
        }
        status = 200 if rule.status is None else rule.status
        if status == 200 and (
            request.get("If-None-Match") == etag or request.get("If-Modified-Since") == modified
        ):
            return 304, b"", {**headers, **rule.headers}
    if rule.status is not None:
        status = rule.status
    return status, body, {**headers, **rule.headers}


def _error(code: int, message: str) -> bytes:
    return json.dumps({"code": code, "message": message}).encode()


def http_get(base_url: str, path: str, **headers: str) -> tuple[int, bytes, dict[str, str]]:
    """GET a path of a running server (with a User-Agent): status, body, headers."""
    request = urllib.request.Request(base_url + path, headers={"User-Agent": "tests", **headers})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), dict(response.headers.items())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers.items())
