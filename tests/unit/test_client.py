import socket
import time
from collections.abc import Iterator

import pytest
import responses
from requests.exceptions import ConnectionError as RequestsConnectionError
from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError, ProtocolError

from chess_com.client import (
    UNREACHABLE_AFTER,
    ChessComClient,
    ChessComError,
    ConfigurationError,
    DeadlineReached,
    MonthNotFound,
    PlayerGone,
    PlayerNotFound,
    Redirected,
    RequestTooSlow,
    Unreachable,
    connect_failure,
    same_document,
    user_agent,
)
from tests.fake_chesscom import FakeChessCom, World

BASE = "https://api.example.test/pub"
PROFILE = f"{BASE}/player/hikaru"
LAST_MODIFIED = "Friday, 25-Oct-2024 02:32:13 GMT+0000"
FAST_RETRY = {"request_max_attempts": 3, "request_backoff_factor": 0.01}


@pytest.fixture
def client() -> ChessComClient:
    # Fast retries: the behaviour under test is the client's, not the backoff's length.
    return ChessComClient(BASE, contact="ops@example.com", max_concurrency=2, retry=FAST_RETRY)


@responses.activate
def test_sends_user_agent_with_contact_and_parses_validators(client: ChessComClient) -> None:
    responses.get(
        PROFILE,
        json={"player_id": 1, "username": "hikaru"},
        headers={"ETag": 'W/"abc"', "Last-Modified": LAST_MODIFIED},
    )
    fetched = client.profile("hikaru")
    sent = responses.calls[0].request.headers
    assert "contact: ops@example.com" in sent["User-Agent"]
    assert "If-None-Match" not in sent and "If-Modified-Since" not in sent
    assert fetched.status == 200 and fetched.data["player_id"] == 1
    assert (fetched.etag, fetched.last_modified) == ('W/"abc"', LAST_MODIFIED)
    assert fetched.nbytes > 0
    assert client.stats.by_status == {200: 1}


@responses.activate
def test_conditional_request_echoes_validators_verbatim_and_304_has_no_data(
    client: ChessComClient,
) -> None:
    responses.get(PROFILE, status=304)
    fetched = client.profile("hikaru", etag='W/"abc"', last_modified=LAST_MODIFIED)
    sent = responses.calls[0].request.headers
    assert sent["If-None-Match"] == 'W/"abc"'
    assert sent["If-Modified-Since"] == LAST_MODIFIED  # not reformatted to RFC 7231
    assert fetched.not_modified and fetched.data is None and fetched.nbytes == 0
    # A bare 304 keeps the validators that were sent.
    assert (fetched.etag, fetched.last_modified) == ('W/"abc"', LAST_MODIFIED)


@responses.activate
def test_429_then_success_is_retried_and_lowers_concurrency(client: ChessComClient) -> None:
    responses.get(PROFILE, status=429, headers={"Retry-After": "0"})
    responses.get(PROFILE, json={"player_id": 1})
    fetched = client.profile("hikaru")
    assert fetched.data == {"player_id": 1}
    assert len(responses.calls) == 2
    assert client.stats.by_status == {429: 1, 200: 1}
    assert client.limiter.throttled == 1 and client.limiter.limit == 1


@responses.activate
def test_5xx_exhausting_retries_names_url(client: ChessComClient) -> None:
    responses.get(PROFILE, status=503)
    with pytest.raises(ChessComError, match=f"HTTP 503 from {PROFILE}"):
        client.profile("hikaru")
    assert len(responses.calls) == 3


@responses.activate
def test_404_and_410_are_distinct_errors(client: ChessComClient) -> None:
    responses.get(f"{BASE}/player/nobody", status=404, json={"code": 0, "message": "not found"})
    responses.get(f"{BASE}/player/closed", status=410, json={"code": 0})
    with pytest.raises(PlayerNotFound) as not_found:
        client.profile("nobody")
    assert not_found.value.status == 404 and not_found.value.url.endswith("/player/nobody")
    with pytest.raises(PlayerGone):
        client.profile("closed")
    assert len(responses.calls) == 2  # neither is retried


@responses.activate
def test_403_explains_contact(client: ChessComClient) -> None:
    responses.get(PROFILE, status=403)
    with pytest.raises(ChessComError, match="SOURCES__CHESS__CONTACT"):
        client.profile("hikaru")


@responses.activate
def test_malformed_json_names_url(client: ChessComClient) -> None:
    url = f"{BASE}/player/hikaru/games/2024/05"
    responses.get(url, body="{not json", content_type="application/json")
    with pytest.raises(ChessComError, match=f"malformed JSON from {url}"):
        client.games("hikaru", "2024/05")


@responses.activate
def test_connection_error_after_retries_names_url(client: ChessComClient) -> None:
    from requests import ConnectionError as RequestsConnectionError

    responses.get(PROFILE, body=RequestsConnectionError("refused"))
    with pytest.raises(ChessComError, match=f"request to {PROFILE} failed"):
        client.profile("hikaru")


def test_urls_for_each_endpoint(client: ChessComClient) -> None:
    assert client.url("player/x/games/archives") == f"{BASE}/player/x/games/archives"


@pytest.mark.parametrize("bad", ["ftp://x", "api.chess.com/pub", "http://"])
def test_bad_base_url_is_a_configuration_error(bad: str) -> None:
    with pytest.raises(ConfigurationError, match=repr(bad)):
        ChessComClient(bad)


@pytest.mark.parametrize("bad", ["not-an-email", "me@x\r\nX-Evil: 1", "me @x.com"])
def test_bad_contact_is_rejected(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid contact"):
        user_agent(bad)


def test_user_agent_forms() -> None:
    assert "contact: https://example.com/me" in user_agent("https://example.com/me")
    assert "contact" not in user_agent(None)


def test_missing_contact_warns(caplog: pytest.LogCaptureFixture) -> None:
    ChessComClient(BASE)
    assert "SOURCES__CHESS__CONTACT is not set" in caplog.text


@responses.activate
def test_json_that_is_not_an_object_names_url(client: ChessComClient) -> None:
    responses.get(PROFILE, json=["not", "an", "object"])
    with pytest.raises(ChessComError, match=f"unexpected JSON from {PROFILE}: list"):
        client.profile("hikaru")


# -- answers that cannot be right, bounded time, unreachable hosts (issue 10) ----------
@responses.activate
def test_304_to_an_unconditional_request_is_an_error(client: ChessComClient) -> None:
    url = f"{BASE}/player/hikaru/games/2024/05"
    responses.get(url, status=304)
    with pytest.raises(ChessComError, match=f"304 Not Modified from {url} to a request without"):
        client.games("hikaru", "2024/05")
    assert client.games("hikaru", "2024/05", etag='W/"a"').not_modified


@responses.activate
def test_404_on_a_month_is_month_not_found_not_player_not_found(client: ChessComClient) -> None:
    url = f"{BASE}/player/hikaru/games/2024/05"
    responses.get(url, status=404, json={"code": 0, "message": "Date is invalid."})
    with pytest.raises(MonthNotFound, match=f"404 Not Found: {url}") as missing:
        client.games("hikaru", "2024/05")
    assert not isinstance(missing.value, PlayerNotFound)


@responses.activate
def test_credentials_in_base_url_are_masked_in_every_message() -> None:
    secret_base = "https://ops:pa55word@api.example.test/pub"
    client = ChessComClient(secret_base, "ops@example.com", retry=FAST_RETRY)
    responses.get(f"{secret_base}/player/hikaru", status=503)
    responses.get(f"{secret_base}/player/hikaru/stats", body="{not json")
    for call in (client.profile, client.stats_of):
        with pytest.raises(ChessComError) as error:
            call("hikaru")
        assert "pa55word" not in str(error.value) and "pa55word" not in error.value.url
        assert "https://***@api.example.test/pub/player/hikaru" in str(error.value)
    with pytest.raises(ConfigurationError) as bad:
        ChessComClient("ftp://ops:pa55word@x/pub")
    assert "pa55word" not in str(bad.value)


@pytest.fixture
def fake_api() -> Iterator[FakeChessCom]:
    world = World(seed=5)
    world.populate(["hikaru"], months=1, games_per_month=2)
    with FakeChessCom(world) as api:
        yield api


def test_a_trickled_answer_is_cut_at_the_request_deadline(fake_api: FakeChessCom) -> None:
    rule = fake_api.override("/pub/player/hikaru", body=b"{}" * 50, trickle_bps=10)
    client = ChessComClient(
        fake_api.base_url, "ops@example.com", request_deadline_s=0.5, retry=FAST_RETRY
    )
    with pytest.raises(RequestTooSlow, match=r"/player/hikaru took longer than 0.5 s"):
        client.profile("hikaru")
    assert rule.served == 1  # cut, not retried
    # The connection was not reused half-read: the next request gets a clean answer.
    assert client.stats_of("hikaru").status == 200


def test_the_run_deadline_cuts_a_request_then_starts_none(fake_api: FakeChessCom) -> None:
    fake_api.override("/pub/player/hikaru", body=b"{}" * 50, trickle_bps=10)
    client = ChessComClient(
        fake_api.base_url,
        "ops@example.com",
        run_deadline=time.monotonic() + 0.5,
        retry=FAST_RETRY,
    )
    with pytest.raises(DeadlineReached, match="left for the next run"):
        client.profile("hikaru")
    assert client.deadline_passed()
    fake_api.stats.reset()
    with pytest.raises(DeadlineReached):
        client.stats_of("hikaru")
    assert fake_api.stats.paths() == []  # nothing requested past the deadline


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_refused_connections_give_up_the_host_after_a_few_attempts() -> None:
    base = f"http://127.0.0.1:{closed_port()}/pub"
    retry = {"request_max_attempts": 10, "request_backoff_factor": 0.01}
    client = ChessComClient(base, "ops@example.com", retry=retry)
    with pytest.raises(Unreachable, match=r"127\.0\.0\.1 is unreachable: connection refused"):
        client.profile("hikaru")
    assert client.stats.attempts == UNREACHABLE_AFTER  # not 10: the host was given up
    assert client.stats.errors == {"ConnectionError": UNREACHABLE_AFTER}
    assert client.stats.total == 0
    with pytest.raises(Unreachable, match="no further requests this run"):
        client.archives("hikaru")
    assert client.stats.attempts == UNREACHABLE_AFTER  # failed without a request


def test_an_answer_resets_the_count_of_failed_connections(fake_api: FakeChessCom) -> None:
    client = ChessComClient(fake_api.base_url, "ops@example.com", retry=FAST_RETRY)
    refused = RequestsConnectionError(
        MaxRetryError(None, "/", NewConnectionError(None, "[Errno 111] Connection refused"))
    )
    for _ in range(UNREACHABLE_AFTER - 1):
        assert client._retry_error(None, refused)  # retried
    client.profile("hikaru")
    assert client._retry_error(None, refused) and client.unreachable is None


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        (NewConnectionError(None, "[Errno 111] Connection refused"), "connection refused"),
        (NameResolutionError("nohost.invalid", None, OSError("nope")), "does not resolve"),
        (ProtocolError("Connection aborted.", OSError("reset")), None),
    ],
)
def test_connect_failures_are_told_from_broken_answers(reason: Exception, expected: str) -> None:
    exc = RequestsConnectionError(MaxRetryError(None, "/", reason))
    found = connect_failure(exc)
    assert (found is None) if expected is None else (expected in found)


@pytest.mark.parametrize("bad", [0, -1, True, "5"])
def test_request_deadline_must_be_positive_seconds(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="SOURCES__CHESS__REQUEST_DEADLINE_S"):
        ChessComClient(BASE, "ops@example.com", request_deadline_s=bad)  # type: ignore[arg-type]


# -- redirects (issue 19 item 3): never another document's answer as this one ----------
MONTH = f"{BASE}/player/alice/games/2026/11"


@responses.activate
def test_a_redirect_to_the_same_player_in_another_case_is_followed(
    client: ChessComClient,
) -> None:
    target = f"{BASE}/player/ALICE/games/2026/11"
    responses.get(MONTH, status=301, headers={"Location": target})
    responses.get(target, json={"games": []}, headers={"ETag": 'W/"t"'})
    fetched = client.games("alice", "2026/11")
    assert fetched.status == 200 and fetched.data == {"games": []}
    assert fetched.url == MONTH and fetched.etag == 'W/"t"'
    assert [c.request.url for c in responses.calls] == [MONTH, target]
    assert client.stats.by_status == {301: 1, 200: 1}


@responses.activate
def test_a_conditional_request_keeps_its_validators_through_a_followed_redirect(
    client: ChessComClient,
) -> None:
    target = f"{MONTH}/"  # a trailing slash: the same document
    responses.get(MONTH, status=308, headers={"Location": "/pub/player/alice/games/2026/11/"})
    responses.get(target, status=304)
    fetched = client.games("alice", "2026/11", etag='W/"e"', last_modified=LAST_MODIFIED)
    assert fetched.not_modified and fetched.etag == 'W/"e"'
    sent = responses.calls[1].request
    assert sent.url == target and sent.headers["If-None-Match"] == 'W/"e"'
    assert sent.headers["If-Modified-Since"] == LAST_MODIFIED


@pytest.mark.parametrize(
    ("status", "location"),
    [
        (301, f"{BASE}/player/bob/games/2026/11"),  # another player
        (302, f"{BASE}/player/alice/games/2026/10"),  # another month
        (301, f"{BASE}/player/alice/games/archives"),  # another kind of document
        (307, "https://mirror.example.test/pub/player/alice/games/2026/11"),  # another host
        (308, "https://api.example.test:8443/pub/player/alice/games/2026/11"),  # another port
        (303, "https://api.example.test/pub/player/alice/games/2026/11?page=2"),
        (301, "/pub/player/bob/games/2026/11"),  # relative, still another player
    ],
)
@responses.activate
def test_a_redirect_to_another_document_fails_naming_both_urls(
    client: ChessComClient, status: int, location: str
) -> None:
    responses.get(MONTH, status=status, headers={"Location": location})
    target = location if location.startswith("http") else f"https://api.example.test{location}"
    with pytest.raises(Redirected) as error:
        client.games("alice", "2026/11")
    assert str(error.value) == (
        f"{MONTH} redirected ({status}) to {target}, another resource: not stored, "
        "fetched again next run"
    )
    assert error.value.status == status and error.value.url == MONTH
    assert len(responses.calls) == 1  # the other document is not even requested


@responses.activate
def test_a_redirect_through_the_same_document_to_another_fails(client: ChessComClient) -> None:
    upper = f"{BASE}/player/Alice/games/2026/11"
    responses.get(MONTH, status=301, headers={"Location": upper})
    responses.get(upper, status=302, headers={"Location": f"{BASE}/player/bob/games/2026/11"})
    with pytest.raises(Redirected, match=f"{MONTH} redirected \\(302\\) to .*/player/bob/"):
        client.games("alice", "2026/11")


@responses.activate
def test_a_redirect_loop_is_an_error(client: ChessComClient) -> None:
    upper = f"{BASE}/player/ALICE/games/2026/11"
    responses.get(MONTH, status=301, headers={"Location": upper})
    responses.get(upper, status=301, headers={"Location": MONTH})
    with pytest.raises(ChessComError, match=f"{MONTH}: more than 5 redirects"):
        client.games("alice", "2026/11")
    assert len(responses.calls) == 6


@responses.activate
def test_redirect_messages_mask_credentials() -> None:
    secret_base = "https://ops:pa55word@api.example.test/pub"
    client = ChessComClient(secret_base, "ops@example.com", retry=FAST_RETRY)
    location = "https://ops:pa55word@api.example.test/pub/player/bob"
    responses.get(f"{secret_base}/player/alice", status=301, headers={"Location": location})
    with pytest.raises(Redirected) as error:
        client.profile("alice")
    assert "pa55word" not in str(error.value) and "***@api.example.test" in str(error.value)


@responses.activate
def test_a_5xx_after_a_followed_redirect_is_retried(client: ChessComClient) -> None:
    target = f"{BASE}/player/ALICE/games/2026/11"
    responses.get(MONTH, status=301, headers={"Location": target})
    responses.get(target, status=503)
    responses.get(target, json={"games": []})
    assert client.games("alice", "2026/11").data == {"games": []}
    assert client.stats.by_status == {301: 1, 503: 1, 200: 1}


@pytest.mark.parametrize(
    ("requested", "target", "same"),
    [
        ("https://h/pub/player/alice", "https://h/pub/player/ALICE", True),
        ("https://h/pub/player/alice/stats", "https://H/pub/player/Alice/stats/", True),
        ("http://h/pub/player/alice", "https://h/pub/player/alice", True),
        ("http://h:8000/pub/player/alice", "http://h:8000/pub/player/alice/", True),
        ("https://h/pub/player/alice", "http://h/pub/player/alice", False),  # downgrade
        ("http://h:8000/pub/player/alice", "https://h:8000/pub/player/alice", False),
        ("https://h/pub/player/alice/games/archives", "https://h/pub/PLAYER/alice/games/archives", False),
        ("https://h/pub/player/alice/games/2026/11", "https://h/pub/player/alice/GAMES/2026/11", False),
        ("https://h/pub/player/alice", "https://h:99999/pub/player/alice", False),  # no such port
        ("https://h/pub/player/alice", "ftp://h/pub/player/alice", False),
    ],
)  # fmt: skip
def test_same_document(requested: str, target: str, same: bool) -> None:
    assert same_document(requested, target) is same
