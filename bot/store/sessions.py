"""Sessions and their rounds: the work queue of agent runs.

A round is claimed by taking its session: `sessions.runner` is a heartbeat
lease, and a session is only claimable while nobody holds it, so at most one
round per session (one session = one branch) runs at a time across every
process sharing the database. On PostgreSQL the claim locks the session row
with `FOR UPDATE SKIP LOCKED`; on SQLite the single UPDATE is atomic.

Claims are fair across installations and bounded per installation
(`Quotas`, docs/operations.md#quotas): the next session is one of the
installation with the fewest running rounds, the least recently served
first, and none of an installation already at its concurrency cap or past
its rounds for the day. Those counts must not change between reading and
claiming, so on PostgreSQL claims take a transaction-scoped advisory lock
(one claim at a time; a claim is a few milliseconds), and SQLite's writer
lock does the same there. The claimed round is marked running in that
same transaction, so the day's count includes it for the next claimer.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, false, func, insert, or_, select, text, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.store.base import aware, utcnow
from bot.store.schema import rounds as r
from bot.store.schema import session_events as ev
from bot.store.schema import sessions as s
from bot.store.triggers import AlreadyTriggered, claim_key

__all__ = ["AlreadyTriggered", "Quotas", "SessionStore"]

# Session lifecycle (docs/design.md §1, issue #3).
QUEUED, PREPARING, RUNNING, PUSHING, AWAITING = "queued", "preparing", "running", "pushing", "awaiting"
DONE, ESCALATED, FAILED, STOPPED = "done", "escalated", "failed", "stopped"
TERMINAL = frozenset({DONE, ESCALATED, FAILED, STOPPED})
# Round statuses.
R_QUEUED, R_RUNNING, R_DONE, R_FAILED, R_STOPPED, R_CANCELLED = (
    "queued",
    "running",
    "done",
    "failed",
    "stopped",
    "cancelled",
)
# `rounds.quota`: held over the daily cap; bypass: a maintainer's retry, past the cap.
HELD, BYPASS = "held", "bypass"
# The session column that counts a kind's event-started rounds against its limit
# (MAX_CI_ROUNDS, MAX_REVIEW_ROUNDS); rebase rounds have none: once per base and head.
BUDGETS = {"ci_fix": "ci_rounds", "review_fix": "review_rounds"}
# Any constant works; the same in every Compound process (cf. bot/store/__init__.py).
_CLAIM_LOCK = 0x0C0B1A


@dataclass(frozen=True, slots=True)
class Quotas:
    """Per-installation bounds on the claim; None: unbounded (the store's tests, tools)."""

    running: int | None = None  # rounds running at once (MAX_SESSIONS_PER_INSTALLATION)
    per_day: int | None = None  # rounds started per UTC day (MAX_ROUNDS_PER_INSTALLATION_PER_DAY)


def day_start(now: datetime) -> datetime:
    """The start of the quota's day: UTC midnight, the same for every installation."""
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass(slots=True)
class SessionRow:
    id: str
    repo: str
    installation_id: int
    issue_number: int
    issue_title: str
    pr_number: int | None
    branch: str
    base_branch: str | None
    head_sha: str | None
    status: str
    model: str | None
    backend: str
    triggered_by: str
    config: str
    ci_rounds: int
    review_rounds: int
    outcome: str | None
    error: str | None
    runner: str | None
    runner_until: datetime | None
    created_at: datetime
    updated_at: datetime
    hold_head: str | None
    escalated_at: datetime | None
    issue_body: str | None
    issue_edit_noticed_at: datetime | None

    @property
    def held(self) -> bool:
        """Someone else pushed the current head: Compound stands back until asked."""
        return self.hold_head is not None and self.hold_head == self.head_sha

    @property
    def owner_name(self) -> tuple[str, str]:
        owner, _, name = self.repo.partition("/")
        return owner, name

    @property
    def active(self) -> bool:
        return self.status not in TERMINAL

    def config_data(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.config or "{}")
        return data


@dataclass(slots=True)
class RoundRow:
    id: int
    session_id: str
    number: int
    kind: str
    status: str
    instructions: str
    context: str
    requested_by: str | None
    model: str | None
    prompt_variant: str | None
    stop_requested: bool
    attempts: int
    head_before: str | None
    head_after: str | None
    check_run_id: int | None
    exit_code: int | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    files_changed: int | None
    summary: str | None
    log_tail: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    trigger_key: str | None
    trigger: str
    not_before: datetime | None
    categories: str | None
    automatic: bool
    lessons: str | None
    choice: str | None
    quota: str | None

    def context_data(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.context or "{}")
        return data

    def trigger_data(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.trigger or "{}")
        return data

    def category_list(self) -> list[str]:
        data: list[str] = json.loads(self.categories or "[]")
        return data


def _row(cls: type, row: Any) -> Any:
    m = row._mapping
    values = {}
    for f in fields(cls):
        value = m[f.name]
        if isinstance(value, datetime):
            value = aware(value)
        values[f.name] = value
    return cls(**values)


def _busy() -> Any:
    """An issue's session that a new one must not overlap: active, or escalated
    with its PR still open (it resumes; a second session would fight over the branch)."""
    return or_(
        s.c.status.not_in(TERMINAL),
        and_(s.c.status == ESCALATED, s.c.pr_number.is_not(None), s.c.outcome.is_(None)),
    )


class _Busy(Exception):
    """Rolls back a session insert the issue's escalated session overlaps."""


def _joined_key(session_id: str, trigger_key: str) -> str:
    """The `trigger_keys` row of a trigger queued with `join` (a review): one per session."""
    return f"round:{session_id}:{trigger_key}"


def new_session_id() -> str:
    return "s-" + uuid.uuid4().hex[:12]


def _runnable(now: datetime, under_cap: Any = None) -> Any:
    """A round to run now: queued and not waiting, or running but orphaned.

    A queued round also needs its installation under the day's cap
    (`under_cap`), unless a maintainer's retry let it past; a held one waits
    to be released (it was put back to NULL, or to bypass, first).
    """
    quota_ok = or_(r.c.quota == BYPASS, and_(r.c.quota.is_(None), true() if under_cap is None else under_cap))
    return or_(
        r.c.status == R_RUNNING,
        and_(r.c.status == R_QUEUED, or_(r.c.not_before.is_(None), r.c.not_before <= now), quota_ok),
    )


def _running_in(installation: Any, now: datetime) -> Any:
    """How many sessions of `installation` a live runner holds (its rounds running)."""
    other = s.alias("s_running")
    return (
        select(func.count())
        .select_from(other)
        .where(other.c.installation_id == installation, other.c.runner.is_not(None), other.c.runner_until >= now)
        .correlate(s)  # to the session being claimed, however deep it sits
        .scalar_subquery()
    )


def _started_in(installation: Any, since: datetime) -> Any:
    """How many rounds of `installation` started since `since` (its day's count)."""
    rr, ss = r.alias("r_day"), s.alias("s_day")
    return (
        select(func.count())
        .select_from(rr.join(ss, rr.c.session_id == ss.c.id))
        .where(ss.c.installation_id == installation, rr.c.started_at >= since)
        .correlate(s)  # to the session being claimed, however deep it sits
        .scalar_subquery()
    )


def _last_served(installation: Any, since: datetime) -> Any:
    """When a round of `installation` last started today: the least recently served
    go first, and one not served today (NULL) before them. Today's rounds only,
    so it reads a range of `ix_rounds_started`, not the installation's history."""
    rr, ss = r.alias("r_served"), s.alias("s_served")
    return (
        select(func.max(rr.c.started_at))
        .select_from(rr.join(ss, rr.c.session_id == ss.c.id))
        .where(ss.c.installation_id == installation, rr.c.started_at >= since)
        .correlate(s)  # to the session being claimed, however deep it sits
        .scalar_subquery()
    )


class SessionStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # -- creation -------------------------------------------------------------

    async def create(
        self,
        *,
        repo: str,
        installation_id: int,
        issue_number: int,
        issue_title: str,
        branch: str,
        backend: str,
        model: str | None,
        triggered_by: str,
        config: dict[str, Any],
        issue_body: str = "",
        kind: str = "task",
        instructions: str = "",
        context: dict[str, Any] | None = None,
        trigger_key: str | None = None,
    ) -> tuple[SessionRow, RoundRow] | None:
        """A new session with its first round queued; None if the issue has an active one.

        The insert comes first and the unique index `uq_sessions_active_issue`
        decides between deliveries racing to start one (two trigger labels in
        one burst): the loser gets None, as if it had looked first. An issue
        whose escalated session still has its PR open is busy too (the index
        does not cover it), so that is checked after the insert, in the same
        transaction. `trigger_key` is claimed with it: AlreadyTriggered if
        this trigger started its session already.
        """
        now = utcnow()
        session_id = new_session_id()
        try:
            async with self.engine.begin() as conn:
                if trigger_key is not None:
                    await claim_key(conn, trigger_key)
                await conn.execute(
                    insert(s).values(
                        id=session_id,
                        repo=repo,
                        installation_id=installation_id,
                        issue_number=issue_number,
                        issue_title=issue_title,
                        issue_body=issue_body,
                        branch=branch,
                        status=QUEUED,
                        model=model,
                        backend=backend,
                        triggered_by=triggered_by,
                        config=json.dumps(config),
                        created_at=now,
                        updated_at=now,
                    )
                )
                busy = await conn.execute(
                    select(s.c.id).where(
                        s.c.repo == repo, s.c.issue_number == issue_number, s.c.id != session_id, _busy()
                    )
                )
                if busy.first() is not None:
                    raise _Busy
                await conn.execute(
                    insert(r).values(
                        session_id=session_id,
                        number=1,
                        kind=kind,
                        status=R_QUEUED,
                        instructions=instructions,
                        context=json.dumps(context or {}),
                        requested_by=triggered_by,
                        model=model,
                        created_at=now,
                    )
                )
        except (_Busy, IntegrityError):  # IntegrityError: another delivery's session committed first
            return None
        session = await self.get(session_id)
        rounds = await self.rounds(session_id)
        assert session is not None
        return session, rounds[0]

    async def add_round(
        self,
        session_id: str,
        *,
        kind: str,
        requested_by: str | None,
        instructions: str = "",
        context: dict[str, Any] | None = None,
        model: str | None = None,
        trigger: dict[str, Any] | None = None,
        once: str | None = None,
        quota: str | None = None,
    ) -> RoundRow:
        """Queue a round a person asked for (`/agent …`, Retry).

        `once`: the trigger's key (`comment:<id>`), claimed with the round;
        AlreadyTriggered if it was. `quota=BYPASS`: past the day's cap.
        """
        got = await self._insert_round(
            session_id,
            kind=kind,
            requested_by=requested_by,
            instructions=instructions,
            context=context,
            model=model,
            trigger=trigger,
            once=once,
            quota=quota,
        )
        assert got is not None
        return got

    async def queue_automatic(
        self,
        session_id: str,
        *,
        kind: str,
        trigger_key: str,
        trigger: dict[str, Any],
        not_before: datetime | None = None,
        requested_by: str | None = None,
        context: dict[str, Any] | None = None,
        model: str | None = None,
        join: bool = False,
    ) -> RoundRow | None:
        """Queue a round an event started, once per `trigger_key`; None if it was already.

        At most one automatic round of a kind waits at a time. Without `join`
        (CI: a newer head supersedes an older one), a queued one with another
        key is cancelled in favour of this one. With `join` (reviews: each one
        must be answered), this trigger joins the queued round instead — it is
        appended to that round's `trigger["joined"]` and one round handles
        both — and with none queued (the one before is running, or was claimed
        a moment ago) it is queued as a round of its own, to run after. The
        answer is the new round, or the round this trigger joined (whose
        `trigger_key` is then another). A second event for the same key may
        only bring the round's start forward (`not_before`), never queue another.
        """
        if await self.bring_forward(session_id, trigger_key, not_before):
            return None
        if join:
            return await self._join_or_queue(
                session_id,
                kind=kind,
                trigger_key=trigger_key,
                trigger=trigger,
                not_before=not_before,
                requested_by=requested_by,
                context=context,
                model=model,
            )
        now = utcnow()
        async with self.engine.begin() as conn:
            await conn.execute(
                update(r)
                .where(
                    r.c.session_id == session_id,
                    r.c.kind == kind,
                    r.c.status == R_QUEUED,
                    r.c.automatic.is_(True),
                    r.c.trigger_key != trigger_key,
                )
                .values(status=R_CANCELLED, finished_at=now)
            )
        try:
            return await self._insert_round(
                session_id,
                kind=kind,
                requested_by=requested_by,
                context=context,
                model=model,
                trigger=trigger,
                trigger_key=trigger_key,
                not_before=not_before,
                automatic=True,
            )
        except IntegrityError:  # another delivery queued the same trigger a moment ago
            await self.bring_forward(session_id, trigger_key, not_before)
            return None

    async def _join_or_queue(
        self,
        session_id: str,
        *,
        kind: str,
        trigger_key: str,
        trigger: dict[str, Any],
        not_before: datetime | None,
        requested_by: str | None,
        context: dict[str, Any] | None,
        model: str | None,
    ) -> RoundRow | None:
        """`queue_automatic(join=True)`: into the queued round of the kind, or a round of its own.

        The trigger is claimed first (`trigger_keys`, per session), in the
        transaction that joins or queues it, so deliveries of one trigger
        racing each other join or queue it once. The queued round is locked
        (PostgreSQL) while its trigger is rewritten, and a claim that took it
        first leaves it `running`, so this trigger then gets its own round.
        """
        now = utcnow()
        try:
            async with self.engine.begin() as conn:
                await claim_key(conn, _joined_key(session_id, trigger_key))  # first: SQLite's writer lock too
                queued = (
                    await conn.execute(
                        select(r.c.id, r.c.trigger, r.c.not_before)
                        .where(
                            r.c.session_id == session_id,
                            r.c.kind == kind,
                            r.c.status == R_QUEUED,
                            r.c.automatic.is_(True),
                        )
                        .order_by(r.c.number)
                        .limit(1)
                        .with_for_update()
                    )
                ).first()
                if queued is not None:
                    data = json.loads(queued.trigger or "{}")
                    data["joined"] = [*data.get("joined", []), {**trigger, "key": trigger_key}]
                    values: dict[str, Any] = {"trigger": json.dumps(data)}
                    if not_before is not None and (queued.not_before is None or aware(queued.not_before) > not_before):
                        values["not_before"] = not_before
                    await conn.execute(update(r).where(r.c.id == queued.id).values(**values))
                    round_id: int = queued.id
                else:
                    round_id = await self._insert_in(
                        conn,
                        session_id,
                        kind=kind,
                        requested_by=requested_by,
                        context=context,
                        model=model,
                        trigger=trigger,
                        trigger_key=trigger_key,
                        not_before=not_before,
                        automatic=True,
                        now=now,
                    )
        except AlreadyTriggered:  # joined or queued already (a redelivery, a sibling event)
            await self._bring_forward_joined(session_id, kind, trigger_key, not_before)
            return None
        except IntegrityError:  # its own round, queued by a Compound from before `join`
            await self.bring_forward(session_id, trigger_key, not_before)
            return None
        return await self.round(round_id)

    async def _bring_forward_joined(self, session_id: str, kind: str, trigger_key: str, when: datetime | None) -> None:
        """Start the queued round that `trigger_key` joined no later than `when`."""
        if when is None:
            return
        async with self.engine.begin() as conn:
            rows = (
                await conn.execute(
                    select(r.c.id, r.c.trigger, r.c.not_before).where(
                        r.c.session_id == session_id, r.c.kind == kind, r.c.status == R_QUEUED
                    )
                )
            ).all()
            for row in rows:
                joined = json.loads(row.trigger or "{}").get("joined", [])
                if any(j.get("key") == trigger_key for j in joined) and (
                    row.not_before is None or aware(row.not_before) > when
                ):
                    await conn.execute(update(r).where(r.c.id == row.id).values(not_before=when))

    async def bring_forward(self, session_id: str, trigger_key: str, when: datetime | None) -> bool:
        """Start the round of `trigger_key` no later than `when`; False if there is no such round."""
        async with self.engine.begin() as conn:
            same = (
                await conn.execute(
                    select(r.c.id, r.c.status, r.c.not_before).where(
                        r.c.session_id == session_id, r.c.trigger_key == trigger_key
                    )
                )
            ).first()
            if same is None:
                return False
            if (
                same.status == R_QUEUED
                and when is not None
                and (same.not_before is None or aware(same.not_before) > when)
            ):
                await conn.execute(update(r).where(r.c.id == same.id).values(not_before=when))
        return True

    async def _insert_round(
        self,
        session_id: str,
        *,
        kind: str,
        requested_by: str | None,
        instructions: str = "",
        context: dict[str, Any] | None = None,
        model: str | None = None,
        trigger: dict[str, Any] | None = None,
        trigger_key: str | None = None,
        not_before: datetime | None = None,
        automatic: bool = False,
        once: str | None = None,
        quota: str | None = None,
    ) -> RoundRow | None:
        now = utcnow()
        async with self.engine.begin() as conn:
            if once is not None:
                await claim_key(conn, once)
            round_id = await self._insert_in(
                conn,
                session_id,
                kind=kind,
                requested_by=requested_by,
                instructions=instructions,
                context=context,
                model=model,
                trigger=trigger,
                trigger_key=trigger_key,
                not_before=not_before,
                automatic=automatic,
                quota=quota,
                now=now,
            )
        return await self.round(round_id)

    @staticmethod
    async def _insert_in(
        conn: AsyncConnection,
        session_id: str,
        *,
        kind: str,
        requested_by: str | None,
        now: datetime,
        instructions: str = "",
        context: dict[str, Any] | None = None,
        model: str | None = None,
        trigger: dict[str, Any] | None = None,
        trigger_key: str | None = None,
        not_before: datetime | None = None,
        automatic: bool = False,
        quota: str | None = None,
    ) -> int:
        """The round's insert, in the caller's transaction; its id."""
        number = (
            await conn.execute(select(func.coalesce(func.max(r.c.number), 0)).where(r.c.session_id == session_id))
        ).scalar_one() + 1
        result = await conn.execute(
            insert(r)
            .values(
                session_id=session_id,
                number=number,
                kind=kind,
                status=R_QUEUED,
                instructions=instructions,
                context=json.dumps(context or {}),
                requested_by=requested_by,
                model=model,
                created_at=now,
                trigger=json.dumps(trigger or {}),
                trigger_key=trigger_key,
                not_before=not_before,
                automatic=automatic,
                quota=quota,
            )
            .returning(r.c.id)
        )
        round_id: int = result.scalar_one()
        if not automatic:  # an event's round shows as queued only once it is sure to run
            await conn.execute(update(s).where(s.c.id == session_id).values(status=QUEUED, updated_at=now, error=None))
        return round_id

    # -- reading --------------------------------------------------------------

    async def get(self, session_id: str) -> SessionRow | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(s).where(s.c.id == session_id))).first()
        return _row(SessionRow, row) if row else None

    async def for_issue(self, repo: str, issue_number: int) -> SessionRow | None:
        """The newest session of an issue."""
        stmt = (
            select(s).where(s.c.repo == repo, s.c.issue_number == issue_number).order_by(s.c.created_at.desc()).limit(1)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return _row(SessionRow, row) if row else None

    async def for_pr(self, repo: str, pr_number: int) -> SessionRow | None:
        stmt = select(s).where(s.c.repo == repo, s.c.pr_number == pr_number).order_by(s.c.created_at.desc()).limit(1)
        async with self.engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return _row(SessionRow, row) if row else None

    async def for_head(self, repo: str, head_sha: str) -> SessionRow | None:
        """The session whose PR's current head is `head_sha` (escalated ones included)."""
        stmt = (
            select(s)
            .where(s.c.repo == repo, s.c.head_sha == head_sha, s.c.pr_number.is_not(None), _busy())
            .order_by(s.c.created_at.desc())
            .limit(1)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return _row(SessionRow, row) if row else None

    async def with_base(self, repo: str, base_branch: str) -> list[SessionRow]:
        """Sessions whose open PR targets `base_branch`: a push there may conflict with them."""
        stmt = select(s).where(s.c.repo == repo, s.c.base_branch == base_branch, s.c.pr_number.is_not(None), _busy())
        async with self.engine.connect() as conn:
            return [_row(SessionRow, row) for row in (await conn.execute(stmt)).all()]

    async def rounds(self, session_id: str) -> list[RoundRow]:
        stmt = select(r).where(r.c.session_id == session_id).order_by(r.c.number)
        async with self.engine.connect() as conn:
            return [_row(RoundRow, row) for row in (await conn.execute(stmt)).all()]

    async def round(self, round_id: int) -> RoundRow | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(r).where(r.c.id == round_id))).first()
        return _row(RoundRow, row) if row else None

    async def count(self, status: str | None = None) -> int:
        stmt = select(func.count()).select_from(s)
        if status is not None:
            stmt = stmt.where(s.c.status == status)
        async with self.engine.connect() as conn:
            return (await conn.execute(stmt)).scalar_one()

    # -- the work queue -------------------------------------------------------

    async def claim(
        self, owner: str, lease: float, limit: int = 1, quotas: Quotas = Quotas()
    ) -> list[tuple[SessionRow, RoundRow]]:
        """Take sessions with a round to run (queued, or orphaned by a dead process).

        One at a time, each in its own transaction, so every claim counts the
        one before it against the installation's quotas.
        """
        claimed = []
        for _ in range(limit):
            got = await self._claim_one(owner, lease, quotas)
            if got is None:
                break
            claimed.append(got)
        return claimed

    async def _claim_one(self, owner: str, lease: float, quotas: Quotas) -> tuple[SessionRow, RoundRow] | None:
        now = utcnow()
        since = day_start(now)
        under_cap = None if quotas.per_day is None else _started_in(s.c.installation_id, since) < quotas.per_day
        free = or_(s.c.runner.is_(None), s.c.runner_until < now)
        conditions = [free, exists().where(r.c.session_id == s.c.id, _runnable(now, under_cap))]
        if quotas.running is not None:
            conditions.append(_running_in(s.c.installation_id, now) < quotas.running)
        candidate = (
            select(s.c.id)
            .where(*conditions)
            .order_by(
                _running_in(s.c.installation_id, now),
                _last_served(s.c.installation_id, since).nulls_first(),
                s.c.updated_at,
            )
            .limit(1)
            .with_for_update(skip_locked=True)
            # Its own FROM sessions, not the UPDATE's row (auto-correlation would
            # turn "the one best session" into "every session that qualifies").
            .correlate(None)
            .scalar_subquery()
        )
        stmt = (
            update(s)
            .where(s.c.id == candidate, free)
            .values(runner=owner, runner_until=now + timedelta(seconds=lease))
            .returning(s.c.id, s.c.installation_id)
        )
        async with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CLAIM_LOCK})
            row = (await conn.execute(stmt)).first()
            if row is None:
                return None
            session_id, installation_id = row
            open_ = True
            if quotas.per_day is not None:
                open_ = await self._started_today(conn, installation_id, since) < quotas.per_day
            round_id = await self._next_round(conn, session_id, now, open_)
            if round_id is None:  # cannot be (the claim saw one), but never leave it held
                await conn.execute(update(s).where(s.c.id == session_id).values(runner=None, runner_until=None))
                return None
        work, session = await self.round(round_id), await self.get(session_id)
        assert work is not None and session is not None
        return session, work

    async def _started_today(self, conn: AsyncConnection, installation_id: int, since: datetime) -> int:
        stmt = (
            select(func.count())
            .select_from(r.join(s, r.c.session_id == s.c.id))
            .where(s.c.installation_id == installation_id, r.c.started_at >= since)
        )
        return (await conn.execute(stmt)).scalar_one()

    async def _next_round(self, conn: AsyncConnection, session_id: str, now: datetime, open_: bool) -> int | None:
        """An orphaned running round first (its process died), else the oldest queued one."""
        row = (
            await conn.execute(
                select(r.c.id)
                .where(r.c.session_id == session_id, _runnable(now, true() if open_ else false()))
                .order_by((r.c.status == R_RUNNING).desc(), r.c.number)
                .limit(1)
            )
        ).first()
        if row is None:
            return None
        round_id: int = row.id
        await conn.execute(
            update(r).where(r.c.id == round_id).values(status=R_RUNNING, started_at=now, attempts=r.c.attempts + 1)
        )
        return round_id

    # -- quotas: the day's cap ----------------------------------------------------

    async def running_in(self, installation_id: int) -> int:
        """Rounds of the installation running now (sessions a live runner holds)."""
        now = utcnow()
        stmt = (
            select(func.count())
            .select_from(s)
            .where(
                s.c.installation_id == installation_id,
                s.c.runner.is_not(None),
                s.c.runner_until >= now,
            )
        )
        async with self.engine.connect() as conn:
            return (await conn.execute(stmt)).scalar_one()

    async def started_today(self, installation_id: int) -> int:
        async with self.engine.connect() as conn:
            return await self._started_today(conn, installation_id, day_start(utcnow()))

    async def hold_over_cap(self, per_day: int) -> list[tuple[SessionRow, RoundRow, bool]]:
        """Mark `held` the queued rounds of installations past the day's cap.

        The claim already leaves them be; the mark is what the thread is told
        and what releases them. Only installations with a round waiting are
        counted (a handful), not every installation there ever was. Returns
        (session, round, first): `first` when the session had no held round
        before, so the thread hears it once.
        """
        since = day_start(utcnow())
        waiting = (
            select(s.c.installation_id)
            .distinct()
            .select_from(r.join(s, r.c.session_id == s.c.id))
            .where(r.c.status == R_QUEUED, r.c.quota.is_(None))
        )
        async with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CLAIM_LOCK})
            over = [
                inst
                for inst in (await conn.execute(waiting)).scalars()
                if await self._started_today(conn, inst, since) >= per_day
            ]
            if not over:
                return []
            already = {
                row[0]
                for row in (
                    await conn.execute(select(r.c.session_id).where(r.c.status == R_QUEUED, r.c.quota == HELD))
                ).all()
            }
            of_over = select(s.c.id).where(s.c.installation_id.in_(over))
            ids = [
                row[0]
                for row in (
                    await conn.execute(
                        update(r)
                        .where(r.c.status == R_QUEUED, r.c.quota.is_(None), r.c.session_id.in_(of_over))
                        .values(quota=HELD)
                        .returning(r.c.id)
                    )
                ).all()
            ]
        return await self._with_sessions(ids, already)

    async def release_held(self, per_day: int | None) -> list[tuple[SessionRow, RoundRow, bool]]:
        """Back to the queue: held rounds of installations under the cap again (the day rolled)."""
        since = day_start(utcnow())
        held = (
            select(s.c.installation_id)
            .distinct()
            .select_from(r.join(s, r.c.session_id == s.c.id))
            .where(r.c.status == R_QUEUED, r.c.quota == HELD)
        )
        async with self.engine.begin() as conn:
            under = [
                inst
                for inst in (await conn.execute(held)).scalars()
                if per_day is None or await self._started_today(conn, inst, since) < per_day
            ]
            if not under:
                return []
            of_under = select(s.c.id).where(s.c.installation_id.in_(under))
            stmt = (
                update(r)
                .where(r.c.status == R_QUEUED, r.c.quota == HELD, r.c.session_id.in_(of_under))
                .values(quota=None)
                .returning(r.c.id)
            )
            ids = [row[0] for row in (await conn.execute(stmt)).all()]
        return await self._with_sessions(ids, set())

    async def bypass_held(self, session_id: str) -> list[RoundRow]:
        """A maintainer's retry: the session's held rounds run past the day's cap."""
        stmt = (
            update(r)
            .where(r.c.session_id == session_id, r.c.status == R_QUEUED, r.c.quota == HELD)
            .values(quota=BYPASS)
            .returning(r.c.id)
        )
        async with self.engine.begin() as conn:
            ids = [row[0] for row in (await conn.execute(stmt)).all()]
        return [got for got in [await self.round(i) for i in sorted(ids)] if got is not None]

    async def _with_sessions(self, ids: list[int], before: set[str]) -> list[tuple[SessionRow, RoundRow, bool]]:
        out = []
        seen = set(before)
        for round_id in sorted(ids):
            round_ = await self.round(round_id)
            session = await self.get(round_.session_id) if round_ else None
            if round_ is None or session is None:
                continue
            out.append((session, round_, session.id not in seen))
            seen.add(session.id)
        return out

    async def renew(self, owner: str, lease: float) -> None:
        stmt = update(s).where(s.c.runner == owner).values(runner_until=utcnow() + timedelta(seconds=lease))
        async with self.engine.begin() as conn:
            await conn.execute(stmt)

    async def release(self, session_id: str, owner: str) -> None:
        stmt = (
            update(s)
            .where(s.c.id == session_id, s.c.runner == owner)
            .values(runner=None, runner_until=None, updated_at=utcnow())
        )
        async with self.engine.begin() as conn:
            await conn.execute(stmt)

    async def has_pending_round(self, session_id: str) -> bool:
        stmt = select(r.c.id).where(r.c.session_id == session_id, r.c.status.in_((R_QUEUED, R_RUNNING))).limit(1)
        async with self.engine.connect() as conn:
            return (await conn.execute(stmt)).first() is not None

    async def has_queued(self) -> bool:
        stmt = select(r.c.id).where(r.c.status == R_QUEUED).limit(1)
        async with self.engine.connect() as conn:
            return (await conn.execute(stmt)).first() is not None

    # -- updates --------------------------------------------------------------

    async def update_session(self, session_id: str, **values: Any) -> None:
        values["updated_at"] = utcnow()
        async with self.engine.begin() as conn:
            await conn.execute(update(s).where(s.c.id == session_id).values(**values))

    async def update_round(self, round_id: int, **values: Any) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(update(r).where(r.c.id == round_id).values(**values))

    async def claim_edit_notice(self, session_id: str) -> bool:
        """Whether this caller is the one to tell the issue its edits are not followed.

        True once per session: the first to set `issue_edit_noticed_at` wins,
        whatever other deliveries (more edits, redeliveries) run at the same time.
        """
        stmt = (
            update(s)
            .where(s.c.id == session_id, s.c.issue_edit_noticed_at.is_(None))
            .values(issue_edit_noticed_at=utcnow())
        )
        async with self.engine.begin() as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def release_edit_notice(self, session_id: str) -> None:
        """The notice could not be posted: let the delivery's retry post it."""
        await self.update_session(session_id, issue_edit_noticed_at=None)

    async def defer(self, round_id: int, seconds: float) -> None:
        """Put a claimed round back to wait (its suite has not settled yet); not an attempt."""
        await self.update_round(
            round_id,
            status=R_QUEUED,
            not_before=utcnow() + timedelta(seconds=seconds),
            attempts=r.c.attempts - 1,
        )

    async def count_runs(self, session_id: str, kind: str, head: str) -> int:
        """Rounds of `kind` that ran the agent on `head` (done or failed)."""
        stmt = (
            select(func.count())
            .select_from(r)
            .where(
                r.c.session_id == session_id,
                r.c.kind == kind,
                r.c.head_before == head,
                r.c.status.in_((R_DONE, R_FAILED)),
            )
        )
        async with self.engine.connect() as conn:
            return (await conn.execute(stmt)).scalar_one()

    async def bump_budget(self, session_id: str, kind: str) -> None:
        """One more event-started round of a kind with a limit; a rebase round counts against none."""
        budget = BUDGETS.get(kind)
        if budget is None:
            return
        column = s.c[budget]
        async with self.engine.begin() as conn:
            await conn.execute(update(s).where(s.c.id == session_id).values({column: column + 1}))

    async def request_stop(self, session_id: str) -> tuple[int | None, int]:
        """Flag the running round to stop and cancel queued ones: (running round id, cancelled)."""
        now = utcnow()
        async with self.engine.begin() as conn:
            running = (
                await conn.execute(
                    update(r)
                    .where(r.c.session_id == session_id, r.c.status == R_RUNNING)
                    .values(stop_requested=True)
                    .returning(r.c.id)
                )
            ).first()
            cancelled = (
                await conn.execute(
                    update(r)
                    .where(r.c.session_id == session_id, r.c.status == R_QUEUED)
                    .values(status=R_CANCELLED, finished_at=now)
                )
            ).rowcount
        return (running[0] if running else None), cancelled

    async def stop_requested(self, round_id: int) -> bool:
        stmt = select(r.c.stop_requested).where(r.c.id == round_id)
        async with self.engine.connect() as conn:
            return bool((await conn.execute(stmt)).scalar_one_or_none())

    async def add_event(self, session_id: str, type_: str, data: dict[str, Any]) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(ev).values(ts=utcnow(), session_id=session_id, type=type_, data=json.dumps(data, default=str))
            )

    async def events(self, session_id: str) -> list[tuple[str, dict[str, Any]]]:
        stmt = select(ev.c.type, ev.c.data).where(ev.c.session_id == session_id).order_by(ev.c.id)
        async with self.engine.connect() as conn:
            return [(t, json.loads(d)) for t, d in (await conn.execute(stmt)).all()]
