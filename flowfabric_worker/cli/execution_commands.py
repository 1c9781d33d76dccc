"""``submit``, ``signal``, ``tail`` and ``flow cancel``: the commands that
act on one execution or flow (``inspect`` is in ``inspect_commands``)."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from datetime import UTC, datetime
from typing import Any

import anyio

from flowfabric_worker.cli.common import server_settings
from flowfabric_worker.errors import (
    ConfigurationError,
    ExecutionError,
    InvalidInput,
    ResultTimeout,
    UnmatchedSignalWarning,
)
from flowfabric_worker.protocol.streams import Frame

_SHAPE = 'a JSON list of arguments or {"args": [...], "kwargs": {...}}'
#: ``submit --wait`` exit codes beyond 0 (completed) and 2 (an error).
EXIT_ENDED_WITHOUT_RESULT = 1
EXIT_WAIT_TIMED_OUT = 124  # as timeout(1)
#: ``signal``: sent, but the execution's wait does not wait for that name.
SIGNAL_UNMATCHED_EXIT = 3


def call_arguments(text: str) -> tuple[list[Any], dict[str, Any]]:
    """``submit --json``: positional and keyword arguments, or one line
    saying what shape is wanted."""
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"--json is not valid JSON: {exc}") from exc
    if isinstance(payload, list):
        return payload, {}
    if isinstance(payload, dict) and payload and set(payload) <= {"args", "kwargs"}:
        args, kwargs = payload.get("args", []), payload.get("kwargs", {})
        if isinstance(args, list) and isinstance(kwargs, dict):
            return args, kwargs
    raise InvalidInput(f"--json must be {_SHAPE}, got {text.strip()[:80]}")


def _task_from_module(spec: str, name: str) -> Any:
    from flowfabric_worker.cli.worker_commands import collect_tasks

    sys.path.insert(0, ".")
    tasks = {t.name: t for t in collect_tasks([spec])}
    if name not in tasks:
        # Task names default to module.function; the bare function name is
        # what a user types after --module, so take it when it is unambiguous.
        short = [n for n in tasks if n.rsplit(".", 1)[-1] == name]
        if len(short) == 1:
            name = short[0]
    if name not in tasks:
        raise ConfigurationError(
            f"no task named {name!r} in {spec} (it has: {', '.join(sorted(tasks))})")
    return tasks[name]


def submit_command(args: argparse.Namespace) -> int:
    from flowfabric_worker.client.client import Client
    from flowfabric_worker.client.listing import live_worker_lanes

    call_args, kwargs = call_arguments(args.json)
    settings = server_settings(args)
    # The task's own lane and options (retry, timeout, priority...) when its
    # module imports; by name, the worker alone knows them.
    task: Any = _task_from_module(args.module, args.name) if args.module else args.name

    async def go() -> int:
        async with Client.connect(settings.url, mode=settings.mode,
                                  namespace=settings.namespace, limits=settings.limits,
                                  durability=settings.durability) as client:
            lane = args.lane or (task.lane if not isinstance(task, str) else "default")
            run = await client.submit(task, *call_args, lane=lane,
                                      idempotency_key=args.idempotency_key, **kwargs)
            if lane not in await live_worker_lanes(client.backend, client.namespace):
                print(f"warning: no live worker serves lane {lane!r}; the execution waits "
                      "until one starts", file=sys.stderr)
            if not args.wait:
                print(run.id)
                return 0
            print(f"submitted {run.id}", file=sys.stderr)
            try:
                result: Any = await client.run(run.id).result(timeout=args.wait_timeout)
            except ExecutionError as exc:
                print(f"{exc.__class__.__name__}: {str(exc).partition(chr(10))[0]}",
                      file=sys.stderr)
                return EXIT_ENDED_WITHOUT_RESULT
            except ResultTimeout as exc:
                print(f"error: {exc}", file=sys.stderr)
                return EXIT_WAIT_TIMED_OUT
            print(json.dumps(result, default=str))
            return 0

    return int(anyio.run(go))


def flow_cancel_command(args: argparse.Namespace) -> int:
    from flowfabric_worker.client.client import Client

    settings = server_settings(args)

    async def go() -> dict[str, Any]:
        async with Client.connect(settings.url, mode=settings.mode,
                                  namespace=settings.namespace, limits=settings.limits) as client:
            handle = client.flow_handle(args.flow_id)
            await handle.state()  # fails clearly on an unknown flow
            done = await handle.cancel(args.policy, reason=args.reason or "")
            return {"flow": handle.id, "policy": done.policy,
                    "cancelled": done.cancelled, "pending": done.pending}

    print(json.dumps(anyio.run(go), indent=2))
    return 0


def signal_command(args: argparse.Namespace) -> int:
    from flowfabric_worker.client.client import Client

    try:
        payload = json.loads(args.json) if args.json is not None else None
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"--json is not valid JSON: {exc}") from exc
    settings = server_settings(args)

    async def go() -> dict[str, Any]:
        async with Client.connect(settings.url, mode=settings.mode,
                                  namespace=settings.namespace, limits=settings.limits) as client:
            # A mistyped payload raises SignalPayloadError before anything is
            # written: main() prints it, exit status 2.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UnmatchedSignalWarning)  # said below
                out = await client.signal(args.id, args.name, payload,
                                          idempotency_key=args.idempotency_key,
                                          source=args.source, waitpoint=args.waitpoint)
            return {"status": out.status, "signal_id": out.signal_id, "effect": out.effect,
                    "execution_id": out.execution_id, "waitpoint_id": out.waitpoint_id}

    out = anyio.run(go)
    print(json.dumps(out))
    if out["status"] == "unmatched":
        print(f"warning: execution {out['execution_id']} does not wait for a signal named "
              f"{args.name!r}: it was recorded but resumes nothing (check the name)",
              file=sys.stderr)
        return SIGNAL_UNMATCHED_EXIT
    return 0


class _TailPrinter:
    """Renders frames for a terminal: stdout/stderr text as it arrives (no
    added newlines), everything else as one line per frame."""

    def __init__(self, out: Any, err: Any) -> None:
        self.out, self.err = out, err
        self._mid_line = False  # the last text written to ``out`` did not end a line

    def _line(self, text: str) -> None:
        if self._mid_line:
            self.out.write("\n")
            self._mid_line = False
        self.out.write(text + "\n")
        self.out.flush()

    def frame(self, f: Frame) -> None:
        if f.frame_type == "stdout":
            self.out.write(f.text)
            self.out.flush()
            self._mid_line = not f.text.endswith("\n")
        elif f.frame_type == "stderr":
            self.err.write(f.text)
            self.err.flush()
        elif f.frame_type == "blob" or f.encoding not in ("utf8", "utf-8"):
            self._line(f"[{f.frame_type} {len(f.payload)} bytes]")
        elif f.mode == "summary":
            self._line(f"[summary v{f.summary_version}] {f.text}")
        else:
            label = f.frame_type if f.mode != "best_effort" else f"{f.frame_type}~"
            self._line(f"[{label}] {f.text}")

    def closed(self, reason: str) -> None:
        if self._mid_line:
            self.out.write("\n")
            self.out.flush()
            self._mid_line = False
        self.err.write(f"-- stream closed: {reason or 'unknown'}\n")
        self.err.flush()


def tail_command(args: argparse.Namespace) -> int:
    from flowfabric_worker.client.client import Client
    from flowfabric_worker.client.run_handle import RunHandle

    settings = server_settings(args)
    printer = _TailPrinter(sys.stdout, sys.stderr)

    async def go() -> None:
        async with Client.connect(settings.url, mode=settings.mode,
                                  namespace=settings.namespace, limits=settings.limits) as client:
            run: RunHandle[Any] = client.run(args.id)
            core = await run.info()  # fails clearly on an unknown execution
            attempt = args.attempt
            if attempt is None:
                attempt = core.current_attempt_index or 0
            async for f in run.frames(attempt=attempt, after=args.after,
                                      follow=not args.no_follow,
                                      include_best_effort=not args.no_best_effort):
                printer.frame(f)
            meta = await client.backend.read_stream_meta(run.id, attempt)
            if meta is not None and meta.closed:
                printer.closed(meta.closed_reason)

    try:
        anyio.run(go)
    except KeyboardInterrupt:
        return 130
    return 0


def iso_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
