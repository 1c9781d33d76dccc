"""The ``flowfabric-worker`` command line.

Every connection/worker flag can also come from a ``FLOWFABRIC_*`` environment
variable through :class:`~flowfabric_worker.settings.Settings`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

import anyio

from .backend.library import FFW, FLOWFABRIC, library_text
from .errors import ConfigurationError, FlowFabricError
from .protocol.streams import Frame
from .settings import Settings
from .task import TaskDefinition


def _library_print(args: argparse.Namespace) -> int:
    spec = FFW if args.name == "ffw" else FLOWFABRIC
    sys.stdout.write(library_text(spec))
    return 0


def _settings(args: argparse.Namespace) -> Settings:
    keys = ("url", "mode", "namespace", "lanes", "concurrency", "capabilities",
            "lease_ttl", "scanners", "worker_id", "log_level", "grace_period",
            "disabled_scanners", "scanner_interval_scale")
    return Settings.load({k: getattr(args, k, None) for k in keys})


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level, stream=sys.stderr,
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
    )


def collect_tasks(specs: Sequence[str]) -> list[TaskDefinition[Any, Any]]:
    """Import ``MODULE`` or ``MODULE:ATTR`` and collect its TaskDefinitions."""
    found: dict[str, TaskDefinition[Any, Any]] = {}
    for spec in specs:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigurationError(f"cannot import {module_name!r}: {exc}") from exc
        if attr:
            obj = getattr(module, attr, None)
            candidates: list[Any] = list(obj) if isinstance(obj, list | tuple) else [obj]
            if not all(isinstance(t, TaskDefinition) for t in candidates):
                raise ConfigurationError(f"{spec} is not a task or a list of tasks")
            items: list[TaskDefinition[Any, Any]] = candidates
        else:
            items = [v for v in vars(module).values() if isinstance(v, TaskDefinition)]
        for t in items:
            found[t.name] = t
    if not found:
        raise ConfigurationError(f"no tasks found in {', '.join(specs)}")
    return list(found.values())


async def _run_worker(settings: Settings, tasks: list[TaskDefinition[Any, Any]]) -> None:
    from .client import Client
    from .runtime.worker import Worker

    async with Client.connect(settings.url, mode=settings.mode,
                              namespace=settings.namespace) as client:
        worker = Worker(
            client, tasks=cast(list[Any], tasks), lanes=settings.lanes or None,
            concurrency=settings.concurrency, capabilities=settings.capabilities,
            lease_ttl=settings.lease_ttl, worker_id=settings.worker_id,
            grace_period=settings.grace_period, scanners=settings.scanners,
            scanner_interval_scale=settings.scanner_interval_scale,
            disabled_scanners=settings.disabled_scanners,
            waitpoint_hmac_secret=(settings.waitpoint_hmac_secret.get_secret_value()
                                   if settings.waitpoint_hmac_secret else None),
        )
        await worker.run(install_signals=True)


def _run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _setup_logging(settings.log_level)
    sys.path.insert(0, ".")
    tasks = collect_tasks(args.modules)
    logging.getLogger("flowfabric_worker.cli").info(
        "starting tasks=%s lanes=%s", ",".join(sorted(t.name for t in tasks)),
        ",".join(settings.lanes) or "(from tasks)")
    anyio.run(_run_worker, settings, tasks)
    return 0


def _submit(args: argparse.Namespace) -> int:
    from .client import Client

    settings = _settings(args)
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
                                  namespace=settings.namespace) as client:
            run = await client.submit(args.name, *call_args, lane=args.lane or "default",
                                      idempotency_key=args.idempotency_key, **kwargs)
            return str(run.id)

    print(anyio.run(go))
    return 0


def _is_flow_id(text: str) -> bool:
    from .protocol.ids import validate_uuid

    try:
        validate_uuid(text)
    except FlowFabricError:
        return False
    return True


def _inspect_flow(settings: Settings, flow_id: str) -> int:
    from .client import Client

    async def go() -> dict[str, Any]:
        async with Client.connect(settings.url, mode=settings.mode,
                                  namespace=settings.namespace) as client:
            return await client.flow_handle(flow_id).describe()

    print(json.dumps(anyio.run(go), indent=2, default=str))
    return 0


def _flow_cancel(args: argparse.Namespace) -> int:
    from .client import Client

    settings = _settings(args)

    async def go() -> dict[str, Any]:
        async with Client.connect(settings.url, mode=settings.mode,
                                  namespace=settings.namespace) as client:
            handle = client.flow_handle(args.flow_id)
            await handle.state()  # fails clearly on an unknown flow
            done = await handle.cancel(args.policy, reason=args.reason or "")
            return {"flow": handle.id, "policy": done.policy,
                    "cancelled": done.cancelled, "pending": done.pending}

    print(json.dumps(anyio.run(go), indent=2))
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from .client import Client, RunHandle

    settings = _settings(args)
    if _is_flow_id(args.id):
        return _inspect_flow(settings, args.id)

    async def go() -> dict[str, Any]:
        async with Client.connect(settings.url, mode=settings.mode,
                                  namespace=settings.namespace) as client:
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


def _signal(args: argparse.Namespace) -> int:
    from .client import Client

    settings = _settings(args)
    try:
        payload = json.loads(args.json) if args.json is not None else None
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"--json is not valid JSON: {exc}") from exc

    async def go() -> dict[str, Any]:
        async with Client.connect(settings.url, mode=settings.mode,
                                  namespace=settings.namespace) as client:
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


def _tail(args: argparse.Namespace) -> int:
    from .client import Client, RunHandle

    settings = _settings(args)
    printer = _TailPrinter(sys.stdout, sys.stderr)

    async def go() -> None:
        async with Client.connect(settings.url, mode=settings.mode,
                                  namespace=settings.namespace) as client:
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


def _scan(args: argparse.Namespace) -> int:
    from .backend.backend import Backend
    from .runtime.scanners import run_scanners

    settings = _settings(args)
    _setup_logging(settings.log_level)

    async def go() -> None:
        backend = await Backend.open(settings.url, mode=settings.mode)
        try:
            await run_scanners(backend, lanes=settings.lanes or None,
                               disabled=settings.disabled_scanners,
                               interval_scale=settings.scanner_interval_scale)
        finally:
            await backend.close()

    anyio.run(go)
    return 0


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _secret_arg(args: argparse.Namespace, settings: Settings) -> str | None:
    """The secret from ``--secret-file``, else (``init`` only)
    ``FLOWFABRIC_WAITPOINT_HMAC_SECRET``; never from the command line, where
    ``ps`` would show it."""
    path = getattr(args, "secret_file", None)
    if not path:
        # Only init (bootstrap) takes the environment's secret, like 0.15 at
        # boot: a rotation re-using a long-lived env secret would rotate nothing.
        env = settings.waitpoint_hmac_secret
        if env is None or args.secrets_command != "init":
            return None
        return env.get_secret_value().strip()
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    except OSError as exc:
        raise ConfigurationError(f"cannot read --secret-file: {exc}") from exc


def _secrets(args: argparse.Namespace) -> int:
    from . import secrets as ks
    from .backend.backend import Backend

    settings = _settings(args)
    secret = _secret_arg(args, settings)

    async def go() -> int:
        async with await Backend.open(settings.url, mode=settings.mode) as backend:
            if args.secrets_command == "init":
                out = await ks.init_secrets(backend, kid=args.kid, secret_hex=secret)
                what = {"initialised": f"initialised: kid {out.kid} installed on "
                                       f"{out.written} partitions",
                        "already_initialised": f"already initialised: kid {out.kid} on all "
                                               f"{out.partitions} partitions (nothing written)",
                        "repaired": f"repaired: kid {out.kid} written to {out.written} of "
                                    f"{out.partitions} partitions"}[out.status]
                print(what)
                if out.note:
                    print(f"warning: {out.note}", file=sys.stderr)
                return 0
            if args.secrets_command == "rotate":
                grace_ms = round(args.grace * 1000)
                rot = await ks.rotate_secrets(backend, grace_ms=grace_ms, kid=args.kid,
                                              secret_hex=secret)
                until = _iso(await backend.server_time_ms() + grace_ms)
                print(f"rotated {rot.previous_kid} -> {rot.kid} on {rot.partitions} partitions; "
                      f"tokens of {rot.previous_kid} accepted until about {until} "
                      f"(grace {args.grace:g}s); {rot.gc_count} expired kid entries removed")
                return 0
            status = await ks.list_secrets(backend)
            if args.json:
                doc = {"partitions": status.partitions, "consistent": status.consistent,
                       "groups": [{"partitions": g.partition_ranges(),
                                   "count": len(g.partitions),
                                   "current_kid": g.current_kid or None,
                                   "in_grace": [{"kid": k, "expires_at": _iso(e),
                                                 "expires_at_ms": e} for k, e in g.in_grace],
                                   **({"secrets": {k: v.reveal() for k, v in g.secrets.items()}}
                                      if args.show_secrets else {})}
                                  for g in status.groups]}
                print(json.dumps(doc, indent=2))
            else:
                for g in status.groups:
                    head = f"partitions {g.partition_ranges()} ({len(g.partitions)}): "
                    if not g.current_kid:
                        print(head + "NOT INITIALISED")
                        continue
                    grace = ", ".join(f"{k} until {_iso(e)}" for k, e in g.in_grace)
                    print(head + f"current {g.current_kid}" +
                          (f"; in grace: {grace}" if grace else "; no kid in grace"))
                    if args.show_secrets:
                        for kid, value in g.secrets.items():
                            print(f"    secret {kid}: {value.reveal()}")
                if not status.initialised:
                    print("keystore not initialised everywhere: run "
                          "`flowfabric-worker secrets init`", file=sys.stderr)
                elif not status.consistent:
                    print("partitions disagree (interrupted rotation?): run "
                          "`flowfabric-worker secrets init` to finish it", file=sys.stderr)
            return 0 if status.consistent else 1

    return int(anyio.run(go))


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return int(anyio.run(run_demo, args.url or "memory://"))


def _connection_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", help="redis://, rediss:// or memory:// (FLOWFABRIC_URL)")
    p.add_argument("--mode", choices=["standalone", "attached"], help="(FLOWFABRIC_MODE)")
    p.add_argument("--namespace", help="(FLOWFABRIC_NAMESPACE)")
    p.add_argument("--log-level", dest="log_level", help="(FLOWFABRIC_LOG_LEVEL)")


def _scanner_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scanner-interval-scale", dest="scanner_interval_scale", type=float,
                   help="multiply every scanner interval (FLOWFABRIC_SCANNER_INTERVAL_SCALE)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowfabric-worker",
        description="Durable tasks on Redis/Valkey, FlowFabric 0.15 compatible.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a worker for the tasks in MODULE[:ATTR]...")
    run.add_argument("modules", nargs="+", metavar="MODULE[:ATTR]")
    _connection_flags(run)
    run.add_argument("--lane", dest="lanes", action="append", default=[],
                     help="lane to claim from, repeatable (FLOWFABRIC_LANES=a,b)")
    run.add_argument("--concurrency", type=int, help="(FLOWFABRIC_CONCURRENCY)")
    run.add_argument("--capability", dest="capabilities", action="append", default=[],
                     help="repeatable (FLOWFABRIC_CAPABILITIES=a,b)")
    run.add_argument("--lease-ttl", dest="lease_ttl", type=float,
                     help="seconds (FLOWFABRIC_LEASE_TTL)")
    run.add_argument("--no-scanners", dest="scanners", action="store_const", const=False,
                     help="do not run the maintenance scanners (FLOWFABRIC_SCANNERS=false)")
    run.add_argument("--disable-scanner", dest="disabled_scanners", action="append",
                     default=[], metavar="NAME",
                     help="skip one maintenance scanner; repeatable "
                          "(FLOWFABRIC_DISABLED_SCANNERS=a,b)")
    _scanner_flags(run)
    run.add_argument("--worker-id", dest="worker_id", help="(FLOWFABRIC_WORKER_ID)")
    run.add_argument("--grace-period", dest="grace_period", type=float,
                     help="seconds to drain on shutdown (FLOWFABRIC_GRACE_PERIOD)")
    run.set_defaults(handler=_run)

    submit = commands.add_parser("submit", help="submit an execution of a task by name")
    submit.add_argument("name")
    submit.add_argument("--json", default="[]",
                        help='arguments: a JSON list, or {"args": [...], "kwargs": {...}}')
    submit.add_argument("--lane", help="lane (default: default)")
    submit.add_argument("--idempotency-key", dest="idempotency_key")
    _connection_flags(submit)
    submit.set_defaults(handler=_submit)

    signal = commands.add_parser(
        "signal", help="send a signal to an execution waiting on a waitpoint")
    signal.add_argument("id")
    signal.add_argument("name")
    signal.add_argument("--json", help="payload as JSON (default: none)")
    signal.add_argument("--idempotency-key", dest="idempotency_key",
                        help="the same key on the same waitpoint records the signal once")
    signal.add_argument("--waitpoint", help="waitpoint id or key when several are open")
    signal.add_argument("--source", default="cli", help="sender identity stored with it")
    _connection_flags(signal)
    signal.set_defaults(handler=_signal)

    inspect = commands.add_parser(
        "inspect", help="show an execution's state and outcome, or a flow (bare UUID): "
        "its members, edges and state")
    inspect.add_argument("id", help="execution id {fp:N}:<uuid> or flow id <uuid>")
    _connection_flags(inspect)
    inspect.set_defaults(handler=_inspect)

    tail = commands.add_parser(
        "tail", help="print an execution's stream live until the attempt ends")
    tail.add_argument("id")
    tail.add_argument("--after", help="start after this entry id (default: the beginning)")
    tail.add_argument("--attempt", type=int, help="attempt index (default: the current one)")
    tail.add_argument("--no-best-effort", dest="no_best_effort", action="store_true",
                      help="skip best-effort (live-only) frames")
    tail.add_argument("--no-follow", dest="no_follow", action="store_true",
                      help="print what is stored and exit")
    _connection_flags(tail)
    tail.set_defaults(handler=_tail)

    flow = commands.add_parser("flow", help="flow operations")
    flow_commands = flow.add_subparsers(dest="flow_command", required=True)
    cancel = flow_commands.add_parser("cancel", help="cancel a flow and dispatch member cancels")
    cancel.add_argument("flow_id")
    cancel.add_argument("--policy", default="cancel_all",
                        choices=["cancel_all", "cancel_pending", "flow_only"],
                        help="cancel_all: every member; cancel_pending: members not started; "
                        "flow_only: the flow record only (default: cancel_all)")
    cancel.add_argument("--reason", help="stored as the flow's cancel reason")
    _connection_flags(cancel)
    cancel.set_defaults(handler=_flow_cancel)

    scan = commands.add_parser("scan", help="run only the maintenance scanners")
    _connection_flags(scan)
    scan.add_argument("--disable-scanner", dest="disabled_scanners", action="append",
                      default=[], metavar="NAME", help="skip one scanner; repeatable")
    scan.add_argument("--lane", dest="lanes", action="append", default=[])
    _scanner_flags(scan)
    scan.set_defaults(handler=_scan)

    secrets = commands.add_parser(
        "secrets", help="the waitpoint HMAC keystore on every partition: init | rotate | list")
    secrets_commands = secrets.add_subparsers(dest="secrets_command", required=True)
    s_init = secrets_commands.add_parser(
        "init", help="install a signing kid on every partition (no-op when already done; "
                     "finishes an interrupted init or rotation)")
    s_init.add_argument("--kid", default="k1", help="kid of a fresh install (default: k1)")
    s_init.add_argument("--secret-file", dest="secret_file",
                        help="file holding the hex secret (default: 32 random bytes)")
    s_rotate = secrets_commands.add_parser(
        "rotate", help="install a new kid everywhere; the old one stays valid for --grace")
    s_rotate.add_argument("--grace", type=float, default=86_400.0,
                          help="seconds the previous kid keeps validating (default: 86400)")
    s_rotate.add_argument("--kid", help="new kid (default: the next unused k<n>)")
    s_rotate.add_argument("--secret-file", dest="secret_file",
                          help="file holding the hex secret (default: 32 random bytes)")
    s_list = secrets_commands.add_parser(
        "list", help="kids per partition group (exit 1 unless initialised and consistent)")
    s_list.add_argument("--show-secrets", dest="show_secrets", action="store_true",
                        help="also print the secrets (they are bearer keys: handle with care)")
    s_list.add_argument("--json", action="store_true", help="machine-readable output")
    for p in (s_init, s_rotate, s_list):
        _connection_flags(p)
        p.set_defaults(handler=_secrets)

    demo = commands.add_parser("demo", help="a self-contained end-to-end demo on memory://")
    demo.add_argument("--url", default="memory://")
    demo.set_defaults(handler=_demo)

    library = commands.add_parser("library", help="the Lua function libraries")
    library_commands = library.add_subparsers(dest="library_command", required=True)
    printer = library_commands.add_parser(
        "print", help="print the library text exactly as the backend loads it"
    )
    printer.add_argument(
        "name", nargs="?", default="flowfabric", choices=["flowfabric", "ffw"],
        help="which library (default: flowfabric)",
    )
    printer.set_defaults(handler=_library_print)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except FlowFabricError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
