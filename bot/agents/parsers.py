"""Final message and usage from each CLI's documented output.

Every parser takes the kept output lines, in order, and tolerates anything else
among them: banners, warnings, truncated or garbled JSON.

- Claude Code, `-p --output-format stream-json --verbose`: one JSON object a
  line; the last, `{"type": "result", ...}`, carries `result` (the final
  message), `is_error`, `num_turns`, `total_cost_usd`, `usage` (input, output
  and cache token counts) and `modelUsage` (per model, with `costUSD`).
- Codex, `codex exec --json` (openai/codex docs/exec.md, exec_events.rs):
  JSONL thread events; `turn.completed` carries `usage` {input_tokens,
  cached_input_tokens, output_tokens} (cached tokens are part of input_tokens);
  `item.completed` with an item of type `agent_message` carries `text`;
  `turn.failed` and `error` carry an error message. No cost is reported.
- Aider (aider/coders/base_coder.py): after each reply a report
  `Tokens: 2.3k sent, 1.1k cache write, 5.6k cache hit, 344 received.` and,
  when the model's price is known, `Cost: $0.01 message, $0.05 session.` (on
  the same line, or the next when both cache figures are shown). Counts are
  abbreviated (`12k`), so totals are approximate.
"""

from __future__ import annotations

import json
import re
from typing import Any

from bot.agents.base import AgentUsage

MESSAGE_LIMIT = 20_000  # characters of final message kept


def _json_object(line: str) -> dict[str, Any] | None:
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _clip(text: str | None) -> str | None:
    if text is None:
        return None
    text = text.strip()
    if not text:
        return None
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


# --- Claude Code ----------------------------------------------------------------


_CLAUDE_KEEP_RE = re.compile(r'"(?:type|subtype)":\s*"(?:result|init)"')
_CLAUDE_ASSISTANT_RE = re.compile(r'"type":\s*"assistant"')
_CLAUDE_TEXT_RE = re.compile(r'"type":\s*"text"')


def claude_wants(line: str) -> bool:
    head = line[:200]
    return bool(_CLAUDE_KEEP_RE.search(head) or (_CLAUDE_ASSISTANT_RE.search(head) and _CLAUDE_TEXT_RE.search(line)))


def parse_claude(lines: list[str]) -> tuple[str | None, AgentUsage]:
    usage = AgentUsage()
    result: dict[str, Any] | None = None
    last_text: str | None = None
    for line in lines:
        event = _json_object(line)
        if event is None:
            continue
        kind = event.get("type")
        if kind == "system" and event.get("subtype") == "init" and isinstance(event.get("model"), str):
            usage.model = event["model"]
        elif kind == "assistant":
            text = _assistant_text(event.get("message"))
            if text:
                last_text = text
        elif kind == "result":
            result = event
    if result is None:
        # Killed or crashed before the end: the last thing the model said.
        return _clip(last_text), usage
    message = result.get("result")
    if not isinstance(message, str):
        message = last_text
    raw: dict[str, Any] = result["usage"] if isinstance(result.get("usage"), dict) else {}
    counts = [_int(raw.get(k)) for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")]
    if any(c is not None for c in counts):
        usage.input_tokens = sum(c or 0 for c in counts)
    usage.output_tokens = _int(raw.get("output_tokens"))
    usage.cost_usd = _number(result.get("total_cost_usd"))
    by_model = result.get("modelUsage")
    if isinstance(by_model, dict) and by_model:
        # The main model is the one that cost most (small models run side tasks).
        usage.model = max(by_model, key=lambda m: _number((by_model[m] or {}).get("costUSD")) or 0.0)
    return _clip(message), usage


def _assistant_text(message: Any) -> str | None:
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        return None
    texts = [
        block["text"]
        for block in message["content"]
        if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str)
    ]
    return "\n".join(texts) or None


# --- Codex ------------------------------------------------------------------------


_CODEX_KEEP_RE = re.compile(r'"(?:turn\.completed|turn\.failed|error|agent_message|assistant_message)"')


def codex_wants(line: str) -> bool:
    return bool(_CODEX_KEEP_RE.search(line[:300]))


def parse_codex(lines: list[str]) -> tuple[str | None, AgentUsage]:
    usage = AgentUsage()
    message: str | None = None
    error: str | None = None
    for line in lines:
        event = _json_object(line)
        if event is None:
            continue
        kind = event.get("type")
        if kind == "turn.completed" and isinstance(event.get("usage"), dict):
            turn = event["usage"]
            for attr, key in (("input_tokens", "input_tokens"), ("output_tokens", "output_tokens")):
                count = _int(turn.get(key))
                if count is not None:
                    setattr(usage, attr, (getattr(usage, attr) or 0) + count)
        elif kind == "item.completed" and isinstance(event.get("item"), dict):
            item = event["item"]
            # Early releases named the field item_type and the type assistant_message.
            item_type = item.get("type", item.get("item_type"))
            if item_type in ("agent_message", "assistant_message") and isinstance(item.get("text"), str):
                message = item["text"]
        elif kind == "turn.failed" and isinstance(event.get("error"), dict):
            error = event["error"].get("message") or error
        elif kind == "error" and isinstance(event.get("message"), str):
            error = event["message"]
    if message is None and error:
        message = f"codex error: {error}"
    return _clip(message), usage


# --- Aider -------------------------------------------------------------------------

_COUNT = r"([\d][\d,]*(?:\.\d+)?[kKmM]?)"
_SENT_RE = re.compile(rf"Tokens:\s*{_COUNT} sent")
_RECEIVED_RE = re.compile(rf"{_COUNT} received\.")
_COST_RE = re.compile(r"Cost:\s*\$([\d.]+) message,\s*\$([\d.]+) session")
_MODEL_RE = re.compile(r"^(?:Main model|Model):\s*(\S+)")
_AIDER_NOISE_RE = re.compile(
    r"^(?:Aider v|Main model:|Model:|Weak model:|Editor model:|Git repo:|Repo-map:|Added .* to the chat|"
    r"Applied edit to |Commit [0-9a-f]+|Use /help|https://aider\.chat|Cost:)"
)


def aider_wants(line: str) -> bool:
    return True  # the reply is plain text among the rest; the runner bounds what it keeps


def _count(text: str) -> int:
    text = text.replace(",", "")
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1].lower(), 1)
    if scale != 1:
        text = text[:-1]
    return round(float(text) * scale)


def parse_aider(lines: list[str]) -> tuple[str | None, AgentUsage]:
    usage = AgentUsage()
    reply: list[str] = []
    last_reply: list[str] = []
    for raw in lines:
        line = raw.strip()
        model = _MODEL_RE.match(line)
        if model:
            usage.model = model.group(1)
        cost = _COST_RE.search(line)
        if cost:
            usage.cost_usd = float(cost.group(2))
        sent = _SENT_RE.search(line)
        if sent:
            usage.input_tokens = (usage.input_tokens or 0) + _count(sent.group(1))
            received = _RECEIVED_RE.search(line)
            if received:
                usage.output_tokens = (usage.output_tokens or 0) + _count(received.group(1))
            # A usage report closes a reply: what came before it is that reply.
            last_reply, reply = reply, []
        elif not cost and not _AIDER_NOISE_RE.match(line):
            reply.append(raw.rstrip())
    text = "\n".join(last_reply or reply)
    return _clip(text), usage


# --- Any command ----------------------------------------------------------------------


def parse_command(lines: list[str]) -> tuple[str | None, AgentUsage]:
    """An arbitrary CLI reports nothing we can rely on: its last line of output."""
    for line in reversed(lines):
        if line.strip():
            return _clip(line), AgentUsage()
    return None, AgentUsage()
