"""The `compound` command (also `python -m bot`). Nothing runs at import."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bot
from bot.logs import setup_logging
from bot.settings import Settings, SettingsError, load_settings

log = logging.getLogger("compound")

SINCE_HELP = (
    "start of the window: 30d, 6h, 90m, 2w back from now, a date (2026-11-01), an ISO time (UTC unless it says), or all"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="compound",
        description="Compound: runs AI coding agents on GitHub issues and pull requests.",
        epilog="Settings come from the environment and .env (see README.md).",
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="run the web server and in-process workers (applies migrations first)",
        description="Run the webhook server and, unless --no-workers, the session workers. "
        "Applies database migrations first. Without APP_ID it offers the GitHub App "
        "manifest flow to register the App, at a one-time URL it prints.",
    )
    serve.add_argument(
        "--host",
        help="listen address (default: HOST, else 0.0.0.0, or 127.0.0.1 while no App is registered)",
    )
    serve.add_argument("--port", type=int, help="listen port (default: PORT or 3000)")
    serve.add_argument(
        "--no-workers",
        action="store_true",
        help="only receive and store deliveries; `compound worker` processes process them",
    )

    sub.add_parser(
        "worker",
        help="run workers only (split deployments on PostgreSQL)",
        description="Claim stored deliveries from the shared database and process them.",
    )

    receive = sub.add_parser(
        "receive",
        help="run one saved webhook payload through the handlers",
        description="Store one saved payload as a delivery and run it through the handlers, "
        "like Probot's `receive`. Exit status 1 if a handler failed.",
    )
    receive.add_argument("--event", "-e", required=True, help="event name, e.g. issues")
    receive.add_argument("--payload", "-p", required=True, type=Path, help="JSON payload file")
    receive.add_argument("--delivery-id", help="delivery id to record (default: a new one)")
    which = receive.add_mutually_exclusive_group()
    which.add_argument(
        "--index",
        type=int,
        metavar="N",
        help="for a file holding a list of payloads (tests/fixtures): run the N-th (from 0)",
    )
    which.add_argument("--each", action="store_true", help="for a file holding a list of payloads: run each in turn")

    doctor = sub.add_parser(
        "doctor",
        help="check settings, database, the App on GitHub, the agent CLI, sandbox and disk",
        description="Check this deployment, one line per check with a fix for each failure: settings; "
        "the database and its migrations; the App's authentication, webhook config and recent failed "
        "deliveries on GitHub; the agent backend's CLI; the sandbox; free disk in DATA_DIR. "
        "Changes nothing. Exit status 0 only when every check passes.",
    )
    doctor.add_argument("--json", action="store_true", help="print the checks as JSON")
    doctor.add_argument(
        "--webhook-url", metavar="URL", help="the public URL GitHub should deliver to (default: check only its path)"
    )

    redeliver = sub.add_parser(
        "redeliver",
        help="ask GitHub to redeliver what failed or never reached the store",
        description="List the App's recent webhook deliveries (GET /app/hook/deliveries) and ask "
        "GitHub to send again each one that failed or that the store never received, once "
        "(what was asked is remembered). `compound serve` does this on start and every "
        "REDELIVER_INTERVAL seconds; see docs/operations.md.",
    )
    redeliver.add_argument(
        "--since",
        metavar="WHEN",
        default="6h",
        help="how far back: 6h, 90m, 3d or an ISO time; GitHub keeps about 3 days (default: 6h)",
    )
    redeliver.add_argument("--dry-run", action="store_true", help="only print what would be asked for")
    redeliver.add_argument(
        "--max", type=int, default=None, metavar="N", help="ask for at most N (default: REDELIVER_MAX)"
    )

    db = sub.add_parser("db", help="database commands", description="Database commands.")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")
    db_sub.add_parser("upgrade", help="apply migrations", description="Apply database migrations.")
    payload = db_sub.add_parser(
        "payload",
        help="print a stored delivery's payload",
        description="Print the payload of a stored delivery exactly as GitHub signed it "
        "(on SQLite it is stored compressed), e.g. to replay it with `compound receive`.",
    )
    payload.add_argument("delivery_id", help="the X-GitHub-Delivery id")
    prune = db_sub.add_parser(
        "prune",
        help="remove what retention removes, now (or show it with --dry-run)",
        description="One retention pass, as the service's background job does it: processed "
        "deliveries older than DELIVERY_RETENTION_DAYS and failed ones older than "
        "FAILED_DELIVERY_RETENTION_DAYS (never younger than 72 h, never pending), with their "
        "payloads; old redelivery records; the events of sessions ended more than "
        "EVENTS_COMPACT_DAYS ago compacted; worktrees of ended sessions and mirrors of "
        "repositories no longer installed in DATA_DIR removed, `git gc --auto` on the others. "
        "Prints the counts per kind. See docs/operations.md#retention.",
    )
    prune.add_argument(
        "--dry-run", action="store_true", help="change nothing; print what would be removed, with the same counts"
    )

    report = sub.add_parser(
        "report",
        help="first-try success, rounds, time and cost of ended sessions",
        description="First-try success (with 95 % credible intervals), CI/review/rebase rounds, "
        "time to PR and to resolution, and cost of the sessions that ended in the window: in all, "
        "by task kind, model, prompt variant and repo; the prompts that spiralled; each lesson "
        "against its holdout. See docs/report.md.",
    )
    report.add_argument("--since", metavar="WHEN", default="30d", help=SINCE_HELP + " (default: 30d)")
    report.add_argument("--repo", metavar="OWNER/NAME", help="only this repository's sessions")
    report.add_argument("--json", action="store_true", help="print JSON (keys in docs/report.md)")

    events = sub.add_parser("events", help="session event commands", description="Session event commands.")
    events_sub = events.add_subparsers(dest="events_command", required=True, metavar="EVENTS_COMMAND")
    export = events_sub.add_parser(
        "export",
        help="print the stored session events as JSON lines",
        description="Print the session events the store holds as JSON lines, oldest first, in the "
        "shape of DATA_DIR/events.jsonl (docs/events.md).",
    )
    export.add_argument("--since", metavar="WHEN", help=SINCE_HELP + " (default: all)")
    export.add_argument("--session", metavar="ID", help="only this session's events")
    export.add_argument(
        "--type",
        action="append",
        default=[],
        metavar="TYPE",
        help="only events of this type, e.g. session.outcome (repeatable)",
    )

    from bot.learning import cli as lessons_cli

    lessons_cli.add_parser(sub)
    return parser


class _Version(argparse.Action):
    """`--version`, with the version read only when asked (see bot/__init__.py)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(f"compound {bot.__version__}")
        parser.exit()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "doctor":
        from bot import doctor

        setup_logging("error", "text")  # the probe's log lines would repeat what the checks say
        return doctor.report(_run(doctor.run(webhook_url=args.webhook_url)), as_json=args.json)  # type: ignore[arg-type]
    try:
        settings = load_settings()
        if args.command == "serve":
            _require_serve_settings(settings)
            if args.host:
                settings.host = args.host
            if args.port is not None:
                settings.port = args.port
        elif args.command in ("worker", "redeliver"):
            _require_registered(settings)
    except SettingsError as exc:
        print(f"compound: {exc}", file=sys.stderr)
        return 2
    setup_logging(
        settings.log_level,
        settings.log_format,
        secrets=[
            settings.webhook_secret.get_secret_value() if settings.webhook_secret else None,
            settings.private_key.get_secret_value() if settings.private_key else None,
        ],
    )
    _init_sentry(settings)
    since = None
    if args.command in ("report", "events", "redeliver"):
        from bot.learning.report import parse_since

        try:
            since = parse_since(args.since, datetime.now(UTC)) if args.since is not None else None
        except ValueError as exc:
            print(f"compound: --since: {exc}", file=sys.stderr)
            return 2
        if args.command == "redeliver" and since is None:
            print("compound: --since: give a window (GitHub keeps about 3 days)", file=sys.stderr)
            return 2
    runner: Callable[[], Coroutine[Any, Any, int]] = {
        "report": lambda: _report(settings, since, args.repo, as_json=args.json),
        "events": lambda: _events_export(settings, since, args.session, args.type),
        "serve": lambda: _serve(settings, workers=not args.no_workers),
        "worker": lambda: _worker(settings),
        "redeliver": lambda: _redeliver(settings, since, dry_run=args.dry_run, cap=args.max),
        "receive": lambda: _receive(settings, args.event, args.payload, args.delivery_id, args.index, args.each),
        "lessons": lambda: _lessons(settings, args),
        "db": lambda: (
            _db_payload(settings, args.delivery_id)
            if args.db_command == "payload"
            else _db_prune(settings, dry_run=args.dry_run)
            if args.db_command == "prune"
            else _db_upgrade(settings)
        ),
    }[args.command]
    try:
        from bot.store import check_reachable

        _run(check_reachable(settings.resolved_database_url))
        if args.command in ("report", "events"):
            from bot.store import check_migrated

            _run(check_migrated(settings.resolved_database_url))
        return _run(runner())
    except SettingsError as exc:
        print(f"compound: {exc}", file=sys.stderr)
        return 2


def _run(coro: object) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(coro)  # type: ignore[arg-type]
    return uvloop.run(coro)  # type: ignore[arg-type]


def _require_serve_settings(settings: Settings) -> None:
    if settings.app_id is None:
        return  # setup mode: the manifest flow registers the App
    _require_registered(settings)


def _require_registered(settings: Settings) -> None:
    if settings.app_id is None:
        raise SettingsError("APP_ID: required (run `compound serve` once to register the App)")
    if settings.webhook_secret is None or not settings.webhook_secret.get_secret_value():
        raise SettingsError("WEBHOOK_SECRET: required; the service never accepts unsigned webhooks")
    if not settings.github_configured:
        raise SettingsError("PRIVATE_KEY or PRIVATE_KEY_PATH: required when APP_ID is set")
    from bot.github import AppAuth, InvalidPrivateKey

    pem = settings.private_key_pem()  # a PRIVATE_KEY_PATH that cannot be read fails here
    assert pem is not None
    try:
        AppAuth(settings.app_id, pem)
    except InvalidPrivateKey as exc:
        name = "PRIVATE_KEY" if settings.private_key is not None else "PRIVATE_KEY_PATH"
        raise SettingsError(f"{name}: not a PEM private key") from exc


def _init_sentry(settings: Settings) -> None:
    if settings.sentry_dsn is None:
        return
    import sentry_sdk

    from bot.logs import redact_event

    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        release=f"compound@{bot.__version__}",
        before_send=redact_event,
        send_default_pii=False,
    )


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _serve(settings: Settings, *, workers: bool) -> int:
    from bot.front import listen
    from bot.service import Service

    service = Service(settings, run_workers=workers, read_proxy=True)
    await service.start()
    host = settings.listen_host
    listener = await listen(
        service.web_app(),
        service.intake,
        host=host,
        port=settings.port,
        path=settings.webhook_path,
        max_connections=settings.webhook_max_connections,
        head_timeout=settings.webhook_head_timeout,
        body_timeout=settings.webhook_body_timeout,
        body_budget=settings.webhook_body_budget_mb * 1024 * 1024,
    )
    # What start-up built lives as long as the process: keep the collector off
    # it, and let it run less often (each delivery allocates a lot, briefly).
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    # SQLite writes run on aiosqlite's thread, which needs the GIL back after
    # every step and commit; the default 5 ms hand-over holds each group commit
    # up while the event loop is busy.
    sys.setswitchinterval(0.0005)
    mode = "" if settings.app_id else " (setup mode: not registered yet)"
    log.info("listening on http://%s:%s%s", host, listener.port, mode, extra={"webhook_path": settings.webhook_path})
    if service.setup_gate is not None:
        _announce_setup(settings, service.setup_gate.token, host, listener.port)
    elif settings.webhook_proxy_url:
        from bot.proxy import channel_name

        log.info(
            "webhooks come through the proxy channel on %s (WEBHOOK_PROXY_URL)",
            channel_name(settings.webhook_proxy_url),
        )
    try:
        await _wait_for_signal()
    finally:
        log.info("shutting down")
        await listener.close()
        await service.stop()
    return 0


def _announce_setup(settings: Settings, token: str, host: str, port: int) -> None:
    """The one-time link, on stdout (the operator's console) and in the log."""
    wildcard = host in {"0.0.0.0", "::"}
    shown = "127.0.0.1" if wildcard else host
    url = f"http://{f'[{shown}]' if ':' in shown else shown}:{port}/?token={token}"
    if wildcard:
        reach = " (from another machine, put this machine's name in place of 127.0.0.1)"
    elif host in {"127.0.0.1", "localhost", "::1"}:
        reach = (
            f" (it listens on {host} only: from another machine, forward the port with"
            f" `ssh -L {port}:{host}:{port} THIS-MACHINE`, or set HOST)"
        )
    else:
        reach = ""
    from bot.reachability import reachability_advice

    hook = settings.webhook_proxy_url or url.partition("/?")[0] + settings.webhook_path
    advice = reachability_advice(hook, proxy_url=settings.webhook_proxy_url)
    print(
        f"\nCompound is not registered as a GitHub App yet. To register it, open\n\n    {url}\n\n"
        f"in your browser{reach}. The link works once, for one browser; restarting "
        f"`compound serve` makes a new one. The credentials will be saved to "
        f"{settings.credentials_file}.\n"
        + (f"\nWebhooks will not arrive if you register from this address: {advice}\n" if advice else ""),
        flush=True,
    )
    if advice:
        log.warning("setup mode: %s", advice)
    log.info("setup mode: register the GitHub App at %s", url)


async def _worker(settings: Settings) -> int:
    from bot.service import Service

    service = Service(settings)
    await service.start()
    try:
        await _wait_for_signal()
    finally:
        await service.stop()
    return 0


async def _receive(
    settings: Settings, event: str, payload_path: Path, delivery_id: str | None, index: int | None, each: bool
) -> int:
    import orjson

    try:
        body = payload_path.read_bytes()
        data = orjson.loads(body)
    except (OSError, ValueError) as exc:
        print(f"compound: cannot read payload {payload_path}: {exc}", file=sys.stderr)
        return 2
    if isinstance(data, list):
        # tests/fixtures/webhooks/examples hold every published example of an event.
        actions = ", ".join(f"{i}: {p.get('action', '-')}" for i, p in enumerate(data) if isinstance(p, dict))
        if index is None and not each:
            print(
                f"compound: {payload_path} holds {len(data)} payloads ({actions}); "
                "pick one with --index N or run each with --each",
                file=sys.stderr,
            )
            return 2
        if index is not None and not -len(data) <= index < len(data):
            print(f"compound: --index {index}: {payload_path} holds {len(data)} payloads ({actions})", file=sys.stderr)
            return 2
        # One payload unless --each (the index was checked above).
        bodies = [orjson.dumps(data[index])] if index is not None and not each else [orjson.dumps(p) for p in data]
    elif index is not None or each:
        print(f"compound: {payload_path} holds one payload; --index and --each are for lists", file=sys.stderr)
        return 2
    else:
        bodies = [body]
    from bot.intake import parse_record

    base = delivery_id or f"receive-{uuid.uuid4()}"
    try:
        records = [parse_record(base if len(bodies) == 1 else f"{base}-{i}", event, b) for i, b in enumerate(bodies)]
    except ValueError as exc:
        print(f"compound: cannot read payload {payload_path}: {exc}", file=sys.stderr)
        return 2
    from bot.service import Service

    service = Service(settings, run_workers=False)
    await service.start()
    status = 0
    try:
        assert service.policy is not None  # Service.__post_init__ sets it
        service.policy.max_attempts = 1
        for record, payload in records:
            status = max(status, await _receive_one(service, event, record, payload))
    finally:
        await service.stop()
    return status


async def _receive_one(service: object, event: str, record: object, data: dict[str, object]) -> int:
    """Process one delivery; print a line for it and one per handler: what it did, or why not."""
    from gidgethub import sansio

    from bot.context import record_skips

    svc: Any = service
    rec: Any = record
    new = await svc.store.deliveries.insert_new([rec], svc.owner, svc.policy.lease)
    if not new:
        print(f"compound: delivery {rec.delivery_id} was received before", file=sys.stderr)
        return 1
    skips = record_skips()
    await svc.dispatcher.process(rec, data)
    stored = await svc.store.deliveries.get(rec.delivery_id)
    assert stored is not None
    print(f"{stored.delivery_id} {event}.{rec.action or '-'}: {stored.status}")
    if stored.status == "skipped":  # no handler ran (bot/skips.py)
        print(f"  skipped: {stored.skip_reason}")
        return 0
    handlers = sorted(
        h.__name__ for h in svc.dispatcher.router.fetch(sansio.Event(data, event=event, delivery_id=rec.delivery_id))
    )
    if not handlers:
        print(f"  no handler for {event}.{rec.action or '-'}")
    errors = stored.last_error or ""
    for name in handlers:
        if f"{name}:" in errors:
            print(f"  {name}: failed")
        elif name in skips:
            print(f"  {name}: skipped: {skips[name]}")
        else:
            print(f"  {name}: done")
    if stored.status != "processed":
        print(errors, file=sys.stderr)
        return 1
    return 0


async def _redeliver(settings: Settings, since: datetime | None, *, dry_run: bool, cap: int | None) -> int:
    import aiohttp

    import handlers
    from bot.github import GitHub
    from bot.metrics import Metrics
    from bot.redeliver import catch_up
    from bot.store import Store

    assert since is not None
    store = Store.connect(settings.resolved_database_url)
    try:
        await store.migrate()
        async with aiohttp.ClientSession() as session:
            gh = GitHub.from_settings(session, settings, Metrics()).app()
            result = await catch_up(
                gh,
                store.engine,
                events=handlers.EVENTS,
                since=since,
                cap=cap or settings.redeliver_max,
                dry_run=dry_run,
            )
    finally:
        await store.close()
    verb = "would ask" if dry_run else "asked"
    done = result.missed if dry_run else result.asked
    for m in done:
        print(f"{verb} {m.guid} {m.event}.{m.action or '-'} delivered {m.delivered_at:%Y-%m-%d %H:%M:%S}Z ({m.reason})")
    for m, why in result.refused:
        print(f"refused {m.guid} {m.event}.{m.action or '-'}: {why}", file=sys.stderr)
    print(
        f"{result.listed} deliveries listed since {since:%Y-%m-%d %H:%M}Z; {len(done)} {verb} again"
        + (f", {result.already_asked} asked before" if result.already_asked else "")
        + (f", {result.over_cap} over the cap (run again)" if result.over_cap else ""),
    )
    return 1 if result.refused else 0


async def _lessons(settings: Settings, args: argparse.Namespace) -> int:
    from bot.learning import cli as lessons_cli

    return await lessons_cli.run(settings, args)


async def _db_upgrade(settings: Settings) -> int:
    from bot.store import Store

    store = Store.connect(settings.resolved_database_url)
    try:
        await store.migrate()
    finally:
        await store.close()
    print("database is up to date")
    return 0


async def _db_payload(settings: Settings, delivery_id: str) -> int:
    from bot.store import Store

    store = Store.connect(settings.resolved_database_url)
    try:
        await store.migrate()
        record = await store.deliveries.get(delivery_id)
    finally:
        await store.close()
    if record is None:
        print(f"compound: no delivery {delivery_id!r} is stored", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(record.payload)
    sys.stdout.flush()
    return 0


async def _db_prune(settings: Settings, *, dry_run: bool) -> int:
    from bot.retention import Retention
    from bot.store import Store
    from bot.workspace import Workspaces

    store = Store.connect(settings.resolved_database_url)
    try:
        await store.migrate()
        workspaces = Workspaces(settings.data_dir, settings.git_base_url)
        report = await Retention.from_settings(settings, store, workspaces).prune(dry_run=dry_run)
    finally:
        await store.close()
    for line in report.lines():
        print(line)
    print(f"{'dry run' if dry_run else 'pass'} took {report.seconds:.1f}s")
    return 1 if report.errors else 0


async def _report(settings: Settings, since: datetime | None, repo: str | None, *, as_json: bool) -> int:
    import json

    from bot.learning.report import build_report
    from bot.learning.report_table import render
    from bot.store import Store

    store = Store.connect(settings.resolved_database_url, pool_size=3)  # its three queries at once
    try:
        report = await build_report(store.engine, since=since, repo=repo)
    finally:
        await store.close()
    sys.stdout.write(json.dumps(report, indent=2) + "\n" if as_json else render(report))
    return 0


async def _events_export(settings: Settings, since: datetime | None, session: str | None, types: list[str]) -> int:
    import orjson

    from bot.store import Store
    from bot.store.events import stream_events

    store = Store.connect(settings.resolved_database_url)
    out = sys.stdout.buffer
    try:
        async for line in stream_events(store.engine, since=since, session_id=session, types=types):
            out.write(orjson.dumps(line) + b"\n")
        out.flush()
    except BrokenPipeError:  # `| head`: the reader has what it wanted; say nothing at exit either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        await store.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
