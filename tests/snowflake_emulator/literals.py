"""Snowflake's single-quoted string constants, read the way Snowflake reads them.

fakesnow passes a string literal to DuckDB, which knows no backslash escapes; Snowflake does.
The rules, from "Escape sequences in single-quoted string constants"
(https://docs.snowflake.com/en/sql-reference/data-types-text#escape-sequences-in-single-quoted-string-constants):
two single quotes are one; `\\'` `\\"` `\\\\` `\\b` `\\f` `\\n` `\\r` `\\t` `\\0`; octal `\\ooo`, hex
`\\xhh`, Unicode `\\uhhhh`; a backslash before any other character is dropped (`\\d` is `d`).

No third-party imports: the main environment's unit tests use it too.
"""

from __future__ import annotations

import re

SIMPLE = {
    "'": "'", '"': '"', "\\": "\\", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "0": "\0",
}  # fmt: skip
OCTAL = re.compile(r"[0-7]{3}")
HEX2 = re.compile(r"[0-9A-Fa-f]{2}")
HEX4 = re.compile(r"[0-9A-Fa-f]{4}")


def read_literal(sql: str, start: int) -> tuple[str, int]:
    """The value of the literal whose opening quote is at `sql[start]`, and the index just
    past its closing quote. ValueError if it is not closed."""
    if sql[start : start + 1] != "'":
        raise ValueError(f"no string literal at {start}")
    out: list[str] = []
    i = start + 1
    while i < len(sql):
        char = sql[i]
        if char == "'":
            if sql[i + 1 : i + 2] == "'":
                out.append("'")
                i += 2
                continue
            return "".join(out), i + 1
        if char != "\\":
            out.append(char)
            i += 1
            continue
        if OCTAL.fullmatch(sql[i + 1 : i + 4]):
            out.append(chr(int(sql[i + 1 : i + 4], 8)))
            i += 4
        elif sql[i + 1 : i + 2] == "x" and HEX2.fullmatch(sql[i + 2 : i + 4]):
            out.append(chr(int(sql[i + 2 : i + 4], 16)))
            i += 4
        elif sql[i + 1 : i + 2] == "u" and HEX4.fullmatch(sql[i + 2 : i + 6]):
            out.append(chr(int(sql[i + 2 : i + 6], 16)))
            i += 6
        elif i + 1 < len(sql):
            out.append(SIMPLE.get(sql[i + 1], sql[i + 1]))
            i += 2
        else:
            break
    raise ValueError("string literal not closed")


def decode(literal: str) -> str:
    """`'...'` (quotes included) -> its value; ValueError if anything follows the literal."""
    value, end = read_literal(literal, 0)
    if literal[end:].strip():
        raise ValueError(f"text after the string literal: {literal[end:]!r}")
    return value
