"""The fake API's fault rules do what the end-to-end fault tests rely on."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.fake_chesscom import FakeChessCom, World, http_get, recent_months


@pytest.fixture
def api() -> Iterator[FakeChessCom]:
    world = World(seed=3)
    world.populate(["alice"], months=2, games_per_month=3)
    with FakeChessCom(world) as server:
        yield server


def get(api: FakeChessCom, path: str, **headers: str) -> tuple[int, bytes, dict[str, str]]:
    return http_get(api.base_url, path, **headers)


def test_raw_body_n_times_then_normal(api: FakeChessCom) -> None:
    path = f"/player/alice/games/{recent_months(1)[0]}"
    rule = api.override("/pub" + path, body=b'{"games": nul', times=2)
    assert get(api, path)[1] == b'{"games": nul'
    assert get(api, path)[1] == b'{"games": nul'
    status, body, _ = get(api, path)
    assert status == 200 and len(json.loads(body)["games"]) == 3
    assert rule.served == 2


def test_json_body_has_its_own_validators_and_honours_them(api: FakeChessCom) -> None:
    api.override("/pub/player/alice/stats", body={"player": None})
    status, body, headers = get(api, "/player/alice/stats")
    assert (status, json.loads(body)) == (200, {"player": None})
    again = get(api, "/player/alice/stats", **{"If-None-Match": headers["ETag"]})
    assert again[0] == 304


def test_status_and_headers_alone_keep_the_document(api: FakeChessCom) -> None:
    api.override("/pub/player/*/stats", status=503, headers={"Retry-After": "0"}, times=1)
    status, body, headers = get(api, "/player/alice/stats")
    assert status == 503 and headers["Retry-After"] == "0" and b"chess_" in body
    assert get(api, "/player/alice/stats")[0] == 200


def test_304_without_validators(api: FakeChessCom) -> None:
    api.override("/pub/player/alice/games/archives", not_modified=True)
    status, body, headers = get(api, "/player/alice/games/archives")
    assert (status, body) == (304, b"")
    assert headers["ETag"].startswith('W/"')


def test_trickle_sends_slowly(api: FakeChessCom) -> None:
    api.override("/pub/player/alice", body=b"{}" * 5, trickle_bps=20)
    started = time.monotonic()
    assert get(api, "/player/alice")[1] == b"{}" * 5
    assert time.monotonic() - started >= 0.4  # 10 bytes at 20 B/s
