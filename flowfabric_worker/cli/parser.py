"""The ``flowfabric-worker`` command line: the parser and its entry point."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import anyio

from flowfabric_worker.backend.library import FFW, FLOWFABRIC, library_text
from flowfabric_worker.cli.dashboard_commands import add_dashboard_command
from flowfabric_worker.cli.execution_commands import (
    flow_cancel_command,
    signal_command,
    submit_command,
    tail_command,
)
from flowfabric_worker.cli.inspect_commands import add_inspect_flags, inspect_command
from flowfabric_worker.cli.metrics_commands import add_metrics_command, add_observability_flags
from flowfabric_worker.cli.operator_commands import add_operator_commands
from flowfabric_worker.cli.schedule_commands import add_schedule_commands
from flowfabric_worker.cli.secrets_commands import secrets_command
from flowfabric_worker.cli.worker_commands import run_command, scan_command
from flowfabric_worker.errors import FlowFabricError


def _library_print(args: argparse.Namespace) -> int:
    spec = FFW if args.name == "ffw" else FLOWFABRIC
    sys.stdout.write(library_text(spec))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from flowfabric_worker.cli.demo import run_demo

    return int(anyio.run(run_demo, args.url or "memory://"))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flowfabric-worker")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def _connection_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", help="redis://, rediss://, redis+cluster://h:p[,h:p...], "
                   "rediss+cluster:// or memory:// (FLOWFABRIC_URL)")
    p.add_argument("--mode", choices=["standalone", "attached"],
                   help="standalone: load our Lua library; attached: join a FlowFabric "
                        "deployment whose server loaded it (FLOWFABRIC_MODE, default standalone)")
    p.add_argument("--namespace", help="namespace of executions and workers "
                                       "(FLOWFABRIC_NAMESPACE, default: default)")
    p.add_argument("--log-level", dest="log_level",
                   help="DEBUG, INFO, WARNING or ERROR (FLOWFABRIC_LOG_LEVEL, default INFO)")


def _durability_flag(p: argparse.ArgumentParser) -> None:
    # Only on the commands that submit or complete: nothing else waits.
    p.add_argument("--durability", metavar="fast|strict|replicas:N",
                   help="when submissions and completions are acknowledged: fast (applied), "
                        "strict (AOF fsynced, WAITAOF), replicas:N (WAIT) "
                        "(FLOWFABRIC_DURABILITY; docs/operations.md)")


def _scanner_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scanner-interval-scale", dest="scanner_interval_scale", type=float,
                   help="multiply every scanner interval (FLOWFABRIC_SCANNER_INTERVAL_SCALE)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowfabric-worker",
        description="Durable tasks on Redis/Valkey, FlowFabric 0.15 compatible.",
    )
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {_version()}",
                        help="print the package version and exit")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a worker for the tasks in MODULE[:ATTR]...")
    run.add_argument("modules", nargs="+", metavar="MODULE[:ATTR]",
                     help="module(s) whose @task functions to serve; :ATTR picks one task "
                          "or a list of tasks")
    _connection_flags(run)
    _durability_flag(run)
    run.add_argument("--lane", dest="lanes", action="append", default=[],
                     help="lane to claim from, repeatable (FLOWFABRIC_LANES=a,b)")
    run.add_argument("--concurrency", type=int,
                     help="tasks run at once (FLOWFABRIC_CONCURRENCY)")
    run.add_argument("--capability", dest="capabilities", action="append", default=[],
                     help="a capability this worker offers (tasks may require one); "
                          "repeatable (FLOWFABRIC_CAPABILITIES=a,b)")
    run.add_argument("--lease-ttl", dest="lease_ttl", type=float,
                     help="seconds (FLOWFABRIC_LEASE_TTL)")
    run.add_argument("--no-scanners", dest="scanners", action="store_const", const=False,
                     help="do not run the maintenance scanners (FLOWFABRIC_SCANNERS=false)")
    run.add_argument("--disable-scanner", dest="disabled_scanners", action="append",
                     default=[], metavar="NAME",
                     help="skip one maintenance scanner; repeatable "
                          "(FLOWFABRIC_DISABLED_SCANNERS=a,b)")
    _scanner_flags(run)
    add_observability_flags(run)
    run.add_argument("--worker-id", dest="worker_id",
                     help="this worker's name in leases and the worker registry "
                          "(FLOWFABRIC_WORKER_ID, default: host and pid)")
    run.add_argument("--grace-period", dest="grace_period", type=float,
                     help="seconds to drain on shutdown (FLOWFABRIC_GRACE_PERIOD)")
    run.add_argument("--no-attempt-timeouts", dest="attempt_timeouts", action="store_const",
                     const=False,
                     help="do not index attempts of tasks with timeout= for the server-side "
                          "attempt-timeout scanner (0.15 behaviour; "
                          "FLOWFABRIC_ATTEMPT_TIMEOUTS=false)")
    run.add_argument("--loop-watchdog", dest="loop_watchdog", type=float, metavar="SECONDS",
                     help="log the blocking stack when the event loop is blocked this long; "
                          "0 = off (FLOWFABRIC_LOOP_WATCHDOG, default 1)")
    run.add_argument("--max-abandoned-threads", dest="max_abandoned_threads", type=int,
                     metavar="N",
                     help="stop claiming while N sync task bodies hang past their timeout "
                          "(FLOWFABRIC_MAX_ABANDONED_THREADS, default: the concurrency)")
    run.add_argument("--fail-unknown-after", dest="fail_unknown_after", type=int,
                     metavar="N",
                     help="standalone only: fail an execution of a kind no task here has "
                          "(unknown_task) once claimed N times, instead of handing it back "
                          "(FLOWFABRIC_FAIL_UNKNOWN_AFTER; default: always hand back)")
    run.add_argument("--processes", type=int, metavar="N",
                     help="start N worker processes under a supervisor that restarts a "
                          "crashed one and drains all on SIGTERM; 1 = this process "
                          "(FLOWFABRIC_PROCESSES, default 1; docs/operations.md)")
    run.add_argument("--dashboard-port", dest="dashboard_port", type=int, metavar="PORT",
                     default=os.environ.get("FLOWFABRIC_DASHBOARD_PORT") or None,
                     help="also serve the web dashboard on http://127.0.0.1:PORT/ inside "
                          "this worker (FLOWFABRIC_DASHBOARD_PORT; needs the 'dashboard' "
                          "extra; docs/dashboard.md)")
    # Set by the supervisor on the command lines of its children (their log tag).
    run.add_argument("--child-index", dest="child_index", type=int, help=argparse.SUPPRESS)
    run.set_defaults(handler=run_command)

    submit = commands.add_parser("submit", help="submit an execution of a task by name")
    submit.add_argument("name", help="the task's name (@task(name=...), or module.function)")
    submit.add_argument("--json", default="[]",
                        help='arguments: a JSON list, or {"args": [...], "kwargs": {...}} '
                             "(default: [])")
    submit.add_argument("--module", metavar="MODULE[:ATTR]",
                        help="import the task from here and submit with its declared lane "
                             "and options (retry, timeout, priority...)")
    submit.add_argument("--lane", help="lane (default: the task's with --module, else default)")
    submit.add_argument("--idempotency-key", dest="idempotency_key",
                        help="a second submit with the same key returns the first execution")
    submit.add_argument("--wait", action="store_true",
                        help="wait for the outcome and print the result as JSON; exit 0 "
                             "completed, 1 failed/cancelled/expired/skipped, 124 timed out")
    submit.add_argument("--wait-timeout", dest="wait_timeout", type=float, metavar="SECONDS",
                        help="with --wait: give up after this long (default: wait forever)")
    _connection_flags(submit)
    _durability_flag(submit)
    submit.set_defaults(handler=submit_command)

    signal = commands.add_parser(
        "signal", help="send a signal to an execution waiting on a waitpoint")
    signal.add_argument("id", help="execution id {fp:N}:<uuid>")
    signal.add_argument("name", help="signal name the waitpoint's condition matches")
    signal.add_argument("--json", help="payload as JSON (default: none)")
    signal.add_argument("--idempotency-key", dest="idempotency_key",
                        help="the same key on the same waitpoint records the signal once")
    signal.add_argument("--waitpoint", help="waitpoint id or key when several are open")
    signal.add_argument("--source", default="cli", help="sender identity stored with it")
    _connection_flags(signal)
    signal.set_defaults(handler=signal_command)

    inspect = commands.add_parser(
        "inspect", help="show an execution's state and outcome, or a flow (bare UUID): "
        "its members, edges and state")
    inspect.add_argument("id", help="execution id {fp:N}:<uuid> or flow id <uuid>")
    add_inspect_flags(inspect)
    _connection_flags(inspect)
    inspect.set_defaults(handler=inspect_command)

    tail = commands.add_parser(
        "tail", help="print an execution's stream live until the attempt ends")
    tail.add_argument("id", help="execution id {fp:N}:<uuid>")
    tail.add_argument("--after", help="start after this entry id (default: the beginning)")
    tail.add_argument("--attempt", type=int, help="attempt index (default: the current one)")
    tail.add_argument("--no-best-effort", dest="no_best_effort", action="store_true",
                      help="skip best-effort (live-only) frames")
    tail.add_argument("--no-follow", dest="no_follow", action="store_true",
                      help="print what is stored and exit")
    _connection_flags(tail)
    tail.set_defaults(handler=tail_command)

    flow = commands.add_parser("flow", help="flow operations")
    flow_commands = flow.add_subparsers(dest="flow_command", required=True)
    cancel = flow_commands.add_parser("cancel", help="cancel a flow and dispatch member cancels")
    cancel.add_argument("flow_id", help="flow id <uuid>")
    cancel.add_argument("--policy", default="cancel_all",
                        choices=["cancel_all", "cancel_pending", "flow_only"],
                        help="cancel_all: every member; cancel_pending: members not started; "
                        "flow_only: the flow record only (default: cancel_all)")
    cancel.add_argument("--reason", help="stored as the flow's cancel reason")
    _connection_flags(cancel)
    cancel.set_defaults(handler=flow_cancel_command)

    scan = commands.add_parser("scan", help="run only the maintenance scanners")
    _connection_flags(scan)
    scan.add_argument("--only", dest="only_scanners", action="append", default=[],
                      metavar="NAME[,NAME...]",
                      help="run only these scanners (e.g. 'schedules' beside a FlowFabric "
                           "server in attached mode); repeatable; an unknown name is an "
                           "error listing the valid ones")
    scan.add_argument("--disable-scanner", dest="disabled_scanners", action="append",
                      default=[], metavar="NAME", help="skip one scanner; repeatable")
    scan.add_argument("--lane", dest="lanes", action="append", default=[],
                      help="only this lane's indexes; repeatable (default: every lane)")
    _scanner_flags(scan)
    add_observability_flags(scan)
    scan.set_defaults(handler=scan_command)

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
        p.set_defaults(handler=secrets_command)

    demo = commands.add_parser("demo", help="a self-contained end-to-end demo on memory://")
    demo.add_argument("--url", default="memory://",
                      help="where to run it (default: memory://, nothing to install)")
    demo.set_defaults(handler=_demo)

    add_operator_commands(commands, _connection_flags)

    add_schedule_commands(commands, _connection_flags)

    add_metrics_command(commands, _connection_flags)

    add_dashboard_command(commands, _connection_flags)

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
    # As typed: `run --processes N` gives it (amended) to its child processes.
    args.raw_argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.handler(args))
    except FlowFabricError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
