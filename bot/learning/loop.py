"""The learning loop itself: `Learning`, which the service hands to the sessions (see the package's docstring)."""

from __future__ import annotations

import hashlib
import logging
import random
from dataclasses import dataclass, field
from typing import Any

from bot.config import RepoConfig
from bot.learning import lessons as L
from bot.learning.kinds import areas_of, task_kind
from bot.learning.outcomes import build, lessons_of, ran
from bot.learning.retrospective import MARKER, render
from bot.learning.stats import thompson
from bot.store.base import utcnow
from bot.store.learning import ACTIVE, RETIRED, LearningStore, Lesson, Outcome
from bot.store.sessions import RoundRow, SessionRow, SessionStore

log = logging.getLogger("compound.learning")

# Session events that end a session, and the outcome each one means.
ENDINGS = {
    "session.closed": None,
    "session.escalated": "escalated",
    "session.failed": "failed",
    "session.stopped": "stopped",
}
# Learned routing (docs/learning.md).
ROUTING_MIN_SESSIONS = 5
ROUTING_MARGIN = 0.05
ROUTING_EXPLORE = 0.1


@dataclass
class RoundPlan:
    variant: str
    lessons: list[Lesson] = field(default_factory=list)
    held_out: list[Lesson] = field(default_factory=list)
    choice: dict[str, Any] = field(default_factory=dict)

    def lesson_record(self) -> dict[str, list[int]]:
        return {"carried": [x.id for x in self.lessons], "held_out": [x.id for x in self.held_out]}


@dataclass
class Concluded:
    """What one ended session taught: its outcome, and the lessons it touched."""

    session: SessionRow
    outcome: Outcome
    rounds: list[RoundRow]
    applied: list[Lesson]
    held_out: list[Lesson]
    learned: list[Lesson]
    retired: list[tuple[Lesson, str]]

    def retrospective(self) -> str:
        return render(self.outcome, self.rounds, self.applied, self.held_out, self.learned, self.retired)


class Learning:
    def __init__(
        self,
        sessions: SessionStore,
        store: LearningStore,
        github: Any,
        events: Any,
        holdout: float,
        enabled: bool = True,
    ) -> None:
        self.enabled = enabled
        # Runs the optional `reflect` task (bot/learning/reflect.py); set where agents can run.
        self.reflector: Any = None
        self.sessions = sessions
        self.store = store
        self.github = github
        self.events = events
        self.holdout = holdout

    # -- before a round -------------------------------------------------------------

    async def plan(
        self, session: SessionRow, round_: RoundRow, config: RepoConfig, variants: list[str], issue_text: str
    ) -> RoundPlan:
        """The round's variant and lessons; the first variant and none if the store fails."""
        if not self.enabled:
            return RoundPlan(variant=variants[0], choice={"variant": {"picked": variants[0], "why": "LEARNING=off"}})
        try:
            return await self._plan(session, round_, config, variants, issue_text)
        except Exception:
            log.warning(
                "learning could not plan round %s of %s; using the defaults", round_.number, session.id, exc_info=True
            )
            return RoundPlan(variant=variants[0])

    async def _plan(
        self, session: SessionRow, round_: RoundRow, config: RepoConfig, variants: list[str], issue_text: str
    ) -> RoundPlan:
        labels = await self.labels(session)
        kind = task_kind(labels, session.issue_title)
        retired = {v.lower() for v in config.retired_variants}
        usable = [v for v in variants if f"{round_.kind}.{v}".lower() not in retired] or variants[:1]
        choice: dict[str, Any] = {"task_kind": kind}
        if len(usable) == 1:
            variant = usable[0]
            choice["variant"] = {"picked": variant, "why": "the only variant"}
        else:
            counts = await self.store.variant_counts(round_.kind, kind)
            arms = {v: counts.get(v, (0, 0)) for v in usable}
            variant, draws = thompson(arms, random.Random(f"{session.id}:{round_.number}"))
            choice["variant"] = {
                "picked": variant,
                "why": "Thompson sampling on first-try success",
                "posterior": {v: [1 + s, 1 + n - s] for v, (s, n) in arms.items()},
                "draws": {v: round(d, 4) for v, d in draws.items()},
            }
        plan = RoundPlan(variant=variant, choice=choice)
        if not config.lessons.enabled:
            return plan
        holdout = self.holdout_for(config)
        in_scope = await self.in_scope(session, session.repo, labels, session.issue_title, issue_text)
        for lesson in in_scope:
            if L.held_out(session.id, lesson, holdout):
                plan.held_out.append(lesson)
            elif len(plan.lessons) < L.MAX_PER_PROMPT:
                plan.lessons.append(lesson)
        return plan

    async def route(
        self, repo: str, labels: list[str], title: str, config: RepoConfig, seed: str
    ) -> tuple[str | None, str]:
        """`routing: learned`: (model, why) among the repo's configured models."""
        if not self.enabled:
            return None, "LEARNING=off"
        candidates = list(dict.fromkeys(config.models.values()))
        if not candidates:
            return None, "no models configured"
        kind = task_kind(labels, title)
        try:
            counts = await self.store.model_counts(repo, kind)
        except Exception:
            log.warning("learning could not read model figures", exc_info=True)
            return None, "no figures"
        rng = random.Random(seed)
        tried = {m: counts.get(m, (0, 0, 0.0)) for m in candidates}
        short = [m for m in candidates if tried[m][1] < ROUTING_MIN_SESSIONS]
        if short:
            pick = min(short, key=lambda m: (tried[m][1], candidates.index(m)))
            return pick, f"exploring: {pick} has {tried[pick][1]} of {ROUTING_MIN_SESSIONS} {kind} sessions"
        means = {m: (s + 1) / (n + 2) for m, (s, n, _) in tried.items()}
        best = max(means.values())
        near = [m for m in candidates if means[m] >= best - ROUTING_MARGIN]
        pick = min(near, key=lambda m: (tried[m][2], candidates.index(m)))
        if rng.random() < ROUTING_EXPLORE and len(candidates) > 1:
            other = rng.choice([m for m in candidates if m != pick])
            return other, f"exploring ({ROUTING_EXPLORE:.0%} of sessions): {other} instead of {pick}"
        return pick, (
            f"cheapest within {ROUTING_MARGIN:.0%} of the best first-try rate for {kind} tasks: "
            + ", ".join(f"{m} {means[m]:.0%} at ${tried[m][2]:.2f}" for m in candidates)
        )

    # -- after a session --------------------------------------------------------------

    async def on_event(self, session: SessionRow, type_: str, data: dict[str, Any]) -> None:
        if type_ not in ENDINGS:
            return
        outcome = ENDINGS[type_] or data.get("outcome") or "closed"
        try:
            await self.ended(session.id, outcome)
        except Exception:
            log.warning("learning from %s failed; the session is not affected", session.id, exc_info=True)

    async def ended(self, session_id: str, outcome: str) -> None:
        concluded = await self.conclude(session_id, outcome)
        if concluded is not None:
            await self._post(concluded.session, concluded.retrospective())

    async def conclude(self, session_id: str, outcome: str) -> Concluded | None:
        """Write the outcome, mine lessons, judge the lessons it carried or was held out of."""
        session = await self.sessions.get(session_id)
        if session is None:
            return None
        rounds = await self.sessions.rounds(session.id)
        events = await self.sessions.events(session.id)
        result = build(session, rounds, events, outcome, utcnow())
        await self.store.save_outcome(result)

        learned: list[Lesson] = []
        patterns = L.mine(session.repo, result.areas, [(r.kind, r.trigger_data()) for r in ran(rounds)])
        for pattern in patterns:
            lesson, _ = await self.store.upsert_lesson(
                pattern.key,
                pattern.text,
                session.repo,
                evidence=[session.id],
                area=pattern.area,
                need=pattern.need,
            )
            if lesson.status != RETIRED:
                learned.append(lesson)
        learned += await self._reflect(session, rounds, result)

        retired = await self.judge(sorted(set(result.lessons) | set(result.held_out)))

        await self.events.record(
            session,
            "session.outcome",
            outcome=result.outcome,
            first_try=result.first_try,
            ci_rounds=result.ci_rounds,
            review_rounds=result.review_rounds,
            rebase_rounds=result.rebase_rounds,
            categories=result.categories,
            task_kind=result.task_kind,
            cost_usd=result.cost_usd,
            lessons=result.lessons,
            held_out=result.held_out,
            lessons_learned=[x.id for x in learned],
            lessons_retired=[x.id for x, _ in retired],
        )
        by_id = {x.id: x for x in await self.store.lessons(repo=session.repo)}
        return Concluded(
            session=session,
            outcome=result,
            rounds=rounds,
            applied=[by_id[i] for i in result.lessons if i in by_id],
            held_out=[by_id[i] for i in result.held_out if i in by_id],
            learned=learned,
            retired=retired,
        )

    async def _reflect(self, session: SessionRow, rounds: list[RoundRow], result: Outcome) -> list[Lesson]:
        """`lessons: {reflect: true}`: the agent's own lessons, validated, as active lessons."""
        config = RepoConfig.model_validate(session.config_data())
        if not config.lessons.reflect or self.reflector is None:
            return []
        try:
            reflection = await self.reflector(session, rounds, config, result.areas)
        except Exception:
            log.warning("the reflect task of %s failed", session.id, exc_info=True)
            return []
        found = []
        for text, area in reflection.accepted:
            key = f"reflect:{session.repo}:{hashlib.sha256(text.lower().encode()).hexdigest()[:16]}"
            lesson, _ = await self.store.upsert_lesson(
                key, text, session.repo, evidence=[session.id], source="reflect", area=area
            )
            if lesson.status != RETIRED:
                found.append(lesson)
        await self.events.record(
            session,
            "session.reflected",
            accepted=[x.id for x in found],
            refused=[{"text": t, "why": why} for t, why in reflection.refused],
            error=reflection.error,
        )
        return found

    async def judge(self, lesson_ids: list[int]) -> list[tuple[Lesson, str]]:
        """Retire each of these lessons that does no better than its holdout (pinned ones stay)."""
        retired: list[tuple[Lesson, str]] = []
        trials = await self.store.trials(lesson_ids)
        for lesson_id in lesson_ids:
            lesson = await self.store.lesson(lesson_id)
            if lesson is None or lesson.pinned or lesson.status != ACTIVE:
                continue
            verdict = L.verdict(trials[lesson_id])
            if verdict is not None and not verdict[0]:
                await self.store.set_lesson(lesson_id, status=RETIRED, reason=f"retired: {verdict[1]}")
                retired.append((lesson, verdict[1]))
                log.info("lesson %s retired: %s", lesson_id, verdict[1])
        return retired

    async def _post(self, session: SessionRow, body: str) -> None:
        """The retrospective on the issue: edited in place if it is already there."""
        from bot.github.api import comment, own_comment  # not at import: `compound report` starts faster

        gh = self.github.installation(session.installation_id)
        existing = await own_comment(gh, session.repo, session.issue_number, lambda text: text.startswith(MARKER))
        if existing is None:
            await comment(gh, session.repo, session.issue_number, body)
            return
        if existing.get("body") == body:
            return
        owner, name = session.owner_name
        await gh.patch(
            "/repos/{owner}/{repo}/issues/comments/{comment_id}",
            {"owner": owner, "repo": name, "comment_id": existing["id"]},
            data={"body": body},
        )

    # -- `/agent lessons` ---------------------------------------------------------------

    def holdout_for(self, config: RepoConfig) -> float:
        """The repo config's `lessons.holdout`, else LESSON_HOLDOUT."""
        return config.lessons.holdout if config.lessons.holdout is not None else self.holdout

    async def labels(self, session: SessionRow) -> list[str]:
        """The issue's labels when the session was triggered (kept in its first round)."""
        rounds = await self.sessions.rounds(session.id)
        return list((rounds[0].context_data() if rounds else {}).get("labels") or [])

    async def in_scope(
        self, session: SessionRow | None, repo: str, labels: list[str], title: str, text: str
    ) -> list[Lesson]:
        """The active lessons a session (or an issue with none yet) would carry, best first."""
        kind = task_kind(labels, title)
        touched: list[str] = []
        if session is not None:
            touched = [
                f
                for type_, data in await self.sessions.events(session.id)
                if type_ == "round.pushed"
                for f in data.get("files") or []
            ]
        return [
            x
            for x in L.usable(await self.store.lessons(repo=repo, status=ACTIVE))
            if L.in_scope(x, repo=repo, labels=labels, task_kind=kind, areas=areas_of(touched), text=text)
        ]


__all__ = ["ENDINGS", "Concluded", "Learning", "RoundPlan", "lessons_of"]
