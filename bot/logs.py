"""Structured logging with delivery/installation/repo context and secret redaction.

Every record passes through `Redactor`, so a token that slips into a message,
an exception or an extra field is replaced before any handler formats it.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
import traceback
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import IO, Any

import orjson

# Context fields attached to every record logged while handling a delivery.
_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("log_context", default=None)

REDACTED = "[REDACTED]"

# Shapes of credentials GitHub and the agents' providers hand out, plus the
# places a credential sits in HTTP and git text.
_PATTERNS = [
    r"\bgh[pousr]_[A-Za-z0-9]{20,}\b",
    r"\bgithub_pat_[A-Za-z0-9_]{20,}\b",
    r"\bv1\.[0-9a-f]{40}\b",
    r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",  # JWTs
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)",
    r"(?i:(?<=authorization: )(?:token|bearer|basic) [^\s'\"]+)",
    r"(?i:(?<=x-access-token:)[^@\s'\"]+)",
    r"\bsk-(?:ant-)?[A-Za-z0-9_-]{16,}\b",
]
_BASE_RE = re.compile("|".join(f"(?:{p})" for p in _PATTERNS), re.DOTALL)


class Redactor:
    """Replaces credentials (by shape, and known secret values) in text."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._secret_re: re.Pattern[str] | None = None

    def add_secret(self, value: str | None) -> None:
        if value and len(value) >= 6:
            self._secrets.add(value)
            # PEM keys arrive with real or escaped newlines; match each line too.
            self._secrets.update(line for line in value.splitlines() if len(line) >= 16)
            alternatives = sorted(self._secrets, key=len, reverse=True)
            self._secret_re = re.compile("|".join(re.escape(s) for s in alternatives))

    def __call__(self, text: str) -> str:
        text = _BASE_RE.sub(REDACTED, text)
        if self._secret_re is not None:
            text = self._secret_re.sub(REDACTED, text)
        return text


redactor = Redactor()


def install_record_context() -> None:
    """Make every LogRecord carry the current `log_context` fields (idempotent).

    A record factory, not a handler filter, so that every handler (pytest's
    capture and Sentry's included) sees the delivery id.
    """
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_compound", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        # One attribute, so that a call's own `extra` never collides with it.
        record.context = _context.get() or {}
        return record

    factory._compound = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


class _ContextFilter(logging.Filter):
    """Redacts the record in place before any of our handlers formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = redactor(message)
        record.args = None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = redactor("".join(traceback.format_exception(*record.exc_info)))
            record.exc_info = None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, redactor(value))
        return True


_STANDARD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "context",
}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The context fields, then the call's own `extra` fields."""
    fields = dict(getattr(record, "context", None) or {})
    for key, value in record.__dict__.items():
        if key not in _STANDARD_ATTRS and not key.startswith("_"):
            fields[key] = value
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update(_fields(record))
        if record.exc_text:
            doc["exc"] = record.exc_text
        return orjson.dumps(doc, default=str).decode()


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = f"{self.formatTime(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if extras:
            line += f" [{extras}]"
        if record.exc_text:
            line += "\n" + record.exc_text
        return line


_filter = _ContextFilter()


def setup_logging(
    level: str = "info",
    fmt: str = "json",
    secrets: Iterable[str | None] = (),
    stream: IO[str] | None = None,
) -> None:
    """Configure the root logger once; safe to call again (tests do)."""
    for secret in secrets:
        redactor.add_secret(secret)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_filter)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_compound", False):
            root.removeHandler(old)
    handler._compound = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    install_record_context()
    # aiohttp's access log would log every delivery at full rate; we log our own line.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
    install_redaction()


def install_redaction() -> None:
    """Redact in every handler of the root logger (also pytest's capture handlers)."""
    root = logging.getLogger()
    for handler in root.handlers:
        if _filter not in handler.filters:
            handler.addFilter(_filter)


def redact_event(event: Any, hint: Any = None) -> Any:
    """Sentry `before_send`: the same redaction for everything an error report carries."""
    if isinstance(event, str):
        return redactor(event)
    if isinstance(event, dict):
        return {k: redact_event(v) for k, v in event.items()}
    if isinstance(event, list | tuple):
        return [redact_event(v) for v in event]
    return event


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Attach fields (delivery, installation, repo, …) to every record inside."""
    token = _context.set({**(_context.get() or {}), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)
