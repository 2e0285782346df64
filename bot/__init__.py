"""Compound: a GitHub App that runs AI coding agents on issues and pull requests."""

from typing import Any


def __getattr__(name: str) -> Any:
    # Read on first use: importlib.metadata costs every command ~15 ms, and only
    # `--version`, the start-up log line and Sentry's release need it.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("compound")
        except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
            value = "0.0.0"
        globals()["__version__"] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
