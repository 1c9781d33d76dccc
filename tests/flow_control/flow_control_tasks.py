"""Tasks of the flow-control process test, run by ``flowfabric-worker run``
subprocesses (importable as ``flow_control_tasks`` with this directory on the
path). Each appends to the ledger file named by ``FC_LEDGER``, outside
Redis: ``<event> <key> <n> <time.monotonic_ns()>`` (one clock for every
process on the machine)."""

from __future__ import annotations

import os
import time

import anyio

from flowfabric_worker import Debounce, Limit, task

LANE = "fc-e2e"


def _note(event: str, key: str, n: int) -> None:
    # One small O_APPEND write per line: lines of several processes never mix.
    with open(os.environ["FC_LEDGER"], "a") as f:
        f.write(f"{event} {key} {n} {time.monotonic_ns()}\n")


@task(name="fc.e2e.limited", lane=LANE, concurrency=Limit(per="user", max=2))
async def limited(user: str, n: int) -> int:
    _note("start", user, n)
    await anyio.sleep(0.05)
    _note("end", user, n)
    return n


@task(name="fc.e2e.debounced", lane=LANE, debounce=Debounce(key="doc", period=3))
async def debounced(doc: str, version: int) -> int:
    _note("debounced", doc, version)
    return version
