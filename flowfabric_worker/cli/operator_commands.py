"""``ls``, ``cancel`` and ``retry``: an operator's day-to-day commands."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable
from typing import Any, get_args

import anyio

from flowfabric_worker.cli.common import server_settings
from flowfabric_worker.cli.display import age, progress, table
from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol.records import PublicState
from flowfabric_worker.settings import Settings


def _client(settings: Settings) -> Any:
    from flowfabric_worker.client.client import Client

    return Client.connect(settings.url, mode=settings.mode, namespace=settings.namespace,
                          limits=settings.limits)


def ls_command(args: argparse.Namespace) -> int:
    from flowfabric_worker.client.listing import list_executions

    settings = server_settings(args)

    async def go() -> list[Any]:
        async with _client(settings) as client:
            return await list_executions(
                client.backend, lanes=args.lanes, state=args.state, task=args.task,
                flow_id=args.flow, limit=args.limit)

    rows = anyio.run(go)
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
        return 0
    if not rows:
        print("no executions")
        return 0
    headers = ["ID", "TASK", "LANE", "STATE", "ATTEMPT", "AGE", "PROGRESS"]
    body = [[r.id, r.task, r.lane, r.state, str(r.attempts), age(r.created_at),
             progress(r.progress_pct, r.progress_message)] for r in rows]
    if any(r.state == "rate_limited" for r in rows):
        # Why the blocked ones wait (budget, quota, flow-control key).
        headers.append("WAITING ON")
        for line, r in zip(body, rows, strict=True):
            line.append(r.blocking_detail if r.state == "rate_limited" else "")
    print(table(headers, body))
    return 0


def cancel_command(args: argparse.Namespace) -> int:
    settings = server_settings(args)

    async def go() -> str:
        async with _client(settings) as client:
            core = await client.run(args.id).info()
            if core.is_terminal:
                # The contract's refusal (execution_not_active) names fields, not the state.
                raise InvalidInput(f"execution {args.id} already {core.public_state}: "
                                   "nothing to cancel")
            return str(await client.cancel(args.id, reason=args.reason or "cancelled from cli"))

    before = anyio.run(go)
    print(f"cancelled {args.id} (was {before})")
    return 0


def retry_command(args: argparse.Namespace) -> int:
    from flowfabric_worker.client.replay import replay

    settings = server_settings(args)

    async def go() -> str:
        async with _client(settings) as client:
            return await replay(client.backend, args.id)

    before = anyio.run(go)
    print(f"retrying {args.id} (was {before})")
    return 0


def add_operator_commands(
    commands: Any, connection_flags: Callable[[argparse.ArgumentParser], None]
) -> None:
    """Register ``ls``, ``cancel`` and ``retry`` on the top-level subparsers."""
    states: tuple[str, ...] = get_args(PublicState)
    ls = commands.add_parser(
        "ls", help="list executions, newest first, from the server's indexes",
        description="List executions as a table (id, task, lane, state, attempt, age, "
                    "progress), newest first. Reads the per-lane scheduling indexes, "
                    "never the whole keyspace.")
    ls.add_argument("--lane", dest="lanes", action="append", default=[], metavar="LANE",
                    help="only this lane; repeatable (default: every known lane)")
    ls.add_argument("--state", choices=states, metavar="STATE",
                    help=f"only executions in this state: {', '.join(states)}")
    ls.add_argument("--task", metavar="NAME", help="only executions of this task")
    ls.add_argument("--flow", metavar="FLOW_ID", help="only the members of this flow")
    ls.add_argument("--limit", type=int, default=50, metavar="N",
                    help="at most N rows (default: 50)")
    ls.add_argument("--json", action="store_true",
                    help="print a JSON list (times in epoch ms) instead of a table")
    connection_flags(ls)
    ls.set_defaults(handler=ls_command)

    cancel = commands.add_parser(
        "cancel", help="cancel an execution (waiting, running or suspended)")
    cancel.add_argument("id", help="execution id {fp:N}:<uuid>")
    cancel.add_argument("--reason", help="stored as its cancellation reason "
                                         "(default: 'cancelled from cli')")
    connection_flags(cancel)
    cancel.set_defaults(handler=cancel_command)

    retry = commands.add_parser(
        "retry", help="run a failed, cancelled, expired or skipped execution again "
                      "(a replay: same arguments, lane and options)")
    retry.add_argument("id", help="execution id {fp:N}:<uuid>")
    connection_flags(retry)
    retry.set_defaults(handler=retry_command)
