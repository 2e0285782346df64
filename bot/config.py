"""Per-repo configuration: `.github/compound.yml`, merged over defaults.

Every key is optional. A file that is not valid YAML, or holds an unknown key
or a bad value, never stops Compound: `parse_config` answers the defaults and a
short message naming the key (and its line), meant for a comment on GitHub.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import functools
import http
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final, Literal

import gidgethub
import pathspec
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

if TYPE_CHECKING:
    from gidgethub.abc import GitHubAPI

    from bot.settings import Settings

CONFIG_PATH = ".github/compound.yml"

# Aliases every repo has; a repo's `models` adds to them or overrides them.
DEFAULT_MODELS: dict[str, str] = {
    "opus": "claude-opus-4-6",
    "sonnet": "claude-sonnet-4-5",
}
# `agent:<suffix>` labels Compound uses itself: never read as model aliases.
RESERVED_LABEL_SUFFIXES = frozenset({"needs-human"})
MODEL_LABEL_PREFIX = "agent:"
# Whose comments the prompt quotes (`prompt_comments`): people with write
# access and Compound itself, or everyone (still quoted as data).
PromptComments = Literal["writers", "everyone"]
PROMPT_COMMENTS_WRITERS: Final[PromptComments] = "writers"
PROMPT_COMMENTS_EVERYONE: Final[PromptComments] = "everyone"

LABEL_MAX = 50  # GitHub's limit on a label name
_ALIAS = re.compile(r"[a-z0-9][a-z0-9._-]{0,39}")
_MESSAGE_ERRORS = 5  # errors listed in one message; the rest are counted


def _label(value: str) -> str:
    value = value.strip()
    if not value:
        raise PydanticCustomError("label", "a label name must not be empty")
    if len(value) > LABEL_MAX:
        raise PydanticCustomError("label", f"a label name has at most {LABEL_MAX} characters")
    return value


def _non_empty(values: list[str], what: str) -> list[str]:
    out = []
    for value in values:
        value = value.strip()
        if not value:
            raise PydanticCustomError("empty", f"{what} must not be empty strings")
        out.append(value)
    return out


def _one_or_many(value: object) -> object:
    """`test_commands: pytest -q` means a list of one."""
    return [value] if isinstance(value, str) else value


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backend: Literal["claude-code", "codex", "aider", "command"] | None = None
    args: list[str] = Field(default_factory=list)
    timeout: float | None = Field(default=None, gt=0)

    @field_validator("args", mode="before")
    @classmethod
    def _args(cls, value: object) -> object:
        return _one_or_many(value)


class LessonsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The share of in-scope sessions held out of each lesson; None: LESSON_HOLDOUT.
    holdout: float | None = Field(default=None, ge=0.0, le=0.9)
    # Whether lessons go into this repo's prompts at all (they are still mined and reported).
    enabled: bool = True
    # After each session, a `reflect` task through the agent backend distils 0–3 lessons.
    reflect: bool = False


class RepoConfig(BaseModel):
    """The keys of `.github/compound.yml` (docs/design.md §5); None means the service's setting."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trigger_label: str = "agent"
    models: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_MODELS))
    label_models: dict[str, str] = Field(default_factory=dict)
    agent: AgentConfig = Field(default_factory=AgentConfig)
    max_ci_rounds: int | None = Field(default=None, ge=0)
    max_review_rounds: int | None = Field(default=None, ge=0)
    setup_commands: list[str] = Field(default_factory=list)
    test_commands: list[str] = Field(default_factory=list)
    forbidden_paths: list[str] = Field(default_factory=list)
    prompt: str = Field(default="", max_length=10_000)
    allowed_bots: list[str] = Field(default_factory=list)
    prompt_comments: PromptComments = PROMPT_COMMENTS_WRITERS
    lessons: LessonsConfig = Field(default_factory=LessonsConfig)
    # Prompt variants not to pick any more, as `<kind>.<variant>` (e.g. `task.concise`).
    retired_variants: list[str] = Field(default_factory=list)
    # `labels`: the model comes from labels and `label_models` only; `learned`: when no
    # label chose one, the cheapest model whose first-try rate is near the best's.
    routing: Literal["labels", "learned"] = "labels"

    @field_validator("trigger_label")
    @classmethod
    def _trigger_label(cls, value: str) -> str:
        return _label(value)

    @field_validator("models")
    @classmethod
    def _models(cls, value: dict[str, str]) -> dict[str, str]:
        merged = dict(DEFAULT_MODELS)
        for alias, model in value.items():
            key = alias.strip().lower()
            if not _ALIAS.fullmatch(key):
                raise PydanticCustomError(
                    "alias", f"model alias {alias!r} must be 1-40 letters, digits, '.', '_' or '-'"
                )
            if key in RESERVED_LABEL_SUFFIXES:
                raise PydanticCustomError("alias", f"model alias {alias!r} is reserved")
            model = model.strip()
            if not model or any(c.isspace() for c in model):
                raise PydanticCustomError("model", f"the model id for {alias!r} must be non-empty, without spaces")
            merged[key] = model
        return merged

    @field_validator("label_models")
    @classmethod
    def _label_models(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        # `models` is declared first, so it is in info.data unless it was invalid
        # (then its own error is reported and this check would only add noise).
        known = info.data.get("models")
        out = {}
        for label, alias in value.items():
            label, alias = _label(label), alias.strip().lower()
            if known is not None and alias not in known:
                raise PydanticCustomError(
                    "alias",
                    f"label {label!r} points to unknown model alias {alias!r} (known: {', '.join(sorted(known))})",
                )
            out[label] = alias
        return out

    @field_validator("setup_commands", "test_commands", "allowed_bots", "forbidden_paths", mode="before")
    @classmethod
    def _lists(cls, value: object) -> object:
        return _one_or_many(value)

    @field_validator("setup_commands", "test_commands")
    @classmethod
    def _commands(cls, value: list[str]) -> list[str]:
        return _non_empty(value, "commands")

    @field_validator("allowed_bots")
    @classmethod
    def _bots(cls, value: list[str]) -> list[str]:
        return _non_empty(value, "bot logins")

    @field_validator("forbidden_paths")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        value = _non_empty(value, "path patterns")
        for pattern in value:
            try:
                _spec((pattern,))
            except (ValueError, TypeError) as exc:
                raise PydanticCustomError("pattern", f"{pattern!r} is not a valid path pattern: {exc}") from None
        return value

    def allows_bot(self, login: str) -> bool:
        """Whether events sent by this bot account may start work (`allowed_bots`)."""
        wanted = login.lower().removesuffix("[bot]")
        return any(bot.lower().removesuffix("[bot]") == wanted for bot in self.allowed_bots)


# -- parsing -------------------------------------------------------------------


def parse_config(text: str | None) -> tuple[RepoConfig, str | None]:
    """The config a file holds, or the defaults and why the file was refused.

    Never raises: the message is short, names the key(s) and lines, and reads
    well in a GitHub comment.
    """
    if text is None or not text.strip():
        return RepoConfig(), None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return RepoConfig(), _yaml_message(exc)
    except RecursionError:
        return RepoConfig(), f"`{CONFIG_PATH}` is nested too deeply to read."
    if data is None:  # only comments
        return RepoConfig(), None
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a single {type(data).__name__} value"
        return RepoConfig(), (
            f"`{CONFIG_PATH}` must be a mapping of keys to values (like `trigger_label: agent`), but it is {kind}."
        )
    try:
        return RepoConfig.model_validate(data), None
    except ValidationError as exc:
        return RepoConfig(), _validation_message(exc, text)


def _yaml_message(exc: yaml.YAMLError) -> str:
    where = ""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is not None:
        where = f" (line {mark.line + 1}, column {mark.column + 1})"
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"`{CONFIG_PATH}` is not valid YAML{where}: {problem}."


def _validation_message(exc: ValidationError, text: str) -> str:
    lines = _key_lines(text)
    errors = exc.errors(include_url=False, include_input=False)
    parts = []
    for err in errors[:_MESSAGE_ERRORS]:
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        line = lines.get(loc)
        where = f" (line {line})" if line else ""
        if err["type"] == "extra_forbidden":
            message = "unknown key" + _suggestion(loc)
        else:
            message = err["msg"]
        parts.append(f"`{key}`{where}: {message}")
    if len(errors) > _MESSAGE_ERRORS:
        parts.append(f"… and {len(errors) - _MESSAGE_ERRORS} more")
    return "\n".join(parts)


def _suggestion(loc: tuple[Any, ...]) -> str:
    model: type[BaseModel] = RepoConfig
    if len(loc) == 2 and loc[0] == "agent":
        model = AgentConfig
    elif len(loc) != 1:
        return ""
    known = list(model.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    if close:
        return f"; did you mean `{close[0]}`?"
    return f"; the keys are {', '.join(known)}"


def _key_lines(text: str) -> dict[tuple[Any, ...], int]:
    """Line numbers (1-based) of every mapping key and list item, by their path."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError):
        return {}
    found: dict[tuple[Any, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[Any, ...], depth: int) -> None:
        if depth > 4:
            return
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else None
                found.setdefault((*path, name), key.start_mark.line + 1)
                walk(value, (*path, name), depth + 1)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                found.setdefault((*path, i), item.start_mark.line + 1)
                walk(item, (*path, i), depth + 1)

    if root is not None:
        walk(root, (), 0)
    return found


# -- reading from GitHub -------------------------------------------------------


async def load_repo_config(
    gh: GitHubAPI, owner: str, repo: str, ref: str | None = None
) -> tuple[RepoConfig, str | None]:
    """The repo's config from its default branch (or `ref`).

    No file is the defaults, without a message. Errors other than 404 are
    raised, so that the caller retries rather than run with the wrong config.
    """
    url = "/repos/{owner}/{repo}/contents/" + CONFIG_PATH
    params = {"owner": owner, "repo": repo}
    if ref is not None:
        url += "{?ref}"
        params["ref"] = ref
    try:
        data = await gh.getitem(url, params)
    except gidgethub.BadRequest as exc:
        if exc.status_code == http.HTTPStatus.NOT_FOUND:
            return RepoConfig(), None
        raise
    if not isinstance(data, dict) or data.get("type") != "file":
        return RepoConfig(), f"`{CONFIG_PATH}` is not a file."
    if data.get("encoding") != "base64":
        # GitHub leaves `content` empty for files over 1 MB.
        return RepoConfig(), f"`{CONFIG_PATH}` is too large to read."
    try:
        text = base64.b64decode(data.get("content") or "").decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return RepoConfig(), f"`{CONFIG_PATH}` is not UTF-8 text."
    return parse_config(text)


# -- using the config ----------------------------------------------------------


class UnknownModelAlias(ValueError):
    """A `/agent model <alias>` or `agent:<alias>` label names no configured model."""

    def __init__(self, alias: str, known: Iterable[str]) -> None:
        self.alias = alias
        self.known = sorted(known)
        super().__init__(f"unknown model alias {alias!r}; known aliases: {', '.join(self.known)}")


def model_label_alias(config: RepoConfig, label: str) -> str | None:
    """The alias an `agent:<alias>` (or `<trigger_label>:<alias>`) label names, if it is one."""
    lowered = label.strip().lower()
    for prefix in {MODEL_LABEL_PREFIX, config.trigger_label.lower() + ":"}:
        if lowered.startswith(prefix):
            suffix = lowered[len(prefix) :].strip()
            if suffix and suffix not in RESERVED_LABEL_SUFFIXES:
                return suffix
    return None


def resolve_model(
    config: RepoConfig, default_model: str | None, labels: Iterable[str], alias: str | None = None
) -> str | None:
    """The model a session should use.

    Precedence: an explicit alias (`/agent model <alias>`), else an
    `agent:<alias>` label, else the first label that `label_models` maps, else
    `default_model` (the service's AGENT_MODEL; None lets the backend choose).
    Aliases are matched without regard to case. An alias that is not
    configured raises `UnknownModelAlias`: a model id is never accepted in
    place of an alias, so that a typo cannot pick an unexpected model.
    """
    labels = list(labels)
    if alias is None:
        alias = next((a for a in (model_label_alias(config, lb) for lb in labels) if a), None)
    if alias is not None:
        key = alias.strip().lower()
        if key not in config.models:
            raise UnknownModelAlias(alias, config.models)
        return config.models[key]
    by_label = {label.lower(): a for label, a in config.label_models.items()}
    for label in labels:
        mapped = by_label.get(label.strip().lower())
        if mapped is not None:
            return config.models[mapped]
    return default_model


@functools.lru_cache(maxsize=256)
def _spec(patterns: tuple[str, ...]) -> pathspec.GitIgnoreSpec:
    return pathspec.GitIgnoreSpec.from_lines(patterns)


def is_forbidden(path: str, patterns: Iterable[str]) -> bool:
    """Whether `path` (relative to the repo root) matches `forbidden_paths`.

    The patterns are read as a .gitignore is: `secrets/**` and `secrets/`
    cover everything below `secrets/`, `*.pem` matches at any depth,
    `/top.txt` only at the root, and `!pattern` makes an exception.
    """
    patterns = tuple(patterns)
    if not patterns:
        return False
    path = path.replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    path = path.lstrip("/")
    return bool(path) and _spec(patterns).match_file(path)


def effective_rounds(config: RepoConfig, settings: Settings) -> tuple[int, int]:
    """(CI rounds, review rounds) before escalation: the repo's, else the service's."""
    ci = config.max_ci_rounds if config.max_ci_rounds is not None else settings.max_ci_rounds
    review = config.max_review_rounds if config.max_review_rounds is not None else settings.max_review_rounds
    return ci, review


def effective_timeout(config: RepoConfig, settings: Settings) -> float:
    """The agent's timeout: the repo may shorten AGENT_TIMEOUT, never extend it."""
    if config.agent.timeout is None:
        return settings.agent_timeout
    return min(config.agent.timeout, settings.agent_timeout)
