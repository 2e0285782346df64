"""`compound lessons list|show|add|pin|retire|edit`: what Compound has learned, for maintainers."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from bot.learning.kinds import KINDS
from bot.learning.stats import interval, prob_greater

if TYPE_CHECKING:  # the parser is built for every command: the store loads only when `lessons` runs
    from bot.settings import Settings
    from bot.store.learning import Lesson, Trials


def add_parser(sub: Any) -> None:
    lessons = sub.add_parser(
        "lessons",
        help="the lessons Compound has learned: list, show, add, pin, retire, edit",
        description="The lessons Compound puts into prompts, with their scope and evidence "
        "(docs/learning.md). Pinned lessons are never held out and never retired.",
    )
    cmd = lessons.add_subparsers(dest="lessons_command", required=True, metavar="LESSONS_COMMAND")
    listing = cmd.add_parser("list", help="list lessons", description="List lessons, newest last.")
    listing.add_argument("--repo", help="only this repository (owner/name)")
    listing.add_argument("--all", action="store_true", help="candidates and retired lessons too")
    listing.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    show = cmd.add_parser("show", help="one lesson with its evidence", description="One lesson in full.")
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true")
    add = cmd.add_parser(
        "add", help="write a lesson yourself (pinned)", description="Add a maintainer's lesson; it is pinned."
    )
    add.add_argument("--repo", required=True, help="owner/name")
    add.add_argument("--text", required=True)
    _scope_arguments(add)
    pin = cmd.add_parser(
        "pin",
        help="keep a lesson always (never held out or retired)",
        description="Pin a lesson; a retired one becomes active again.",
    )
    pin.add_argument("id", type=int)
    pin.add_argument("--off", action="store_true", help="unpin: the holdout measures it again")
    retire = cmd.add_parser(
        "retire", help="stop using a lesson", description="Retire a lesson: no prompt carries it any more."
    )
    retire.add_argument("id", type=int)
    retire.add_argument("--reason", default="retired by a maintainer")
    edit = cmd.add_parser("edit", help="change a lesson's text or scope", description="Edit a lesson's text or scope.")
    edit.add_argument("id", type=int)
    edit.add_argument("--text")
    _scope_arguments(edit)


def _scope_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--area", help="a top-level directory, e.g. dashboard ('' for none)")
    parser.add_argument("--label", help="an issue label ('' for none)")
    parser.add_argument("--kind", choices=[*KINDS, ""], help="a task kind ('' for none)")


def _figures(trials: Trials) -> dict[str, Any]:
    out: dict[str, Any] = {
        "carried": {"sessions": trials.with_total, "first_try": trials.with_success},
        "held_out": {"sessions": trials.holdout_total, "first_try": trials.holdout_success},
    }
    if trials.with_total and trials.holdout_total:
        out["p_helps"] = round(
            prob_greater(trials.with_success, trials.with_total, trials.holdout_success, trials.holdout_total), 4
        )
    for arm, s, n in (
        ("carried", trials.with_success, trials.with_total),
        ("held_out", trials.holdout_success, trials.holdout_total),
    ):
        if n:
            low, high = interval(s, n)
            out[arm]["interval_95"] = [round(low, 4), round(high, 4)]
    return out


def _as_json(lesson: Lesson, trials: Trials) -> dict[str, Any]:
    return {
        "id": lesson.id,
        "status": lesson.status,
        "pinned": lesson.pinned,
        "text": lesson.text,
        "repo": lesson.repo,
        "area": lesson.area,
        "label": lesson.label,
        "task_kind": lesson.task_kind,
        "source": lesson.source,
        "key": lesson.key,
        "evidence": lesson.evidence,
        "reason": lesson.reason,
        "created_at": lesson.created_at.isoformat(),
        "updated_at": lesson.updated_at.isoformat(),
        "retired_at": lesson.retired_at.isoformat() if lesson.retired_at else None,
        "trials": _figures(trials),
    }


def _state(lesson: Lesson) -> str:
    return f"{lesson.status}{', pinned' if lesson.pinned else ''}"


async def run(settings: Settings, args: argparse.Namespace) -> int:
    from bot.store import Store

    store = Store.connect(settings.resolved_database_url)
    try:
        await store.migrate()
        return await _run(store, args)
    finally:
        await store.close()


async def _run(store: Any, args: argparse.Namespace) -> int:  # noqa: C901 - one branch per subcommand
    from bot.store.learning import ACTIVE, RETIRED

    learning = store.learning
    command = args.lessons_command
    if command == "list":
        lessons = await learning.lessons(repo=args.repo)
        if not args.all:
            lessons = [x for x in lessons if x.status == ACTIVE]
        trials = await learning.trials([x.id for x in lessons])
        if args.json:
            for lesson in lessons:
                print(json.dumps(_as_json(lesson, trials[lesson.id])))
            return 0
        if not lessons:
            print(
                "no lessons"
                + (f" for {args.repo}" if args.repo else "")
                + ("" if args.all else " active (--all shows every one)")
            )
            return 0
        print(f"{'id':>4}  {'state':<16} {'with':>7} {'held out':>8}  scope / text")
        for lesson in lessons:
            t = trials[lesson.id]
            print(
                f"{lesson.id:>4}  {_state(lesson):<16} {t.with_success:>3}/{t.with_total:<3} "
                f"{t.holdout_success:>4}/{t.holdout_total:<3}  "
                f"{lesson.scope}: {lesson.text[:100]}"
            )
        return 0
    if command == "add":
        scope = {"area": args.area or None, "label": args.label or None, "task_kind": args.kind or None}
        lesson = await learning.add_lesson(args.text.strip(), args.repo, **scope)
        print(f"lesson {lesson.id} added (pinned) for {lesson.scope}")
        return 0
    lesson = await learning.lesson(args.id)
    if lesson is None:
        print(f"compound: no lesson {args.id}", file=sys.stderr)
        return 1
    if command == "show":
        data = _as_json(lesson, (await learning.trials([lesson.id]))[lesson.id])
        if args.json:
            print(json.dumps(data, indent=2))
            return 0
        print(f"lesson {lesson.id} ({_state(lesson)}, {lesson.source})\nscope: {lesson.scope}\n\n{lesson.text}\n")
        figures = data["trials"]
        print(
            f"carried: {figures['carried']['first_try']}/{figures['carried']['sessions']} first try; "
            f"held out: {figures['held_out']['first_try']}/{figures['held_out']['sessions']}"
            + (f"; P(it helps) = {figures['p_helps']:.2f}" if "p_helps" in figures else "")
        )
        print(f"evidence: {', '.join(lesson.evidence) or 'none'}")
        if lesson.reason:
            print(lesson.reason)
        return 0
    if command == "pin":
        values: dict[str, Any] = {"pinned": not args.off}
        if not args.off and lesson.status != ACTIVE:
            values.update(status=ACTIVE, reason=None)
        await learning.set_lesson(lesson.id, **values)
        print(f"lesson {lesson.id} {'unpinned' if args.off else 'pinned'}")
        return 0
    if command == "retire":
        await learning.set_lesson(lesson.id, status=RETIRED, pinned=False, reason=args.reason)
        print(f"lesson {lesson.id} retired")
        return 0
    if command == "edit":
        values = {}
        if args.text is not None:
            if not args.text.strip():
                print("compound: --text must not be empty", file=sys.stderr)
                return 2
            values["text"] = args.text.strip()
        for name, column in (("area", "area"), ("label", "label"), ("kind", "task_kind")):
            value = getattr(args, name)
            if value is not None:
                values[column] = value or None
        if not values:
            print("compound: nothing to change (--text, --area, --label, --kind)", file=sys.stderr)
            return 2
        await learning.set_lesson(lesson.id, **values)
        print(f"lesson {lesson.id} edited")
        return 0
    raise AssertionError(command)
