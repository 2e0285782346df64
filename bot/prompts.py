"""The prompts Compound hands its agents, rendered from Jinja2 templates.

`prompts/<kind>.md.j2` is a kind's "default" variant, `prompts/<kind>.<variant>.md.j2`
another one (the learning loop picks among them, docs/design.md §6). Files starting
with `_` are shared partials.

Text written on GitHub (issue title, body and comments, review comments, CI
output) is data, never instructions. Templates quote it with the `data`
filter: a fenced block whose fence is longer than any backtick run in the
text, so the text cannot close it, opened by an info string carrying a random
per-prompt boundary (`data-<boundary>`) that the text cannot know in advance.
Everything about such a text (its author, path, check name) goes into that
info string, cleaned to one line without backticks, never into the prose.
"""

from __future__ import annotations

import importlib.resources
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jinja2

from bot.config import RepoConfig

KINDS = ("task", "ci_fix", "review_fix", "rebase", "command", "reflect")
DEFAULT_VARIANT = "default"
SUFFIX = ".md.j2"

# Bounds on what one prompt quotes (characters). Tails keep their end.
ISSUE_BODY_LIMIT = 20_000
COMMENT_LIMIT = 5_000
MAX_COMMENTS = 30  # the most recent ones
INSTRUCTIONS_LIMIT = 10_000
CHECK_TEXT_LIMIT = 5_000
LOG_TAIL_LIMIT = 10_000
MAX_FAILURES = 10
MAX_ANNOTATIONS = 30
ANNOTATION_LIMIT = 500
MAX_REVIEW_COMMENTS = 50
DIFF_HUNK_LIMIT = 2_000
MAX_CONFLICTS = 100
LESSON_LIMIT = 500
LABEL_LIMIT = 200

_VARIANT = re.compile(r"[a-z0-9][a-z0-9_-]*")
_BACKTICKS = re.compile(r"`+")
_UNPRINTABLE_KEEP_TICKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029`]+")


@dataclass
class Comment:
    author: str
    body: str
    path: str | None = None
    line: int | None = None
    # Review comments: the diff lines the comment is on, and the thread's
    # earlier comment it answers (`in_reply_to_id`), quoted as data too.
    diff_hunk: str = ""
    in_reply_to: Comment | None = None
    id: int | None = None
    # The thread's top-level comment, the one replies go to (GitHub takes no
    # reply to a reply); None for a comment that starts its thread.
    thread: int | None = None


@dataclass
class CheckFailure:
    name: str
    conclusion: str
    summary: str = ""
    text: str = ""
    annotations: list[str] = field(default_factory=list)
    log_tail: str = ""
    # lint, type, test, build, timeout, infra or other (bot/ci/classify.py)
    category: str = "other"
    url: str = ""
    # GitHub Actions: the command of the step that failed (`Run …` in the job log)
    command: str | None = None


@dataclass
class PromptContext:
    kind: str
    repo: str
    issue_number: int | None = None
    issue_title: str = ""
    issue_body: str = ""
    comments: list[Comment] = field(default_factory=list)
    # Comments not quoted because their authors lack write access (and the
    # repo's `prompt_comments` is `writers`): bot/sessions/commenters.py.
    left_out_comments: int = 0
    instructions: str = ""
    pr_number: int | None = None
    branch: str | None = None
    config: RepoConfig = field(default_factory=RepoConfig)
    lessons: list[str] = field(default_factory=list)
    failures: list[CheckFailure] = field(default_factory=list)
    review_comments: list[Comment] = field(default_factory=list)
    left_out_review_comments: int = 0
    # rebase rounds: the base branch merged in, and the files git could not merge
    base_branch: str | None = None
    conflicts: list[str] = field(default_factory=list)
    # reflect: the finished session's rounds, as text (agents' summaries included: data)
    timeline: str = ""


@dataclass
class Prompt:
    text: str
    kind: str
    variant: str
    template: str
    # The data blocks' boundary in this prompt (`data-<boundary>`).
    boundary: str = ""


def default_directory() -> Path:
    """Where the templates are read from: `./prompts` when it holds templates
    (the Docker image's /app, or an operator's own variants), else the copy
    installed with the package (`bot.prompt_files`, which is `prompts/` of the
    source tree), else the `prompts/` of a source checkout run without
    installing."""
    here = Path.cwd() / "prompts"
    if (here / f"task{SUFFIX}").is_file():
        return here
    try:
        # A namespace package: joinpath gives the file's real path.
        packaged = Path(str(importlib.resources.files("bot.prompt_files").joinpath(f"task{SUFFIX}")))
    except ModuleNotFoundError:
        packaged = None
    if packaged is not None and packaged.is_file():
        return packaged.parent
    return Path(__file__).resolve().parent.parent / "prompts"


class Prompts:
    """The templates of one directory."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_directory()
        if not self.directory.is_dir():
            raise FileNotFoundError(f"prompt templates not found: {self.directory} is not a directory")
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(self.directory),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            autoescape=False,
        )
        self.env.filters.update({"oneline": oneline, "code": inline_code, "fenced": fenced, "bullet": bullet})

    def variants(self, kind: str) -> list[str]:
        """The kind's variants, "default" first, the others sorted."""
        _check_kind(kind)
        found = set()
        for path in self.directory.glob(f"{kind}.*{SUFFIX}"):
            middle = path.name[len(kind) : -len(SUFFIX)]
            if middle == "":
                found.add(DEFAULT_VARIANT)
            elif middle.startswith(".") and _VARIANT.fullmatch(middle[1:]):
                found.add(middle[1:])
        if (self.directory / f"{kind}{SUFFIX}").is_file():
            found.add(DEFAULT_VARIANT)
        others = sorted(found - {DEFAULT_VARIANT})
        return ([DEFAULT_VARIANT] if DEFAULT_VARIANT in found else []) + others

    def template_name(self, kind: str, variant: str = DEFAULT_VARIANT) -> str:
        known = self.variants(kind)
        if variant not in known:
            raise ValueError(f"unknown prompt variant {variant!r} for {kind!r}; known: {', '.join(known) or 'none'}")
        return f"{kind}{SUFFIX}" if variant == DEFAULT_VARIANT else f"{kind}.{variant}{SUFFIX}"

    def render(self, context: PromptContext, variant: str = DEFAULT_VARIANT) -> Prompt:
        name = self.template_name(context.kind, variant)
        bounded = bound(context)
        boundary = _boundary(_untrusted_texts(bounded))
        data = _data_filter(boundary)
        template = self.env.get_template(name)
        values = _template_values(bounded)
        values.update(
            boundary=boundary,
            data=data,
            omitted_comments=len(context.comments) - len(bounded.comments),
            omitted_failures=len(context.failures) - len(bounded.failures),
            omitted_review_comments=len(context.review_comments) - len(bounded.review_comments),
            omitted_conflicts=len(context.conflicts) - len(bounded.conflicts),
        )
        # Trailing blank lines only: a block ends with its fence, so none is cut.
        text = template.render(values).rstrip() + "\n"
        return Prompt(text=text, kind=context.kind, variant=variant, template=name, boundary=boundary)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown prompt kind {kind!r}; known: {', '.join(KINDS)}")


# -- bounding the inputs -------------------------------------------------------


def truncate_head(text: str, limit: int) -> str:
    """The first `limit` characters, and a marker saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n[… truncated: {len(text) - limit:,} more characters …]"


def truncate_tail(text: str, limit: int) -> str:
    """The last `limit` characters (a log's end is what matters), marked."""
    if len(text) <= limit:
        return text
    return f"[… truncated: {len(text) - limit:,} earlier characters …]\n{text[-limit:]}"


def bound(context: PromptContext) -> PromptContext:
    """A copy of the context with every quoted text within the limits above."""
    comments = context.comments[-MAX_COMMENTS:]
    failures = [
        replace(
            f,
            summary=truncate_head(f.summary, CHECK_TEXT_LIMIT),
            text=truncate_head(f.text, CHECK_TEXT_LIMIT),
            annotations=[truncate_head(a, ANNOTATION_LIMIT) for a in f.annotations[:MAX_ANNOTATIONS]],
            log_tail=truncate_tail(f.log_tail, LOG_TAIL_LIMIT),
        )
        for f in context.failures[:MAX_FAILURES]
    ]
    return replace(
        context,
        issue_title=truncate_head(context.issue_title, LABEL_LIMIT * 2),
        issue_body=truncate_head(context.issue_body, ISSUE_BODY_LIMIT),
        comments=[replace(c, body=truncate_head(c.body, COMMENT_LIMIT)) for c in comments],
        instructions=truncate_head(context.instructions, INSTRUCTIONS_LIMIT),
        timeline=truncate_head(context.timeline, INSTRUCTIONS_LIMIT),
        lessons=[truncate_head(lesson, LESSON_LIMIT) for lesson in context.lessons],
        failures=failures,
        review_comments=[
            replace(
                c,
                body=truncate_head(c.body, COMMENT_LIMIT),
                diff_hunk=truncate_tail(c.diff_hunk, DIFF_HUNK_LIMIT),
                in_reply_to=(
                    replace(c.in_reply_to, body=truncate_head(c.in_reply_to.body, COMMENT_LIMIT))
                    if c.in_reply_to is not None
                    else None
                ),
            )
            for c in context.review_comments[:MAX_REVIEW_COMMENTS]
        ],
        conflicts=context.conflicts[:MAX_CONFLICTS],
    )


def _template_values(context: PromptContext) -> dict[str, Any]:
    return {name: getattr(context, name) for name in context.__dataclass_fields__}


def _untrusted_texts(context: PromptContext) -> Iterable[str]:
    yield context.issue_title
    yield context.issue_body
    yield context.instructions
    yield context.timeline
    yield context.config.prompt
    for c in (*context.comments, *context.review_comments):
        yield c.author
        yield c.body
        yield c.path or ""
        yield c.diff_hunk
        if c.in_reply_to is not None:
            yield c.in_reply_to.author
            yield c.in_reply_to.body
    yield from context.conflicts
    for f in context.failures:
        yield from (f.name, f.conclusion, f.summary, f.text, f.log_tail, *f.annotations)


# -- filters -------------------------------------------------------------------


def _boundary(texts: Iterable[str]) -> str:
    """A random token that none of the texts contains."""
    texts = list(texts)
    while True:
        token = secrets.token_hex(8)
        if not any(token in t for t in texts):
            return token


def _normalise(text: str) -> str:
    # CommonMark ends a line at \r too: one line ending only, so that what a
    # reader sees as a line is what the fence logic counted.
    return text.replace("\r\n", "\n").replace("\r", "\n")


def fenced(text: str, info: str = "") -> str:
    """`text` in a fenced code block that nothing in `text` can close.

    The fence is one backtick longer than the longest run of backticks in the
    text (at least three), so no line of the text can be a closing fence.
    """
    text = _normalise(text)
    longest = max((len(m) for m in _BACKTICKS.findall(text)), default=0)
    fence = "`" * max(3, longest + 1)
    body = text if text.endswith("\n") or not text else text + "\n"
    return f"{fence}{oneline(info)}\n{body}{fence}"


def _data_filter(boundary: str) -> Callable[[str, str], str]:
    def data(text: str, label: str = "") -> str:
        """Untrusted text as a data block: ```data-<boundary> <label>."""
        info = f"data-{boundary} {oneline(label)}".rstrip()
        return fenced(text, info)

    return data


def oneline(text: object, limit: int = LABEL_LIMIT) -> str:
    """One line, no control characters or backticks, at most `limit` characters."""
    cleaned = " ".join(_UNPRINTABLE.sub(" ", str(text)).split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def bullet(text: str) -> str:
    """Compound's own text (a lesson) as one line; backticks stay, for code spans."""
    return " ".join(_UNPRINTABLE_KEEP_TICKS.sub(" ", text).split())


def inline_code(text: str) -> str:
    """Text as a markdown code span that its own backticks cannot end."""
    text = " ".join(_normalise(text).split("\n"))
    longest = max((len(m) for m in _BACKTICKS.findall(text)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"
