"""A web dashboard: watch, inspect, signal and cancel from a browser
(docs/dashboard.md). Needs the ``dashboard`` extra (Starlette, Jinja2,
uvicorn): ``pip install "flowfabric-worker[dashboard]"``."""

from flowfabric_worker.dashboard.app import app

__all__ = ["app"]
