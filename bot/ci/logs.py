"""Excerpts of GitHub Actions job logs: the error lines and what surrounds them.

A job log runs to tens of MB and ends with the runner's clean-up. The excerpt
keeps each error line with `BEFORE` lines before and `AFTER` after (windows
that overlap make one block), each block's step (`Run <cmd>`) and the log's
last `TAIL_LINES` lines; over `limit` characters, the first block (usually the
cause) and the last ones (the summary). Without an error line: the log's end.
At most `limit` characters, markers included: `[… N lines …]` or `[… N lines,
M error blocks not shown …]` for a gap, `CUT` after a line cut at
`LINE_LIMIT`, `NO_ERRORS` first when no error line was found. Memory is
O(limit + window): whole lines go through in blocks of at most `CHUNK`
characters, an unfinished line is held to 2 x LINE_LIMIT, only kept lines stay.
"""

from __future__ import annotations

import codecs
import re
from collections import deque
from collections.abc import AsyncIterable
from dataclasses import dataclass, field

LINE_LIMIT = 2_000
BEFORE, AFTER = 8, 5  # a pytest failure's code listing sits just above its `E` lines
TAIL_LINES = 15
FALLBACK_LINES = 200  # the last lines held for a log without an error line
CHUNK = 64 * 1024
CUT = " [… line cut]"
NO_ERRORS = "[no error lines recognised; the end of the log follows]"
_RAW_CAP = 2 * LINE_LIMIT  # how long an unfinished (still coloured) line may grow
_MARK = 64  # room reserved per gap marker when fitting the budget

# Cleaning runs on whole blocks, one C-level pass per pattern (a Python loop
# per line costs seconds on 50 MB); each starts with a literal so `re` skips
# ahead. A "\n" before the block gives its first line one too.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b\n]*(?:\x07|\x1b\\)?|[()][0-9A-Za-z]|[@-Z\\-_])?")
_STAMP = re.compile(r"\n\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z ?")
_ENDGROUP = re.compile(r"\n##\[endgroup\][^\n]*")
_MARKER = re.compile(r"##\[(\w+)\]")
_BREAK = re.compile(r"[\r\n]")
_ERROR = re.compile(  # an error line (cleaned)
    r"^(?:FAILED|FAIL|ERROR)\b|::\S+ (?:FAILED|ERROR)\b"  # pytest (-v too), unittest, jest, go, webpack
    r"|^E {2,}\S|^Traceback \(most recent call last\)"  # pytest's failure detail, Python
    r"|(?:error|Error|ERROR)(?:\[E\d+\])?:|: error\b|\berror TS\d+"  # error:, ValueError:, cargo, gcc, tsc
    r"|^\s*\S+?:\d+:\d+: [A-Z]{1,3}\d{2,4}\b|^\s+\d+:\d+\s+error\b"  # ruff/flake8/pylint, eslint
    r"|^npm (?:ERR!|error)|^(?:fatal|panic):|AssertionError|exit (?:code|status) [1-9]"
    r"|^Found [1-9]\d* errors?\b|^--- FAIL\b|\b[1-9]\d* (?:failed|failing|errors?)\b"
    r"|[Ww]ould reformat|^✖ \d+ problem|^\s*● "
)
# A cheap look-out: every match of `_ERROR` contains one of this, and it scans
# a block ~15x faster since all its branches start with a literal.
_HINT = re.compile(r"rror|RROR|FAIL|fail|Traceback|E  |npm |fatal:|panic:|exit |eformat|✖|●|:\d+:\d+: [A-Z]")

Numbered = list[tuple[int, str]]  # (line number, text)


def is_error_line(line: str) -> bool:
    """Whether a cleaned log line is one the excerpt keeps as an error."""
    return _HINT.search(line) is not None and _ERROR.search(line) is not None


@dataclass
class _Block:
    """Kept lines: one error window, or overlapping ones merged."""

    ordinal: int  # which block; a block cut at `limit` goes on with the same one
    step: tuple[int, str] | None  # the `Run …` line above it, when outside it
    lines: deque[tuple[int, str]] = field(default_factory=deque)
    chars: int = 0


class LogExcerpt:
    """Fed a log by `feed` (bytes) or `feed_text`; `result()` is the excerpt."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self.lines = self.errors = 0  # lines (`##[endgroup]` not counted) and error lines seen
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._started = self._cut = False  # _cut: drop input up to the next \r or \n
        self._pending = ""  # the unfinished last line
        self._ring: deque[str] = deque(maxlen=BEFORE)  # the lines just before, none of them kept
        self._tail: deque[str] = deque(maxlen=FALLBACK_LINES)
        self._after = 0  # lines still to keep after the last error
        self._open: _Block | None = None
        self._first: _Block | None = None
        self._recent: deque[_Block] = deque()
        self._recent_chars = self._ordinal = 0
        self._step: tuple[int, str] | None = None
        self._causes: dict[str, tuple[int, str] | None] = {}  # the step at the first error, at the first ##[error]
        self._result: str | None = None

    def feed(self, chunk: bytes) -> None:
        view = memoryview(chunk)  # slices of a big chunk without copies
        for start in range(0, len(view), CHUNK):
            self._text(self._decoder.decode(view[start : start + CHUNK]))

    def feed_text(self, text: str) -> None:
        for start in range(0, len(text), CHUNK):
            self._text(text[start : start + CHUNK] if len(text) > CHUNK else text)

    def _text(self, text: str) -> None:
        if not self._started and text:
            self._started, text = True, text.removeprefix("\ufeff")  # Actions logs start with a BOM
        if self._cut:
            stop = _BREAK.search(text)
            if stop is None:
                return
            text, self._cut = text[stop.start() :], False
        body = self._pending + text if self._pending else text
        end = body.rfind("\n")
        self._pending = body if end < 0 else body[end + 1 :]
        if end >= 0:
            self._block(body[:end])
        if len(self._pending) > _RAW_CAP:  # a 50 MB "line" must not be held whole
            line = self._pending
            redraw = line.rstrip("\r").rfind("\r")
            line = line[redraw + 1 :] if redraw >= 0 else line  # what a \r overwrote is gone anyway
            if len(line) > _RAW_CAP:
                line, self._cut = line[:_RAW_CAP] + CUT, True
            self._pending = line

    def _block(self, block: str) -> None:
        """Clean a block of whole lines, find its steps and errors, keep what matters."""
        text = _STAMP.sub("\n", _ANSI.sub("", "\n" + block) if "\x1b" in block else "\n" + block)
        if "##[endgroup]" in text:
            text = _ENDGROUP.sub("", text)
        if not text:
            return
        block = text[1:]
        lines = block.split("\n")
        if "\r" in block:  # a line redrawn with \r (a progress bar): what the terminal showed last
            lines = [
                next((p for p in reversed(line.split("\r")) if p.strip()), "") if "\r" in line else line
                for line in lines
            ]
        if len(block) > LINE_LIMIT and max(map(len, lines)) > LINE_LIMIT + len(CUT):
            lines = [line if len(line) <= LINE_LIMIT + len(CUT) else line[:LINE_LIMIT] + CUT for line in lines]
        steps: dict[int, str] = {}
        marked: set[int] = set()
        for i, line in enumerate(lines) if "##[" in block else ():
            if (marker := _MARKER.match(line)) is not None:
                kind, lines[i] = marker.group(1), line[marker.end() :]
                if kind == "error":
                    marked.add(i)
                if kind in ("error", "warning", "notice"):
                    lines[i] = f"{kind}: {lines[i]}"
                elif kind == "group" and lines[i].startswith("Run "):
                    steps[i] = lines[i]
        errors = marked.union(self._error_indices(block, lines))
        done = 0
        for i in sorted(errors.union(steps)):
            self._plain(lines, done, i)
            if i in steps:
                self._step = (self.lines, steps[i])
                if not self._after:  # the previous step's lines are not this one's context
                    self._ring.clear()
                    self._close()
            if i in errors:
                self._error(lines[i], i in marked)
            else:
                self._plain(lines, i, i + 1)
            done = i + 1
        self._plain(lines, done, len(lines))

    @staticmethod
    def _error_indices(block: str, lines: list[str]) -> list[int]:
        found: list[int] = []
        index = counted = position = 0
        while (hint := _HINT.search(block, position)) is not None:
            index += block.count("\n", counted, hint.start())
            counted = hint.start()
            if _ERROR.search(lines[index]):
                found.append(index)
            position = block.find("\n", counted) + 1  # one look per line is enough
            if position == 0:
                break
        return found

    def _plain(self, lines: list[str], start: int, stop: int) -> None:
        """Lines without an error: after-context, then the ring and the tail."""
        take = min(self._after, max(stop - start, 0))
        for j in range(take):
            self._keep(self.lines + j, lines[start + j])
        self._after -= take
        self._ring.extend(lines[max(start + take, stop - BEFORE) : stop])
        self._tail.extend(lines[max(start, stop - FALLBACK_LINES) : stop])
        self.lines += max(stop - start, 0)

    def _error(self, text: str, marked: bool) -> None:
        number, ring = self.lines, self._ring
        if self._open is None or number - self._open.lines[-1][0] - 1 > BEFORE:
            self._close()
            step = self._step if self._step and self._step[0] < number - len(ring) else None
            self._open = _Block(self._ordinal, step)
            self._ordinal += 1
        for j, line in enumerate(ring):  # when merging, all the lines since the block's last
            self._keep(number - len(ring) + j, line)
        ring.clear()
        self._keep(number, text)
        self._tail.append(text)
        self._after, self.lines, self.errors = AFTER, number + 1, self.errors + 1
        self._causes.setdefault("error", self._step)
        if marked:
            self._causes.setdefault("marked", self._step)

    def _keep(self, number: int, text: str) -> None:
        block = self._open
        assert block is not None
        if block.chars + len(text) + 1 > self.limit and block.lines:
            self._close()  # a block never outgrows the limit: the rest goes on as another
            block = self._open = _Block(block.ordinal, None)
        block.lines.append((number, text))
        block.chars += len(text) + 1

    def _close(self) -> None:
        """File the open block: the first one stays, later ones only while they fit."""
        block, self._open = self._open, None
        if block is None:
            return
        if self._first is None:
            self._first = block
            return
        self._recent.append(block)
        self._recent_chars += block.chars
        while self._recent_chars > self.limit and len(self._recent) > 1:
            self._recent_chars -= self._recent.popleft().chars

    def close(self) -> None:
        """End of input: the undecoded bytes and the unfinished line are lines too."""
        if self._result is None:
            self._text(self._decoder.decode(b"", final=True))
            line, self._pending, self._cut = self._pending, "", False
            if line:
                self._block(line)
            self._close()

    def result(self) -> str:
        if self._result is None:
            self.close()
            self._result = self._render()[: self.limit]  # a guard: the budget already holds
        return self._result

    def failing_command(self) -> str | None:
        """The `Run …` step of the first `##[error]` line, else of the first error line."""
        step = self._causes.get("marked", self._causes.get("error"))
        return step[1].removeprefix("Run ").strip() if step else None

    def _render(self) -> str:
        blocks = ([self._first] if self._first else []) + list(self._recent)
        base = self.lines - len(self._tail)  # the tail's first line number
        tail = [(base + j, line) for j, line in enumerate(self._tail)]
        if not blocks:
            picked = _fit(tail[::-1], self.limit - len(NO_ERRORS) - 1 - _MARK)[::-1]
            return _join([(0, [(-1, NO_ERRORS)]), (0, picked)]) if self.lines else ""
        tail = _fit(tail[-TAIL_LINES:][::-1], self.limit // 4 - _MARK)[::-1]
        start = tail[0][0] if tail else self.lines
        shown = []  # what the tail shows is not paid for twice
        for b in blocks:
            lines = [(n, t) for n, t in ([b.step] if b.step else []) + list(b.lines) if n < start]
            if lines:
                shown.append((b.ordinal, lines))
        chosen = _choose(shown, self.limit - _cost(tail) - _MARK)
        # Blocks inside the tail are shown by it: not counted as left out.
        return _join([*chosen, (shown[-1][0] + 1 if shown else 0, tail)])


def _cost(lines: Numbered) -> int:
    return sum(len(text) + 1 for _, text in lines)


def _fit(lines: Numbered, room: int) -> Numbered:
    """The leading lines that fit in `room` characters (the first one cut if need be)."""
    out: Numbered = []
    for number, text in lines:
        if room < len(text) + 1:
            if not out and room > len(CUT) + 1:
                out.append((number, text[: room - len(CUT) - 1] + CUT))
            break
        out.append((number, text))
        room -= len(text) + 1
    return out


def _choose(pieces: list[tuple[int, Numbered]], budget: int) -> list[tuple[int, Numbered]]:
    """The first block and as many of the last ones as fit; each piece pays for two markers."""
    if not pieces:
        return []
    (ordinal, first), rest = pieces[0], pieces[1:]
    head = _fit(first, (budget // 2 if rest else budget) - 2 * _MARK)
    left = budget - _cost(head) - 2 * _MARK
    chosen: list[tuple[int, Numbered]] = []
    for later, lines in reversed(rest):
        if _cost(lines) + 2 * _MARK > left:
            if not chosen and left > 2 * _MARK:  # the last block, cut: its start holds the error
                chosen.append((later, _fit(lines, left - 2 * _MARK)))
                left -= _cost(chosen[-1][1]) + 2 * _MARK
            break
        chosen.append((later, lines))
        left -= _cost(lines) + 2 * _MARK
    if len(head) < len(first) and left > 0:  # room the last blocks did not need
        head = _fit(first, _cost(head) + left)
    return [(ordinal, head), *reversed(chosen)]


def _join(pieces: list[tuple[int, Numbered]]) -> str:
    """The lines in order with a marker for each gap; a line shown once (shared steps)."""
    out: list[str] = []
    previous, previous_ordinal = -1, 0
    for ordinal, lines in pieces:
        unseen = max(ordinal - previous_ordinal - 1, 0)  # blocks left out before this piece
        for number, text in lines:
            if 0 <= number <= previous:
                continue
            if number - previous > 1:
                blocks = f", {unseen:,} error block{'s' * (unseen > 1)} not shown" if unseen else ""
                out.append(f"[… {number - previous - 1:,} lines{blocks} …]")
            unseen = 0
            out.append(text)
            previous = max(number, previous)
        previous_ordinal = ordinal
    return "\n".join(out)


def excerpt_text(text: str, limit: int = 10_000) -> str:
    excerpt = LogExcerpt(limit)
    excerpt.feed_text(text)
    return excerpt.result()


async def excerpt_stream(chunks: AsyncIterable[bytes], limit: int = 10_000) -> str:
    excerpt = LogExcerpt(limit)
    async for chunk in chunks:
        excerpt.feed(chunk)
    return excerpt.result()


def failing_command(text: str) -> str | None:
    """The command of the step that failed: the `Run …` group above the first ##[error] or error."""
    excerpt = LogExcerpt()
    excerpt.feed_text(text)
    excerpt.close()
    return excerpt.failing_command()
