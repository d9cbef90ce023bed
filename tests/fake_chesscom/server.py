"""A local HTTP server that behaves like the Chess.com PubAPI for tests and benchmarks.

Serves a `World` under `/pub/...` with weak ETags, Chess.com-style Last-Modified,
304 on `If-None-Match` / verbatim `If-Modified-Since`, 404 for unknown players and
malformed URLs, 410 for closed accounts, 403 without a User-Agent, and 429 when more
requests are in flight than `max_in_flight`. Optional latency per request. Counts every
request by kind and status so tests can assert what was (not) downloaded.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .world import Document, World

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
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> FakeChessCom:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

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
        try:
            if api.latency:
                time.sleep(api.latency)
            kind, status, body, headers = self._answer(over)
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
        self.wfile.write(body)
        with stats.lock:
            stats.log.append(
                RequestLog(self.path, kind, status, len(body), dict(self.headers.items()))
            )

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


def _error(code: int, message: str) -> bytes:
    return json.dumps({"code": code, "message": message}).encode()
