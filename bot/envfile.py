"""Dotenv files that `docker run --env-file` and the settings loader read alike.

Docker takes everything after the first `=` literally: no quotes, no escapes,
no line continuations. python-dotenv (the settings loader) strips quotes,
trailing blanks and ` #` comments, and expands `${VAR}`. So a value is written
bare, and only if both read it the same; anything else is refused, never
quoted. Multi-line values (the App's PEM key) go in a file of their own that
the dotenv file names (`PRIVATE_KEY_PATH`).
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

from dotenv.parser import parse_stream

# No line break, `$`, `#` or backslash anywhere; no quote or blank first; no blank last.
_PLAIN = re.compile(r"(?![\s'\"])[^\r\n$#\\]*(?<!\s)")


class UnsafeValue(ValueError):
    """A value docker and python-dotenv would read differently."""


def plain(name: str, value: str) -> str:
    """`value` as written after `NAME=`; refuses what cannot be written bare."""
    if not _PLAIN.fullmatch(value):
        raise UnsafeValue(f"{name}: the value cannot be written to a dotenv file unquoted")
    return value


def write_env(path: Path, values: Mapping[str, str | None]) -> None:
    """Set `values` in the dotenv file at `path`, keeping its other lines.

    A value of None removes the name. Written to a temporary file and renamed,
    so a crash leaves the old file; the result is readable by its owner only
    (it holds the App's secrets). Raises UnsafeValue before touching anything.
    """
    path = Path(path)
    lines = {k: f"{k}={plain(k, v)}\n" for k, v in values.items() if v is not None}
    try:
        original = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        original = ""
    out: list[str] = []
    done: set[str] = set()
    for binding in parse_stream(io.StringIO(original)):
        key = binding.key
        if key not in values:
            out.append(binding.original.string)
        elif key in lines and key not in done:  # a duplicate later line is dropped
            out.append(lines[key])
            done.add(key)
    if out and not out[-1].endswith("\n"):
        out[-1] += "\n"
    out.extend(line for k, line in lines.items() if k not in done)
    write_private(path, "".join(out))


def write_private(path: Path, text: str) -> None:
    """Replace `path` with `text`, mode 0600, through a temporary file in its directory."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.resolve().parent)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
