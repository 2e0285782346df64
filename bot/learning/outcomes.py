"""A session's outcome, computed from what the store holds about it.

First-try success: merged with no `ci_fix`, `review_fix` or `rebase` round
that ran (a round cancelled before its agent started does not count).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from bot.learning.kinds import areas_of, task_kind
from bot.store.learning import Outcome
from bot.store.sessions import R_DONE, R_FAILED, R_STOPPED, RoundRow, SessionRow

HEALING = ("ci_fix", "review_fix", "rebase")
RAN = frozenset({R_DONE, R_FAILED, R_STOPPED})
MAX_FILES = 500


def ran(rounds: list[RoundRow]) -> list[RoundRow]:
    return [r for r in rounds if r.status in RAN]


def lessons_of(round_: RoundRow) -> dict[str, list[int]]:
    data = json.loads(round_.lessons or "{}")
    return {"carried": list(data.get("carried") or []), "held_out": list(data.get("held_out") or [])}


def build(
    session: SessionRow,
    rounds: list[RoundRow],
    events: list[tuple[str, dict[str, Any]]],
    outcome: str,
    ended_at: datetime,
) -> Outcome:
    done = ran(rounds)
    count = {kind: sum(1 for r in done if r.kind == kind) for kind in HEALING}
    first = rounds[0] if rounds else None
    context = first.context_data() if first else {}
    labels = [str(x) for x in context.get("labels") or []]
    files: list[str] = []
    for type_, data in events:
        if type_ == "round.pushed":
            files.extend(str(f) for f in data.get("files") or [])
    files = sorted(set(files))[:MAX_FILES]
    categories = sorted({c for r in done for c in r.category_list()})
    carried = sorted({i for r in done for i in lessons_of(r)["carried"]})
    held_out = sorted({i for r in done for i in lessons_of(r)["held_out"]} - set(carried))
    first_try = outcome == "merged" and not any(count.values())
    pr_round = next((r for r in rounds if r.kind in ("task", "command") and r.status == R_DONE), None)
    model = next((r.model for r in done if r.model), None) or session.model
    variants = []
    for i, r in enumerate(done):
        if not r.prompt_variant:
            continue
        if r.kind == "task":
            success = first_try
        else:  # a follow-up's variant: it resolved its kind if the PR merged with no other round of it after
            success = outcome == "merged" and not any(later.kind == r.kind for later in done[i + 1 :])
        variants.append((r.kind, r.prompt_variant, success))
    return Outcome(
        session_id=session.id,
        repo=session.repo,
        installation_id=session.installation_id,
        issue_number=session.issue_number,
        pr_number=session.pr_number,
        outcome=outcome,
        first_try=first_try,
        ci_rounds=count["ci_fix"],
        review_rounds=count["review_fix"],
        rebase_rounds=count["rebase"],
        started_at=session.created_at,
        ended_at=ended_at,
        pr_opened_at=pr_round.finished_at if pr_round and session.pr_number else None,
        backend=session.backend,
        task_kind=task_kind(labels, session.issue_title),
        input_tokens=sum(r.input_tokens or 0 for r in done),
        output_tokens=sum(r.output_tokens or 0 for r in done),
        cost_usd=round(sum(r.cost_usd or 0.0 for r in done), 6),
        model=model,
        prompt_template=first.kind if first else None,
        prompt_variant=first.prompt_variant if first else None,
        categories=categories,
        labels=labels,
        files=files,
        areas=areas_of(files),
        lessons=carried,
        held_out=held_out,
        variants=variants,
    )
