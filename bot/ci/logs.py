"""Excerpts of CI job logs: the error lines and their surroundings, in bounded memory.

A GitHub Actions job log can run to tens of MB, and its end is often only the
runner's clean-up while the cause sits in the middle. The excerpt keeps every
error line with a few lines before and after, the step (`Run <command>`) it
belongs to, and the log's last lines; when that is more than `limit`
characters it keeps the first error block (usually the cause) and the last
ones (usually the summary), and says what it left out. Memory stays
O(limit + context): lines are cleaned and judged one at a time.
"""

from __future__ import annotations

import codecs
import re
from collections import deque
from collections.abc import AsyncIterable

MAX_LINE = 2_000
BEFORE, AFTER, TAIL = 4, 8, 15

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z ")
_ERROR = re.compile(
    r"##\[error\]|\berror\b[:\[]|\bError\b|\bERROR\b|\bFAILED\b|\bFAIL\b|^E {3}|Traceback \(most recent call last\)"
    r"|\bfailed\b|AssertionError|npm ERR!|\bfatal:|\bpanic:|exit code [1-9]|Found \d+ errors?"
    r"|^\S+:\d+:\d+: [A-Z]+\d+|^\S+\.\w+:\d+:(?:\d+:)? (?:error|warning)|\berror TS\d+|--- FAIL|\berror\[E\d+\]",
)
# Most lines of a big log are noise; this cheap look-out (literal words, no
# backtracking) spares them the full pattern above.
_MAYBE = re.compile(r"err|fail|FAIL|Trace|fatal|panic|exit code|Found|^E   |:\d+:|--- ", re.I)
_NOT_ERROR = re.compile(r"\b0 (?:errors?|failed)\b|no issues found|All checks passed")


def clean(line: str) -> str | None:
    """One log line as the agent should read it; None to drop it."""
    if line[:2] == "20" and line[10:11] == "T":
        line = _TIMESTAMP.sub("", line)
    if "\r" in line:  # progress bars overwrite themselves: the last state counts
        line = line.rstrip("\r").rsplit("\r", 1)[-1]
        line = _TIMESTAMP.sub("", line)
    if "\x1b" in line:
        line = _ANSI.sub("", line)
    if line.startswith("##[endgroup]"):
        return None
    if line.startswith("##[group]"):
        line = line[len("##[group]"):]
    elif line.startswith("##[error]"):
        line = "error: " + line[len("##[error]"):]
    if len(line) > MAX_LINE:
        line = line[:MAX_LINE] + " [… line cut …]"
    return line


def is_error(line: str) -> bool:
    return bool(_MAYBE.search(line)) and bool(_ERROR.search(line)) and not _NOT_ERROR.search(line)


class LogExcerpt:
    """Fed a log chunk by chunk; `result()` is the excerpt."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial: list[str] = []
        self._partial_len = 0
        self._before: deque[tuple[int, str]] = deque(maxlen=BEFORE)
        self._tail: deque[tuple[int, str]] = deque(maxlen=TAIL)
        self._step: tuple[int, str] | None = None
        self._first: list[tuple[int, str]] | None = None  # the first block, kept whole
        self._recent: deque[list[tuple[int, str]]] = deque()  # later blocks, newest last
        self._recent_chars = 0
        self._open: list[tuple[int, str]] | None = None
        self._after = 0
        self._blocks = 0
        self._dropped_blocks = 0
        self.lines = 0

    # -- input ------------------------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        self._text(self._decoder.decode(chunk))

    def _text(self, text: str) -> None:
        start = 0
        while True:
            end = text.find("\n", start)
            if end < 0:
                rest = text[start:]
                if rest and self._partial_len < MAX_LINE + 1:  # a line without end is cut, not hoarded
                    self._partial.append(rest[: MAX_LINE + 1 - self._partial_len])
                    self._partial_len += len(self._partial[-1])
                return
            piece = text[start:end]
            if self._partial:
                piece = "".join(self._partial) + piece
                self._partial, self._partial_len = [], 0
            self._line(piece[: MAX_LINE + 1] if len(piece) > MAX_LINE + 1 else piece)
            start = end + 1

    def _line(self, raw: str) -> None:
        line = clean(raw)
        if line is None:
            return
        self.lines += 1
        entry = (self.lines, line)
        self._tail.append(entry)
        if line.startswith("Run "):
            self._step = entry
        if is_error(line):
            if self._open is None:
                self._open = []
                if self._step is not None and all(n != self._step[0] for n, _ in self._before):
                    self._open.append(self._step)
                self._open.extend(self._before)
                self._blocks += 1
            self._open.append(entry)
            self._after = AFTER
        elif self._open is not None:
            self._open.append(entry)
            self._after -= 1
            if self._after <= 0:
                self._close()
        self._before.append(entry)

    def _close(self) -> None:
        block, self._open = self._open, None
        if not block:
            return
        self._before.clear()
        if self._first is None:
            self._first = block
            return
        self._recent.append(block)
        self._recent_chars += _size(block)
        budget = self.limit // 2
        while len(self._recent) > 1 and self._recent_chars > budget:
            self._recent_chars -= _size(self._recent.popleft())
            self._dropped_blocks += 1

    # -- output -----------------------------------------------------------------

    def result(self) -> str:
        tail_text = self._decoder.decode(b"", final=True)
        if tail_text or self._partial:
            self._text(tail_text + "\n")
        if self._open is not None:
            self._close()
        picked: dict[int, str] = {}
        for block in ([self._first] if self._first else []) + list(self._recent):
            picked.update(block)
        if not picked:  # no error line anywhere: the end of the log is the best guess
            return _fit("\n".join(line for _, line in self._tail), self.limit)
        picked.update(self._tail)
        return self._render(picked)

    def _render(self, picked: dict[int, str]) -> str:
        out: list[str] = []
        if self._dropped_blocks:
            out.append(f"[… {self._dropped_blocks} of {self._blocks} error blocks left out; the first and the last ones follow …]")
        previous = 0
        for number in sorted(picked):
            if number > previous + 1:
                out.append(f"[… {number - previous - 1} lines …]")
            out.append(picked[number])
            previous = number
        if previous < self.lines:
            out.append(f"[… {self.lines - previous} lines …]")
        return _fit("\n".join(out), self.limit)


def _size(block: list[tuple[int, str]]) -> int:
    return sum(len(line) + 1 for _, line in block)


def _fit(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2 - 40
    cut = len(text) - 2 * half
    return f"{text[:half]}\n[… {cut:,} characters left out …]\n{text[-half:]}"


def excerpt_text(text: str, limit: int = 10_000) -> str:
    excerpt = LogExcerpt(limit)
    excerpt._text(text if text.endswith("\n") else text + "\n")
    return excerpt.result()


async def excerpt_stream(chunks: AsyncIterable[bytes], limit: int = 10_000) -> str:
    excerpt = LogExcerpt(limit)
    async for chunk in chunks:
        excerpt.feed(chunk)
    return excerpt.result()


def failing_command(text: str) -> str | None:
    """The command of the step that failed: the last `Run …` before the first error."""
    step = None
    for raw in text.splitlines():
        line = clean(raw)
        if line is None:
            continue
        if line.startswith("Run "):
            step = line[4:].strip()
        elif is_error(line):
            return step
    return step
