"""Serving the dashboard with uvicorn: on its own (``flowfabric-worker
dashboard``) or inside a worker's task group (``run --dashboard-port``)."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import Callable, Generator

import anyio
import uvicorn
from starlette.types import ASGIApp

from flowfabric_worker.errors import ConfigurationError

__all__ = ["check_exposure", "serve"]

log = logging.getLogger("flowfabric_worker.dashboard")

#: Open event streams never end by themselves: shutdown waits this long for
#: them, then closes them.
_GRACE_S = 1


class _EmbeddedServer(uvicorn.Server):
    """Leaves SIGINT/SIGTERM to the host process: uvicorn's own handling
    would replace the worker's drain, and re-raise the signal on exit."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, auth_token: str | None) -> None:
    """Refuse to serve the actions to the network without an auth token."""
    if not is_loopback(host) and not auth_token:
        raise ConfigurationError(
            f"the dashboard can cancel and signal executions: binding to {host} needs "
            "--auth-token (or FLOWFABRIC_DASHBOARD_AUTH_TOKEN); loopback needs none")


async def serve(app: ASGIApp, host: str, port: int, *, stop: anyio.Event,
                on_ready: Callable[[int], None] | None = None) -> None:
    """Serve ``app`` until ``stop`` is set; the caller owns the signals (the
    worker's drain, or the ``dashboard`` command's handler). ``on_ready``
    gets the bound port once the socket listens."""
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off",
                            timeout_graceful_shutdown=_GRACE_S, access_log=False)
    server = _EmbeddedServer(config)

    async def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            await anyio.sleep(0.05)
        bound = server.servers[0].sockets[0].getsockname()[1] if server.servers else port
        log.info("dashboard on http://%s:%d/", host, bound,
                 extra={"event": "dashboard_serving", "port": bound})
        if on_ready is not None:
            on_ready(int(bound))

    async def stopper(event: anyio.Event) -> None:
        await event.wait()
        server.should_exit = True  # serve() returns at its next tick, sockets closed

    async with anyio.create_task_group() as tg:
        tg.start_soon(announce)
        tg.start_soon(stopper, stop)
        await server.serve()
        tg.cancel_scope.cancel()
