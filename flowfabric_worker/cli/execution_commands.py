"""``submit``, ``inspect``, ``signal``, ``tail`` and ``flow cancel``: the
commands that act on one execution or flow."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

import anyio

from flowfabric_worker.cli.common import settings_from
from flowfabric_worker.errors import ConfigurationError, FlowFabricError
from flowfabric_worker.protocol.streams import Frame
from flowfabric_worker.settings import Settings


def submit_command(args: argparse.Namespace) -> int:
    from flowfabric_worker.client.client import Client

    settings = settings_from(args)
    try:
        payload = json.loads(args.json)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"--json is not valid JSON: {exc}") from exc
    call_args: list[Any] = payload if isinstance(payload, list) else [payload]
    kwargs: dict[str, Any] = {}
    if isinstance(payload, dict) and set(payload) <= {"args", "kwargs"} and payload:
        call_args, kwargs = list(payload.get("args", [])), dict(payload.get("kwargs", {}))

    async def go() -> str:
        async with Client.connect(settings.url, mode=settings.mode,
                                  namespace=settings.namespace, limits=settings.limits,
                                  durability=settings.durability) as client:
            run = await client.submit(args.name, *call_args, lane=args.lane or "default",
                                      idempotency_key=args.idempotency_key, **kwargs)
            return str(run.id)

    print(anyio.run(go))
    return 0


def _is_flow_id(text: str) -> bool:
    from flowfabric_worker.protocol.ids import validate_uuid

    try:
        validate_uuid(text)
    except FlowFabricError:
        return False
    return True


def _inspect_flow(settings: Settings, flow_id: str) -> int:
    from flowfabric_worker.client.client import Client

    async def go() -> dict[str, Any]:
        async with Client.connect(settings.url, mode=settings.mode,
                                  namespace=settings.namespace, limits=settings.limits) as client:
            return await client.flow_handle(flow_id).describe()

    print(json.dumps(anyio.run(go), indent=2, default=str))
    return 0


def flow_cancel_command(args: argparse.Namespace) -> int:
    from flowfabric_worker.client.client import Client

    settings = settings_from(args)

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


def inspect_command(args: argparse.Namespace) -> int:
    from flowfabric_worker.client.client import Client
    from flowfabric_worker.client.run_handle import RunHandle

    settings = settings_from(args)
    if _is_flow_id(args.id):
        return _inspect_flow(settings, args.id)

    async def go() -> dict[str, Any]:
        async with Client.connect(settings.url, mode=settings.mode,
                                  namespace=settings.namespace, limits=settings.limits) as client:
            run: RunHandle[Any] = client.run(args.id)
            core = await run.info()
            out: dict[str, Any] = {
                "id": run.id, "task": core.execution_kind, "lane": core.lane_id,
                "state": core.public_state, "attempts": core.total_attempt_count,
                "retries": core.retry_count,
            }
            if core.flow_id:
                out["flow"] = core.flow_id  # `inspect FLOW_ID` shows the flow
            if core.failure_reason or core.cancellation_reason:
                out["reason"] = core.failure_reason or core.cancellation_reason
                out["category"] = await run.failure_category(core)
            if core.public_state == "completed":
                data = await client.backend.get_result(run.id)
                out["result"] = json.loads(data) if data else None
            if not core.is_terminal:
                # Open waitpoints, tokens redacted to their kid.
                out["waitpoints"] = [w.to_display()
                                     for w in await client.pending_waitpoints(run.id)]
            return out

    print(json.dumps(anyio.run(go), indent=2, default=str))
    return 0


def signal_command(args: argparse.Namespace) -> int:
    from flowfabric_worker.client.client import Client

    settings = settings_from(args)
    try:
        payload = json.loads(args.json) if args.json is not None else None
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"--json is not valid JSON: {exc}") from exc

    async def go() -> dict[str, Any]:
        async with Client.connect(settings.url, mode=settings.mode,
                                  namespace=settings.namespace, limits=settings.limits) as client:
            out = await client.signal(args.id, args.name, payload,
                                      idempotency_key=args.idempotency_key,
                                      source=args.source, waitpoint=args.waitpoint)
            return {"status": out.status, "signal_id": out.signal_id, "effect": out.effect,
                    "execution_id": out.execution_id, "waitpoint_id": out.waitpoint_id}

    print(json.dumps(anyio.run(go)))
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

    settings = settings_from(args)
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
