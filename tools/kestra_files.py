"""How Kestra 1.3 stores namespace files and picks them for a task, in Python.

A port of the runtime's own code, not of its documentation (which reads as if `.dlt/x`
would match `/.dlt/x`; it does not). Sources, Kestra 1.3 (binhth-vuejx/kestra-1.3.25,
the same files in Mattlk13/kestra at the 1.3 branch point):

- core/.../storages/NamespaceFile.java: a file's `filePath()` is normalised to start
  with `/` (`/.dlt/config.toml`); the working-directory path drops the leading slash.
- core/.../utils/PathMatcherPredicate.java: an include/exclude pattern that starts with
  a word character (`\\w+[\\s\\S]*`) gets `**/` prefixed, any other pattern is used as is,
  both as `glob:` matchers of the JVM's default file system.
- core/.../utils/NamespaceFilesUtils.java + storages/Namespace.java: includes OR-ed,
  then excludes removed; no include means every file.
- The JVM's glob syntax is sun.nio.fs.Globs.toUnixRegexPattern (documented in
  java.nio.file.FileSystem#getPathMatcher): `*` and `?` stop at `/`, `**` crosses it,
  `[...]` classes never match `/`, `{a,b}` groups. `glob_regex` below follows it;
  tests/unit/test_kestra_files.py checks it against the real JDK's matcher.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_REGEX_META = set(".^$+{[]|()")
_GLOB_META = set("\\*?[{")
_STARTS_WITH_WORD = re.compile(r"\w+[\s\S]*")


class GlobError(ValueError):
    """A pattern the JVM would reject (java.util.regex.PatternSyntaxException)."""


def glob_regex(glob: str) -> str:
    """The regex the JVM's Unix file system builds for a `glob:` pattern."""
    out = ["^"]
    in_group = False
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        i += 1
        if c == "\\":
            if i == n:
                raise GlobError(f"no character to escape at the end of {glob!r}")
            nxt = glob[i]
            i += 1
            if nxt in _GLOB_META or nxt in _REGEX_META:
                out.append("\\")
            out.append(nxt)
        elif c == "[":
            out.append("[[^/]&&[")
            if i < n and glob[i] == "^":
                out.append("\\^")
                i += 1
            else:
                if i < n and glob[i] == "!":
                    out.append("^")
                    i += 1
                if i < n and glob[i] == "-":
                    out.append("-")
                    i += 1
            has_range, last, closed = False, "", False
            while i < n:
                c = glob[i]
                i += 1
                if c == "]":
                    closed = True
                    break
                if c == "/":
                    raise GlobError(f"explicit '/' in a class in {glob!r}")
                if c in "\\[" or (c == "&" and i < n and glob[i] == "&"):
                    out.append("\\")
                out.append(c)
                if c != "-":
                    has_range, last = True, c
                    continue
                if not has_range:
                    raise GlobError(f"invalid range in {glob!r}")
                c = glob[i] if i < n else ""
                i += 1
                if c in ("", "]"):
                    closed = c == "]"
                    break
                if c < last:
                    raise GlobError(f"invalid range in {glob!r}")
                out.append(c)
                has_range = False
            if not closed:
                raise GlobError(f"missing ']' in {glob!r}")
            out.append("]]")
        elif c == "{":
            if in_group:
                raise GlobError(f"nested groups are not allowed in {glob!r}")
            out.append("(?:(?:")
            in_group = True
        elif c == "}":
            if in_group:
                out.append("))")
                in_group = False
            else:
                out.append("}")
        elif c == ",":
            out.append(")|(?:" if in_group else ",")
        elif c == "*":
            if i < n and glob[i] == "*":
                out.append(".*")
                i += 1
            else:
                out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        else:
            if c in _REGEX_META:
                out.append("\\")
            out.append(c)
    if in_group:
        raise GlobError(f"missing '}}' in {glob!r}")
    out.append("$")
    return "".join(out)


def _java_class_to_python(regex: str) -> str:
    # Java's `[[^/]&&[abc]]` (intersection) has no Python spelling: `(?![/])[abc]` is the same set.
    return re.sub(r"\[\[\^/\]&&\[((?:\\.|[^\]\\])*)\]\]", r"(?!/)[\1]", regex)


def kestra_pattern(pattern: str) -> str:
    """PathMatcherPredicate: the `glob:`/`regex:` pattern Kestra builds from a user pattern."""
    if pattern.startswith(("glob:", "regex:")):
        return pattern
    if _STARTS_WITH_WORD.fullmatch(pattern):
        pattern = "**/" + pattern
    return "glob:" + pattern.replace("\\", "/")


def compile_pattern(pattern: str) -> re.Pattern[str]:
    syntax, _, body = kestra_pattern(pattern).partition(":")
    regex = body if syntax == "regex" else _java_class_to_python(glob_regex(body))
    return re.compile(regex, re.DOTALL)


def stored_path(relative: str) -> str:
    """NamespaceFile.filePath(): where an uploaded file lives, always starting with `/`."""
    return "/" + relative.lstrip("/")


def select(paths: Iterable[str], include: list[str] | None, exclude: list[str] | None) -> list[str]:
    """The stored paths a task gets, as Namespace.findAllFilesMatching picks them."""
    includes = [compile_pattern(p) for p in include or []]
    excludes = [compile_pattern(p) for p in exclude or []]
    return [
        path
        for path in paths
        if (not includes or any(r.fullmatch(path) for r in includes))
        and not any(r.fullmatch(path) for r in excludes)
    ]


def working_dir_path(stored: str) -> str:
    """NamespaceFile.of(): the path under the task's working directory (no leading slash)."""
    return re.sub(r"^[.]*[\\|/]+", "", stored, count=1)
