"""The real Claude Code CLI against a scripted Messages API (see server.py)."""
