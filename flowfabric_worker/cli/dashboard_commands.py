"""``dashboard`` (the web dashboard on its own) and ``run --dashboard-port``
(the same inside a worker process). Starlette, Jinja2 and uvicorn are
imported only here, when asked for: ``pip install "flowfabric-worker[dashboard]"``."""

from __future__ import annotations

import argparse
import os
import signal
from collections.abc import Callable
from typing import Any

import anyio

from flowfabric_worker.cli.common import server_settings, setup_logging
from flowfabric_worker.errors import ConfigurationError

__all__ = ["DEFAULT_PORT", "add_dashboard_command", "dashboard_command", "load_dashboard"]

DEFAULT_PORT = 8765
#: Read from the environment so the token need not be on the command line
#: (where ``ps`` shows it to every user of the machine).
TOKEN_ENV = "FLOWFABRIC_DASHBOARD_AUTH_TOKEN"


def load_dashboard() -> Any:
    """The dashboard package, or a clear error naming the extra to install."""
    try:
        from flowfabric_worker import dashboard
        from flowfabric_worker.dashboard import server
    except ImportError as exc:
        raise ConfigurationError(
            f"the dashboard needs the 'dashboard' extra ({exc.name} is missing): "
            'pip install "flowfabric-worker[dashboard]"') from exc
    return dashboard, server


def add_dashboard_command(
    commands: Any, connection_flags: Callable[[argparse.ArgumentParser], None]
) -> None:
    p = commands.add_parser(
        "dashboard", help="serve the web dashboard: watch, inspect, signal and cancel "
                          "from a browser (docs/dashboard.md)")
    p.add_argument("--host", default=os.environ.get("FLOWFABRIC_DASHBOARD_HOST", "127.0.0.1"),
                   help="address to bind (FLOWFABRIC_DASHBOARD_HOST, default 127.0.0.1: this "
                        "machine only; any other needs --auth-token)")
    p.add_argument("--port", type=int,
                   default=os.environ.get("FLOWFABRIC_DASHBOARD_PORT") or DEFAULT_PORT,
                   help=f"port to serve on (FLOWFABRIC_DASHBOARD_PORT, default {DEFAULT_PORT}; "
                        "0 picks a free one)")
    p.add_argument("--auth-token", dest="auth_token", default=os.environ.get(TOKEN_ENV),
                   help=f"require this token on every page and action (bearer header or the "
                        f"login form); default ${TOKEN_ENV}")
    p.add_argument("--log-format", dest="log_format", choices=["text", "json"],
                   help="(FLOWFABRIC_LOG_FORMAT, default text)")
    connection_flags(p)
    p.set_defaults(handler=dashboard_command)


def dashboard_command(args: argparse.Namespace) -> int:
    settings = server_settings(args)
    setup_logging(settings.log_level, fmt=settings.log_format)
    dashboard, server = load_dashboard()
    server.check_exposure(args.host, args.auth_token)

    async def go() -> None:
        from flowfabric_worker.client.client import Client

        stop = anyio.Event()

        async def on_signals() -> None:
            # SIGINT/SIGTERM end the server cleanly (exit 0), open streams closed.
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
                async for _ in received:
                    stop.set()
                    return

        async with Client.connect(settings.url, mode=settings.mode,
                                  namespace=settings.namespace, limits=settings.limits) as client:
            async with anyio.create_task_group() as tg:
                tg.start_soon(on_signals)
                await server.serve(dashboard.app(client, auth_token=args.auth_token),
                                   args.host, args.port, stop=stop,
                                   on_ready=lambda port: print(
                                       f"dashboard on http://{args.host}:{port}/", flush=True))
                tg.cancel_scope.cancel()

    anyio.run(go)
    return 0


async def serve_in_worker(client: Any, port: int, stop: anyio.Event) -> None:
    """``run --dashboard-port``: loopback only, until ``stop`` (the worker ended)."""
    dashboard, server = load_dashboard()
    await server.serve(dashboard.app(client, auth_token=os.environ.get(TOKEN_ENV)),
                       "127.0.0.1", port, stop=stop)
