import pytest
import responses

from chess_com.client import (
    ChessComClient,
    ChessComError,
    ConfigurationError,
    PlayerGone,
    PlayerNotFound,
    user_agent,
)

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
