import pytest

from chess_com.players import InvalidPlayerError, parse_players


def test_lower_cases_dedups_and_keeps_order() -> None:
    assert parse_players("MagnusCarlsen, hikaru,magnuscarlsen,,a_b-c") == [
        "magnuscarlsen",
        "hikaru",
        "a_b-c",
    ]


def test_accepts_config_list_and_json_env_value() -> None:
    assert parse_players(["Hikaru", "erik"]) == ["hikaru", "erik"]
    assert parse_players('["Hikaru", "erik"]') == ["hikaru", "erik"]


@pytest.mark.parametrize("bad", ["ab", "x" * 26, "bad name", "évariste", "semi;colon", "dot.name"])
def test_rejects_invalid_username_naming_it(bad: str) -> None:
    with pytest.raises(InvalidPlayerError, match=r"invalid Chess\.com username") as err:
        parse_players(f"hikaru,{bad}")
    assert repr(bad) in str(err.value)


def test_reports_every_bad_name_at_once() -> None:
    with pytest.raises(InvalidPlayerError) as err:
        parse_players("ok_name,no,x y")
    assert "'no'" in str(err.value) and "'x y'" in str(err.value)


@pytest.mark.parametrize("empty", [None, "", " , ", []])
def test_empty_list_is_an_error(empty: object) -> None:
    with pytest.raises(InvalidPlayerError, match="no players"):
        parse_players(empty)


def test_bad_json_list_is_an_error() -> None:
    with pytest.raises(InvalidPlayerError, match="invalid player list"):
        parse_players('["hikaru",')
