"""The dashboard application: :func:`app` builds it around a connected
:class:`~flowfabric_worker.client.client.Client`.

Mount it in your own ASGI app, or serve it with uvicorn (what
``flowfabric-worker dashboard`` and ``run --dashboard-port`` do)::

    from starlette.applications import Starlette
    from starlette.routing import Mount
    from flowfabric_worker import dashboard

    client = await Client.connect("redis://localhost:6379")
    web = Starlette(routes=[Mount("/ffw", app=dashboard.app(client, auth_token="s3cret"))])

The client stays the caller's: the app never closes it.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from flowfabric_worker.client.client import Client
from flowfabric_worker.dashboard.actions import Actions
from flowfabric_worker.dashboard.pages import Pages
from flowfabric_worker.dashboard.render import Renderer
from flowfabric_worker.dashboard.schedules import Schedules
from flowfabric_worker.dashboard.security import AuthMiddleware, Keys, SecurityHeadersMiddleware

__all__ = ["app"]


def app(client: Client, *, auth_token: str | None = None) -> Starlette:
    """The dashboard as a Starlette application reading and acting through
    ``client``. With ``auth_token`` every page, stream and action needs it
    (``Authorization: Bearer …`` or the login form's cookie); without, bind
    the server to loopback (the CLI's default) or put your own auth in front.
    """
    keys = Keys.make(auth_token)
    renderer = Renderer(keys)
    pages = Pages(client, renderer)
    actions = Actions(client, keys, renderer)
    schedules = Schedules(client, keys, renderer)
    routes = [
        Route("/", pages.overview, name="overview"),
        Route("/events/overview", pages.overview_events),
        Route("/executions", pages.executions, name="executions"),
        Route("/executions/{eid}", pages.execution, name="execution"),
        Route("/executions/{eid}/events", pages.execution_events),
        Route("/executions/{eid}/signal", actions.signal, methods=["POST"]),
        Route("/executions/{eid}/cancel", actions.cancel, methods=["POST"]),
        Route("/executions/{eid}/replay", actions.replay, methods=["POST"]),
        Route("/flows/{flow_id}", pages.flow, name="flow"),
        Route("/flows/{flow_id}/graph.svg", pages.flow_graph),
        Route("/flows/{flow_id}/events", pages.flow_events),
        Route("/budgets", pages.budgets, name="budgets"),
        Route("/schedules", schedules.page, name="schedules"),
        Route("/schedules/{sid}/pause", schedules.pause, methods=["POST"]),
        Route("/schedules/{sid}/resume", schedules.resume, methods=["POST"]),
        Route("/schedules/{sid}/trigger", schedules.trigger, methods=["POST"]),
        Route("/login", actions.login_form, methods=["GET"]),
        Route("/login", actions.login, methods=["POST"]),
        Route("/logout", actions.logout, methods=["POST"]),
        Mount("/static", StaticFiles(packages=[("flowfabric_worker.dashboard", "static")]),
              name="static"),
    ]
    return Starlette(routes=routes, middleware=[
        Middleware(SecurityHeadersMiddleware), Middleware(AuthMiddleware, keys=keys)])
