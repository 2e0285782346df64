"""A GitHub twin for Compound's tests: see README.md."""

from .server import GitHubTwin

__all__ = ["GitHubTwin"]
