"""``flowfabric-worker schedule ls | pause ID | resume ID | trigger ID |
delete ID``: operating recurring schedules (docs/schedules.md)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import anyio

from flowfabric_worker.cli.common import server_settings
from flowfabric_worker.cli.display import table
from flowfabric_worker.settings import Settings

__all__ = ["add_schedule_commands", "schedule_command"]


def _client(settings: Settings) -> Any:
    from flowfabric_worker.client.client import Client

    return Client.connect(settings.url, mode=settings.mode, namespace=settings.namespace,
                          limits=settings.limits)


def _when(info: Any) -> str:
    from flowfabric_worker.tasks.schedule_specs import Cron

    when = info.when
    if isinstance(when, Cron):
        return f"cron {when.expr} ({when.tz})"
    return f"every {when.interval_ms / 1000:g}s"


def _time(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def _ls(infos: list[Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps([{
            "id": i.id, "task": i.task, "lane": i.lane, "when": _when(i), "state": i.state,
            "overlap": i.overlap, "catchup": i.catchup,
            "next_run": i.next_run.isoformat() if i.next_run else None,
            "last_run": i.last_run.isoformat() if i.last_run else None,
            "last_execution_id": i.last_execution_id, "fired": i.fired,
            "skipped": i.skipped, "source": i.source} for i in infos], indent=2))
        return
    if not infos:
        print("no schedules")
        return
    print(table(["ID", "TASK", "WHEN", "STATE", "NEXT RUN", "LAST RUN", "RUNS", "SKIPPED"],
                [[i.id, i.task, _when(i), i.state, _time(i.next_run), _time(i.last_run),
                  str(i.fired), str(i.skipped)] for i in infos]))


def schedule_command(args: argparse.Namespace) -> int:
    settings = server_settings(args)
    action: str = args.schedule_command

    async def go() -> Any:
        async with _client(settings) as client:
            if action == "ls":
                return await client.schedules()
            handle = client.schedule_handle(args.id)
            if action == "pause":
                return await handle.pause()
            if action == "resume":
                return await handle.resume()
            if action == "trigger":
                return (await handle.trigger()).id
            return await handle.delete()

    result = anyio.run(go)
    if action == "ls":
        _ls(result, args.json)
    elif action in ("pause", "resume"):
        print(f"{action}d {args.id} (was {result})")
    elif action == "trigger":
        print(result)
    elif result:
        print(f"deleted {args.id}")
    else:
        print(f"no schedule {args.id}")
        return 1
    return 0


def add_schedule_commands(
    commands: Any, connection_flags: Callable[[argparse.ArgumentParser], None]
) -> None:
    """Register ``schedule ls|pause|resume|trigger|delete``."""
    schedule = commands.add_parser(
        "schedule", help="recurring schedules: ls | pause | resume | trigger | delete")
    actions = schedule.add_subparsers(dest="schedule_command", required=True)
    ls = actions.add_parser("ls", help="every schedule with its next and last run")
    ls.add_argument("--json", action="store_true", help="print a JSON list")
    parsers = [ls]
    for name, text in (("pause", "stop creating runs (a running one is left alone)"),
                       ("resume", "start again from the next tick (missed ones not run)"),
                       ("trigger", "run it now, once; prints the execution id"),
                       ("delete", "delete it (its executions stay)")):
        p = actions.add_parser(name, help=text)
        p.add_argument("id", help="schedule id")
        parsers.append(p)
    for p in parsers:
        connection_flags(p)
        p.set_defaults(handler=schedule_command)
