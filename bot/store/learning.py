"""The learning loop's tables: outcomes, lessons, and the trials that score them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, cast, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.store.base import aware, utcnow
from bot.store.schema import lesson_trials as lt
from bot.store.schema import lessons as ls
from bot.store.schema import outcomes as oc
from bot.store.schema import variant_trials as vt

# A lesson waits as a candidate until enough sessions show its pattern.
CANDIDATE, ACTIVE, RETIRED = "candidate", "active", "retired"
_JSON = ("categories", "labels", "files", "areas", "lessons", "held_out")


@dataclass
class Outcome:
    session_id: str
    repo: str
    installation_id: int
    issue_number: int
    pr_number: int | None
    outcome: str
    first_try: bool
    ci_rounds: int
    review_rounds: int
    rebase_rounds: int
    started_at: datetime
    ended_at: datetime
    backend: str
    task_kind: str
    pr_opened_at: datetime | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    model: str | None = None
    prompt_template: str | None = None
    prompt_variant: str | None = None
    categories: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    areas: list[str] = field(default_factory=list)
    lessons: list[int] = field(default_factory=list)
    held_out: list[int] = field(default_factory=list)
    # not stored in `outcomes`: each round's variant, scored into variant_trials
    variants: list[tuple[str, str, bool]] = field(default_factory=list)

    @property
    def time_to_pr(self) -> float | None:
        return (self.pr_opened_at - self.started_at).total_seconds() if self.pr_opened_at else None

    @property
    def time_to_resolution(self) -> float:
        return (self.ended_at - self.started_at).total_seconds()

    def row(self) -> dict[str, Any]:
        values = asdict(self)
        values.pop("variants")
        for name in _JSON:
            values[name] = json.dumps(values[name])
        return values


@dataclass
class Lesson:
    id: int
    key: str
    text: str
    repo: str
    area: str | None
    label: str | None
    task_kind: str | None
    source: str
    status: str
    pinned: bool
    evidence: list[str]
    reason: str | None
    created_at: datetime
    updated_at: datetime
    retired_at: datetime | None

    @property
    def scope(self) -> str:
        parts = [self.repo]
        if self.area and self.area != ".":  # `.` (top-level files) is every session's area
            parts.append(f"{self.area}/")
        if self.label:
            parts.append(f"label `{self.label}`")
        if self.task_kind:
            parts.append(f"{self.task_kind} tasks")
        return ", ".join(parts)

    @classmethod
    def from_row(cls, row: Any) -> Lesson:
        m = dict(row._mapping)
        m["evidence"] = json.loads(m["evidence"] or "[]")
        for name in ("created_at", "updated_at", "retired_at"):
            m[name] = aware(m[name]) if m[name] else None
        return cls(**m)


@dataclass(frozen=True)
class Trials:
    """A lesson's evidence: sessions that carried it and sessions held out of it."""

    with_success: int = 0
    with_total: int = 0
    holdout_success: int = 0
    holdout_total: int = 0


class LearningStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # -- outcomes -----------------------------------------------------------------

    async def save_outcome(self, outcome: Outcome) -> None:
        """Write (or rewrite) a session's outcome and its trials, in one transaction."""
        row = outcome.row()
        async with self.engine.begin() as conn:
            await conn.execute(delete(oc).where(oc.c.session_id == outcome.session_id))
            await conn.execute(insert(oc).values(**row))
            await conn.execute(delete(lt).where(lt.c.session_id == outcome.session_id))
            trials = [
                {
                    "lesson_id": i,
                    "session_id": outcome.session_id,
                    "carried": carried,
                    "success": outcome.first_try,
                    "ended_at": outcome.ended_at,
                }
                for ids, carried in ((outcome.lessons, True), (outcome.held_out, False))
                for i in sorted(set(ids))
            ]
            if trials:
                await conn.execute(insert(lt), trials)
            await conn.execute(delete(vt).where(vt.c.session_id == outcome.session_id))
            seen = {(kind, variant): success for kind, variant, success in outcome.variants}
            if seen:
                await conn.execute(
                    insert(vt),
                    [
                        {
                            "session_id": outcome.session_id,
                            "round_kind": kind,
                            "variant": variant,
                            "repo": outcome.repo,
                            "task_kind": outcome.task_kind,
                            "success": success,
                            "ended_at": outcome.ended_at,
                        }
                        for (kind, variant), success in seen.items()
                    ],
                )

    async def variant_counts(
        self, round_kind: str, task_kind: str, repo: str | None = None
    ) -> dict[str, tuple[int, int]]:
        """Per variant of ``round_kind`` within ``task_kind``: (successes, trials)."""
        stmt = (
            select(vt.c.variant, func.sum(cast(vt.c.success, Integer)), func.count())
            .where(vt.c.round_kind == round_kind, vt.c.task_kind == task_kind)
            .group_by(vt.c.variant)
        )
        if repo:
            stmt = stmt.where(vt.c.repo == repo)
        async with self.engine.connect() as conn:
            return {v: (int(s or 0), int(n)) for v, s, n in (await conn.execute(stmt)).all()}

    async def model_counts(self, repo: str, task_kind: str) -> dict[str, tuple[int, int, float]]:
        """Per model, in this repo and task kind: (first-try successes, sessions, mean cost)."""
        stmt = (
            select(oc.c.model, func.sum(cast(oc.c.first_try, Integer)), func.count(), func.avg(oc.c.cost_usd))
            .where(oc.c.repo == repo, oc.c.task_kind == task_kind, oc.c.model.is_not(None))
            .group_by(oc.c.model)
        )
        async with self.engine.connect() as conn:
            return {m: (int(s or 0), int(n), float(c or 0.0)) for m, s, n, c in (await conn.execute(stmt)).all()}

    # -- lessons --------------------------------------------------------------------

    async def upsert_lesson(
        self,
        key: str,
        text: str,
        repo: str,
        *,
        evidence: list[str],
        source: str = "mined",
        area: str | None = None,
        label: str | None = None,
        task_kind: str | None = None,
        need: int = 1,
    ) -> tuple[Lesson, bool]:
        """The lesson for ``key`` with ``evidence`` added: (lesson, activated now).

        It is a candidate until ``need`` sessions are its evidence, then
        active. A retired lesson stays retired (its evidence grows, its text
        does not come back); an edited one keeps the maintainer's text.
        """
        now = utcnow()
        async with self.engine.begin() as conn:
            row = (await conn.execute(select(ls).where(ls.c.key == key))).first()
            if row is None:
                status = ACTIVE if len(set(evidence)) >= need else CANDIDATE
                await conn.execute(
                    insert(ls).values(
                        key=key,
                        text=text,
                        repo=repo,
                        area=area,
                        label=label,
                        task_kind=task_kind,
                        source=source,
                        status=status,
                        pinned=False,
                        evidence=json.dumps(sorted(set(evidence))),
                        created_at=now,
                        updated_at=now,
                    )
                )
                activated = status == ACTIVE
            else:
                known = json.loads(row.evidence or "[]")
                merged = sorted(set(known) | set(evidence))
                activated = row.status == CANDIDATE and len(merged) >= need
                if merged != known or activated:
                    values: dict[str, Any] = {"evidence": json.dumps(merged), "updated_at": now}
                    if activated:
                        values["status"] = ACTIVE
                    await conn.execute(update(ls).where(ls.c.key == key).values(**values))
            row = (await conn.execute(select(ls).where(ls.c.key == key))).first()
        return Lesson.from_row(row), activated

    async def add_lesson(
        self,
        text: str,
        repo: str,
        *,
        area: str | None = None,
        label: str | None = None,
        task_kind: str | None = None,
    ) -> Lesson:
        """A maintainer's own lesson (`compound lessons add`): active at once (the maintainer is
        its evidence) and pinned, so the holdout never drops it."""
        now = utcnow()
        key = f"manual:{repo}:{now.isoformat()}:{text[:100]}"
        lesson, _ = await self.upsert_lesson(
            key, text, repo, evidence=[], source="manual", area=area, label=label, task_kind=task_kind
        )
        await self.set_lesson(lesson.id, pinned=True, status=ACTIVE)
        return (await self.lesson(lesson.id)) or lesson

    async def lesson(self, lesson_id: int) -> Lesson | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(ls).where(ls.c.id == lesson_id))).first()
        return Lesson.from_row(row) if row else None

    async def lessons(self, repo: str | None = None, status: str | None = None) -> list[Lesson]:
        stmt = select(ls).order_by(ls.c.id)
        if repo:
            stmt = stmt.where(ls.c.repo == repo)
        if status:
            stmt = stmt.where(ls.c.status == status)
        async with self.engine.connect() as conn:
            return [Lesson.from_row(r) for r in (await conn.execute(stmt)).all()]

    async def set_lesson(self, lesson_id: int, **values: Any) -> bool:
        values["updated_at"] = utcnow()
        if values.get("status") == RETIRED:
            values.setdefault("retired_at", values["updated_at"])
        elif values.get("status") == ACTIVE:
            values["retired_at"] = None
        async with self.engine.begin() as conn:
            return (await conn.execute(update(ls).where(ls.c.id == lesson_id).values(**values))).rowcount > 0

    async def trials(self, lesson_ids: list[int]) -> dict[int, Trials]:
        if not lesson_ids:
            return {}
        stmt = (
            select(
                lt.c.lesson_id,
                lt.c.carried,
                func.sum(cast(lt.c.success, Integer)),
                func.count(),
            )
            .where(lt.c.lesson_id.in_(lesson_ids))
            .group_by(lt.c.lesson_id, lt.c.carried)
        )
        found: dict[int, dict[bool, tuple[int, int]]] = {}
        async with self.engine.connect() as conn:
            for lesson_id, carried, s, n in (await conn.execute(stmt)).all():
                found.setdefault(lesson_id, {})[bool(carried)] = (int(s or 0), int(n))
        out = {}
        for lesson_id in lesson_ids:
            arms = found.get(lesson_id, {})
            (ws, wn), (hs, hn) = arms.get(True, (0, 0)), arms.get(False, (0, 0))
            out[lesson_id] = Trials(ws, wn, hs, hn)
        return out
