"""HTTP client for the Chess.com published-data API (PubAPI).

Retries (429, 5xx, timeouts, honouring `Retry-After`) come from dlt's requests helper
and are configured with dlt's `RUNTIME__REQUEST_*` settings. This module adds what is
specific to Chess.com: a User-Agent with contact details, conditional requests with the
validators the API gave out, the meaning of 404/410, and a cap on requests in flight.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from dlt.sources.helpers.requests import Client, RequestException, Response
from dlt.version import __version__ as dlt_version

from .throttle import AdaptiveLimiter

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.chess.com/pub"
PROJECT_AGENT = "chess-pipelines/0.1"
CONTACT_RE = re.compile(r"^(mailto:)?[^@\s]+@[^@\s]+\.[^@\s]+$|^https?://[^\s]+$")


class ChessComError(Exception):
    """A request to the Chess.com API failed; the message names the URL."""

    def __init__(self, message: str, url: str, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class PlayerNotFound(ChessComError):
    """404: the player does not exist (or the URL is malformed)."""


class PlayerGone(ChessComError):
    """410: no data will ever be available for this player; do not request again."""


class ConfigurationError(ValueError):
    """A client setting is unusable; the message names the setting and its value."""


@dataclass(frozen=True)
class Fetched:
    """One answered request. `data` is None for 304 Not Modified."""

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
            f"invalid base_url {base_url!r}: expected http(s)://host/path "
            "(SOURCES__CHESS__BASE_URL)"
        )
    return base_url.rstrip("/")


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


class RequestStats:
    """Thread-safe counters of every HTTP attempt, retries included."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_status: Counter[int] = Counter()
        self.bytes = 0

    def record(self, status: int, nbytes: int) -> None:
        with self._lock:
            self.by_status[status] += 1
            self.bytes += nbytes

    @property
    def total(self) -> int:
        return sum(self.by_status.values())


class ChessComClient:
    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        contact: str | None = None,
        max_concurrency: int = 3,
        http: Client | None = None,
        stats: RequestStats | None = None,
    ) -> None:
        self.base_url = check_base_url(base_url)
        self.user_agent = user_agent(contact)
        if not contact:
            logger.warning(
                "SOURCES__CHESS__CONTACT is not set: Chess.com may answer 403 to requests "
                "without contact details in the User-Agent"
            )
        self.limiter = AdaptiveLimiter(max_concurrency)
        self.stats = stats if stats is not None else RequestStats()
        if http is None:
            # raise_for_status=False: 304, 404 and 410 are answers, not failures.
            http = Client(raise_for_status=False)
            http.configure()  # RUNTIME__REQUEST_TIMEOUT, _MAX_ATTEMPTS, _BACKOFF_FACTOR, ...
        self._http = http

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def _observe(self, response: Response, *args: Any, **kwargs: Any) -> None:
        # Runs for every attempt, including the 429s that dlt's retry swallows.
        self.stats.record(response.status_code, len(response.content))
        if response.status_code == 429:
            self.limiter.on_throttled()

    def get(self, path: str, etag: str | None = None, last_modified: str | None = None) -> Fetched:
        """GET `path`, conditionally when validators from an earlier answer are given."""
        url = self.url(path)
        headers = {"User-Agent": self.user_agent, "Accept": "application/json"}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            # Chess.com's Last-Modified is not RFC 7231; it only matches when echoed verbatim.
            headers["If-Modified-Since"] = last_modified
        try:
            with self.limiter:
                response = self._http.get(url, headers=headers, hooks={"response": self._observe})
        except RequestException as exc:
            # Raised once dlt's retries are exhausted (timeouts, connection errors).
            raise ChessComError(f"request to {url} failed: {type(exc).__name__}", url) from exc
        status = response.status_code
        if status == 404:
            raise PlayerNotFound(f"404 Not Found: {url}", url, status)
        if status == 410:
            raise PlayerGone(f"410 Gone: {url}", url, status)
        if status == 403:
            raise ChessComError(
                f"403 Forbidden: {url} (Chess.com refuses clients without contact details: "
                "set SOURCES__CHESS__CONTACT)",
                url,
                status,
            )
        if status not in (200, 304):
            raise ChessComError(f"HTTP {status} from {url}", url, status)
        self.limiter.on_success()
        data = None
        if status == 200:
            try:
                data = response.json()
            except (json.JSONDecodeError, ValueError) as exc:
                raise ChessComError(f"malformed JSON from {url}: {exc}", url, status) from exc
            if not isinstance(data, dict):
                # Every PubAPI endpoint answers with an object.
                raise ChessComError(
                    f"unexpected JSON from {url}: {type(data).__name__}, not an object",
                    url,
                    status,
                )
        return Fetched(
            url=url,
            status=status,
            data=data,
            # A 304 may omit validators; the ones sent are still current.
            etag=response.headers.get("ETag") or etag,
            last_modified=response.headers.get("Last-Modified") or last_modified,
            nbytes=len(response.content),
        )

    def profile(self, player: str, **validators: str | None) -> Fetched:
        return self.get(f"player/{player}", **validators)

    def stats_of(self, player: str, **validators: str | None) -> Fetched:
        return self.get(f"player/{player}/stats", **validators)

    def archives(self, player: str, **validators: str | None) -> Fetched:
        return self.get(f"player/{player}/games/archives", **validators)

    def games(self, player: str, month_path: str, **validators: str | None) -> Fetched:
        return self.get(f"player/{player}/games/{month_path}", **validators)
