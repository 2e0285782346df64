"""Compound: a GitHub App that runs AI coding agents on issues and pull requests."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("compound")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0.0.0"
