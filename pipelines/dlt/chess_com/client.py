"""HTTP client for the Chess.com published-data API (PubAPI).

Retries (429, 5xx, timeouts, honouring `Retry-After`) come from dlt's requests helper
and are configured with dlt's `RUNTIME__REQUEST_*` settings. This module adds what is
specific to Chess.com: a User-Agent with contact details, conditional requests with the
validators the API gave out, the meaning of 404/410, and a cap on requests in flight.

It also bounds what a misbehaving network can cost a run:
- each request's total time (`request_deadline_s`): a server trickling its body a byte at
  a time never trips the read timeout, so the body is read in pieces against a clock;
- the run's time (`run_deadline`, a `time.monotonic()` value): no request starts after it
  and one in flight is cut there (`DeadlineReached`: left for the next run, not a failure);
- an unreachable host: after `UNREACHABLE_AFTER` consecutive failed connections (refused,
  name not resolved, connect timeout), no further request is made (`Unreachable`).
Every message names its URL with credentials masked (`redact_url`).

Redirects are followed only to the same document (`same_document`): an answer from another
player's, month's or host's URL is never stored as the one requested (`Redirected`).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urljoin, urlsplit

from dlt.sources.helpers.requests import Client, RequestException, Response
from dlt.version import __version__ as dlt_version
from requests.exceptions import (
    ChunkedEncodingError,
    ConnectTimeout,
    ContentDecodingError,
    Timeout,
)
from requests.exceptions import ConnectionError as RequestsConnectionError
from urllib3.exceptions import (
    DecodeError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

from pipeline_runner.redact import redact_url

from .throttle import AdaptiveLimiter

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.chess.com/pub"
PROJECT_AGENT = "chess-pipelines/0.1"
CONTACT_RE = re.compile(r"^(mailto:)?[^@\s]+@[^@\s]+\.[^@\s]+$|^https?://[^\s]+$")
# A monthly archive of a very active player is a few MB: minutes are plenty.
DEFAULT_REQUEST_DEADLINE_S = 300.0
# Consecutive failed connections (over all requests) after which the host is given up.
UNREACHABLE_AFTER = 3
READ_CHUNK = 64 * 1024
# Redirects followed for one request (each to the same document) before giving up.
MAX_REDIRECTS = 5
DEFAULT_PORTS = {"http": 80, "https": 443}


class ChessComError(Exception):
    """A request to the Chess.com API failed; the message names the (redacted) URL."""

    def __init__(self, message: str, url: str, status: int | None = None) -> None:
        super().__init__(redact_url(message))
        self.url = redact_url(url)
        self.status = status


class PlayerNotFound(ChessComError):
    """404 on a player's document: the player does not exist."""


class MonthNotFound(ChessComError):
    """404 on a monthly archive: Chess.com has no archive for that month of that player."""


class PlayerGone(ChessComError):
    """410: no data will ever be available for this player; do not request again."""


class RequestTooSlow(ChessComError):
    """The answer took longer than the request's total time bound (`request_deadline_s`)."""


class DeadlineReached(ChessComError):
    """The run's deadline passed: the document is left for the next run (not a failure)."""


class Unreachable(ChessComError):
    """Connections to the API host keep failing: no further requests this run."""


class Redirected(ChessComError):
    """A redirect away from the requested document (another player, month, document or
    host): not followed, so another document's answer is never stored as this one."""


class ConfigurationError(ValueError):
    """A client setting is unusable; the message names the setting and its value."""


@dataclass(frozen=True)
class Fetched:
    """One answered request. `data` is None for 304 Not Modified; `url` is redacted."""

    url: str
    status: int
    data: Any
    etag: str | None
    last_modified: str | None
    nbytes: int

    @property
    def not_modified(self) -> bool:
        return self.status == 304


def check_base_url(base_url: str) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(
            f"invalid base_url {redact_url(base_url)!r}: expected http(s)://host/path "
            "(SOURCES__CHESS__BASE_URL)"
        )
    return base_url.rstrip("/")


def check_seconds(name: str, value: float | None) -> float | None:
    """A positive number of seconds, or None for no bound."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(
            f"invalid {name} {value!r}: expected a number of seconds > 0 "
            f"(SOURCES__CHESS__{name.upper()})"
        )
    return float(value)


def user_agent(contact: str | None) -> str:
    """Chess.com answers 403 to clients that give no way to contact their operator."""
    if not contact:
        return f"{PROJECT_AGENT} dlt/{dlt_version}"
    contact = contact.strip()
    if not CONTACT_RE.match(contact):
        raise ConfigurationError(
            f"invalid contact {contact!r}: expected an e-mail address or an http(s) URL "
            "(SOURCES__CHESS__CONTACT)"
        )
    return f"{PROJECT_AGENT} (contact: {contact}) dlt/{dlt_version}"


def _origin(parts: SplitResult) -> tuple[str, str, int | None]:
    try:
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:  # a port that is not a number
        port = -1
    return parts.scheme, (parts.hostname or "").lower(), port


def same_document(requested: str, target: str) -> bool:
    """Whether a redirect from `requested` to `target` names the same document: the same
    path but for the username's letter case (Chess.com usernames are case-insensitive) or a
    trailing slash, on the same host (http may become https on the default port)."""
    a, b = urlsplit(requested), urlsplit(target)
    scheme, host, port = _origin(a)
    allowed = {(scheme, host, port)}
    if (scheme, port) == ("http", 80):
        allowed.add(("https", host, 443))  # upgraded to https
    if _origin(b) not in allowed:
        return False
    if a.query != b.query:
        return False
    ours, theirs = a.path.rstrip("/").split("/"), b.path.rstrip("/").split("/")
    if len(ours) != len(theirs):
        return False
    # The username is the segment after the first "player".
    name = ours.index("player") + 1 if "player" in ours else -1
    return all(
        x == y or (i == name and x.casefold() == y.casefold())
        for i, (x, y) in enumerate(zip(ours, theirs, strict=True))
    )


def connect_failure(exc: BaseException) -> str | None:
    """Why a connection could not be made (refused, name not resolved, connect timeout),
    or None when the error came later (a reset or timeout while reading an answer)."""
    if isinstance(exc, ConnectTimeout):
        return "connect timed out"
    if not isinstance(exc, RequestsConnectionError):
        return None
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    if isinstance(reason, NameResolutionError):
        return "host name does not resolve"
    if isinstance(reason, NewConnectionError):
        return "connection refused" if "refused" in str(reason).lower() else "connection failed"
    return None


class RequestStats:
    """Thread-safe counters of every HTTP attempt, retries included.

    `by_status` counts attempts that got an answer; `errors` those that did not (by error
    type: ConnectionError, ReadTimeout, ...); `attempts` is both.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_status: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.bytes = 0

    def record(self, status: int, nbytes: int) -> None:
        with self._lock:
            self.by_status[status] += 1
            self.bytes += nbytes

    def record_error(self, kind: str) -> None:
        with self._lock:
            self.errors[kind] += 1

    @property
    def total(self) -> int:
        """Answered attempts (any status)."""
        return sum(self.by_status.values())

    @property
    def attempts(self) -> int:
        """Every attempt, answered or not."""
        return self.total + sum(self.errors.values())


class ChessComClient:
    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        contact: str | None = None,
        max_concurrency: int = 3,
        stats: RequestStats | None = None,
        *,
        request_deadline_s: float | None = DEFAULT_REQUEST_DEADLINE_S,
        run_deadline: float | None = None,
        retry: Mapping[str, Any] | None = None,
    ) -> None:
        """`retry`: keyword arguments for dlt's `Client` (e.g. `request_max_attempts`);
        without it they come from dlt's `RUNTIME__REQUEST_*` settings."""
        self.base_url = check_base_url(base_url)
        self.host = urlsplit(self.base_url).hostname or "?"
        self.user_agent = user_agent(contact)
        if not contact:
            logger.warning(
                "SOURCES__CHESS__CONTACT is not set: Chess.com may answer 403 to requests "
                "without contact details in the User-Agent"
            )
        self.limiter = AdaptiveLimiter(max_concurrency)
        self.stats = stats if stats is not None else RequestStats()
        self.request_deadline_s = check_seconds("request_deadline_s", request_deadline_s)
        self.run_deadline = run_deadline
        self.unreachable: Unreachable | None = None
        self._connect_failures = 0
        self._lock = threading.Lock()
        # The deadline of the request this thread is making, for the hook and retry check.
        self._local = threading.local()
        # raise_for_status=False: 304, 404 and 410 are answers, not failures. Errors
        # without an answer are retried by `_retry_error`, which can tell a host that
        # refuses connections (give up soon) from a dropped or slow answer (retry).
        http = Client(
            raise_for_status=False,
            exceptions=(),
            retry_condition=self._retry_error,
            **dict(retry or {}),
        )
        if retry is None:
            http.configure()  # RUNTIME__REQUEST_TIMEOUT, _MAX_ATTEMPTS, _BACKOFF_FACTOR, ...
        self._http = http

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def deadline_passed(self) -> bool:
        return self.run_deadline is not None and time.monotonic() >= self.run_deadline

    # -- per attempt ----------------------------------------------------------------
    def _observe(self, response: Response, *args: Any, **kwargs: Any) -> None:
        # Runs for every answered attempt, including the 429s that dlt's retry swallows,
        # before requests reads the body: read it here, against the request's deadline.
        with self._lock:
            self._connect_failures = 0
        body = self._read_body(response)
        self.stats.record(response.status_code, len(body))
        if response.status_code == 429:
            self.limiter.on_throttled()

    def _read_body(self, response: Response) -> bytes:
        deadline, cut_by_run = getattr(self._local, "deadline", (None, False))
        raw = response.raw
        chunks: list[bytes] = []
        try:
            while True:
                if self.deadline_passed():  # also a run deadline moved to now by a stop
                    raise self._cut(response.url, True)
                if deadline is not None and time.monotonic() >= deadline:
                    raise self._cut(response.url, cut_by_run)
                # read1 returns what has arrived: a trickle is seen byte by byte.
                chunk = raw.read1(READ_CHUNK, decode_content=True)
                if not chunk:
                    break
                chunks.append(chunk)
        except BaseException as exc:
            raw.close()  # a half-read connection must not go back to the pool
            # Translated as requests' own body reading does, so dlt's retry sees them.
            if isinstance(exc, ProtocolError):
                raise ChunkedEncodingError(exc) from exc
            if isinstance(exc, DecodeError):
                raise ContentDecodingError(exc) from exc
            if isinstance(exc, ReadTimeoutError):
                raise RequestsConnectionError(exc) from exc
            raise
        raw.release_conn()
        body = b"".join(chunks)
        response._content = body
        response._content_consumed = True
        return body

    def _cut(self, url: str, by_run: bool) -> ChessComError:
        if by_run:
            return DeadlineReached(
                f"run deadline reached while reading {url}: left for the next run", url
            )
        return RequestTooSlow(
            f"{url} took longer than {self.request_deadline_s:g} s "
            "(SOURCES__CHESS__REQUEST_DEADLINE_S): cut off",
            url,
        )

    def _retry_error(self, response: Response | None, exc: BaseException | None) -> bool:
        """dlt's retry predicate for attempts that raised (answers are retried on status)."""
        if exc is None or isinstance(exc, ChessComError):
            return False  # a status is judged by dlt's rule; our own cut is final
        self.stats.record_error(type(exc).__name__)
        reason = connect_failure(exc)
        if reason is not None:
            with self._lock:
                self._connect_failures += 1
                if self._connect_failures >= UNREACHABLE_AFTER and self.unreachable is None:
                    self.unreachable = Unreachable(
                        f"{self.host} is unreachable: {reason} "
                        f"({self._connect_failures} attempts in a row); "
                        "no further requests this run",
                        self.base_url,
                    )
                if self.unreachable is not None:
                    return False
        elif not isinstance(exc, (RequestsConnectionError, Timeout, ChunkedEncodingError)):
            return False
        deadline, _ = getattr(self._local, "deadline", (None, False))
        if self.deadline_passed():  # the run's deadline, or a stop (SIGTERM/SIGINT)
            return False
        return deadline is None or time.monotonic() < deadline

    # -- per request ----------------------------------------------------------------
    def _request_deadline(self) -> tuple[float | None, bool]:
        """Absolute deadline of a request starting now, and whether it is the run's."""
        now = time.monotonic()
        own = now + self.request_deadline_s if self.request_deadline_s else None
        if self.run_deadline is not None and (own is None or self.run_deadline < own):
            return self.run_deadline, True
        return own, False

    def get(self, path: str, etag: str | None = None, last_modified: str | None = None) -> Fetched:
        """GET `path`, conditionally when validators from an earlier answer are given."""
        url = self.url(path)
        shown = redact_url(url)
        if self.unreachable is not None:
            raise Unreachable(str(self.unreachable), url)
        if self.deadline_passed():
            raise DeadlineReached(f"run deadline reached: {shown} left for the next run", url)
        headers = {"User-Agent": self.user_agent, "Accept": "application/json"}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            # Chess.com's Last-Modified is not RFC 7231; it only matches when echoed verbatim.
            headers["If-Modified-Since"] = last_modified
        try:
            with self.limiter:
                self._local.deadline = self._request_deadline()
                response = self._follow(url, headers)
        except RequestException as exc:
            # Raised once dlt's retries are exhausted (timeouts, connection errors).
            if self.unreachable is not None:
                raise Unreachable(str(self.unreachable), url) from exc
            reason = connect_failure(exc)
            raise ChessComError(
                f"request to {shown} failed: {type(exc).__name__}"
                + (f" ({reason})" if reason else ""),
                url,
            ) from exc
        finally:
            self._local.deadline = (None, False)
        status = response.status_code
        if status == 410:
            raise PlayerGone(f"410 Gone: {shown}", url, status)
        if status == 403:
            raise ChessComError(
                f"403 Forbidden: {shown} (Chess.com refuses clients without contact details: "
                "set SOURCES__CHESS__CONTACT)",
                url,
                status,
            )
        if status == 304 and not (etag or last_modified):
            # Nothing was asked conditionally, so there is nothing this answer can confirm.
            raise ChessComError(
                f"304 Not Modified from {shown} to a request without validators: "
                "not a valid answer, fetched again next run",
                url,
                status,
            )
        # 404 is an answer whose meaning depends on the endpoint (see `_document`).
        if status not in (200, 304, 404):
            raise ChessComError(f"HTTP {status} from {shown}", url, status)
        self.limiter.on_success()
        data = None
        if status == 200:
            try:
                data = response.json()
            except (json.JSONDecodeError, ValueError) as exc:
                raise ChessComError(f"malformed JSON from {shown}: {exc}", url, status) from exc
            if not isinstance(data, dict):
                # Every PubAPI endpoint answers with an object.
                raise ChessComError(
                    f"unexpected JSON from {shown}: {type(data).__name__}, not an object",
                    url,
                    status,
                )
        return Fetched(
            url=shown,
            status=status,
            data=data,
            # A 304 may omit validators; the ones sent are still current.
            etag=response.headers.get("ETag") or etag,
            last_modified=response.headers.get("Last-Modified") or last_modified,
            nbytes=len(response.content),
        )

    def _follow(self, url: str, headers: dict[str, str]) -> Response:
        """GET `url`, following redirects only to the same document (`same_document`).

        requests' own redirect handling would fetch any target and hand back its answer
        as this URL's; here each hop is one retried request (dlt retries `send`), checked
        against the URL first requested before it is made.
        """
        target = url
        for _ in range(MAX_REDIRECTS + 1):
            response = self._http.get(
                target, headers=headers, hooks={"response": self._observe}, allow_redirects=False
            )
            if not response.is_redirect:
                return response
            location = urljoin(target, response.headers["Location"])
            if not same_document(url, location):
                raise Redirected(
                    f"{redact_url(url)} redirected ({response.status_code}) to "
                    f"{redact_url(location)}, another resource: not stored, "
                    "fetched again next run",
                    url,
                    response.status_code,
                )
            target = location
        raise ChessComError(
            f"{redact_url(url)}: more than {MAX_REDIRECTS} redirects: not followed", url
        )

    def _document(
        self, path: str, missing: type[ChessComError], **validators: str | None
    ) -> Fetched:
        fetched = self.get(path, **validators)
        if fetched.status == 404:
            raise missing(f"404 Not Found: {fetched.url}", fetched.url, 404)
        return fetched

    def profile(self, player: str, **validators: str | None) -> Fetched:
        return self._document(f"player/{player}", PlayerNotFound, **validators)

    def stats_of(self, player: str, **validators: str | None) -> Fetched:
        return self._document(f"player/{player}/stats", PlayerNotFound, **validators)

    def archives(self, player: str, **validators: str | None) -> Fetched:
        return self._document(f"player/{player}/games/archives", PlayerNotFound, **validators)

    def games(self, player: str, month_path: str, **validators: str | None) -> Fetched:
        return self._document(f"player/{player}/games/{month_path}", MonthNotFound, **validators)
