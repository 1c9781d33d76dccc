"""A mixed fleet on one lane of a FlowFabric deployment (issue 13 item 9).

Two attached workers serve one lane with different task sets: this SDK's
worker and one standing in for a FlowFabric (Rust) worker that knows kinds
the Python one does not. Each leaves the other's kinds alone (or, claimed
without its kind known first, hands it back); every execution ends done, on
its first attempt, none failed ``unknown_task``. The engine scanners run
apart, as the FlowFabric server runs them; the workers run none.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from attached_support import server_roles

from flowfabric_worker.authoring.decorators import task
from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.client.client import Client
from flowfabric_worker.errors import ConfigurationError
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.worker.worker import Worker

pytestmark = pytest.mark.anyio

LANE = "shared"


@task(name="py.resize", lane=LANE)
async def resize(n: int) -> int:
    return n * 2


@task(name="rust.transcode", lane=LANE)
async def transcode(n: int) -> int:  # only the "other fleet" worker has it
    return n * 3


def _worker(client: Client, tasks: list[Any], **kw: Any) -> Worker:
    return Worker(client, tasks, lanes=[LANE], concurrency=4, lease_ttl=2.0,
                  grace_period=1.0, scanners=False, **kw)


async def _core(b: Backend, eid: str) -> dict[str, str]:
    raw = await b.redis.hgetall(ExecKeys(eid).core)
    return {k.decode(): v.decode() for k, v in raw.items()}


async def test_unknown_kinds_go_back_to_the_fleet_that_knows_them(
    deployment_url: str, attached: Backend,
) -> None:
    async with Client.connect(deployment_url, mode="attached") as client:
        runs = [await resize.submit(client, i) for i in range(10)]
        runs += [await transcode.submit(client, i) for i in range(10)]
        python = _worker(client, [resize])
        other = _worker(client, [transcode])
        async with server_roles(deployment_url), anyio.create_task_group() as tg:
            tg.start_soon(python.run)
            tg.start_soon(other.run)
            with anyio.fail_after(60):
                results = [await r.result(timeout=60) for r in runs]
            python.stop()
            other.stop()
    assert results == [i * 2 for i in range(10)] + [i * 3 for i in range(10)]
    for r in runs:
        c = await _core(attached, r.id)
        assert c["public_state"] == "completed"
        assert c.get("retry_count", "0") in ("", "0") and c["total_attempt_count"] == "1"
    outcomes = [o for w in (python, other) for _, o in w.outcomes]
    assert not [o for o in outcomes if o.startswith("failed")]
    assert {e for e, o in python.outcomes if o == "completed"} == {
        r.id for r in runs[:10]}


@task(name="py.caps", lane=LANE, capabilities={"python"})
async def py_routed(n: int) -> int:
    return n + 100


@task(name="rust.caps", lane=LANE, capabilities={"rust"})
async def rust_routed(n: int) -> int:
    return n + 200


async def test_capability_routing_keeps_each_kind_on_its_fleet(
    deployment_url: str, attached: Backend,
) -> None:
    """The layout docs/operations.md recommends for a shared lane: each fleet
    advertises a token and each kind requires its fleet's. A worker lacking
    the token never holds the execution (blocked for route, then unblocked
    by the server's scanner): no hand-back, nothing failed."""
    async with Client.connect(deployment_url, mode="attached") as client:
        runs = [await py_routed.submit(client, i) for i in range(8)]
        runs += [await rust_routed.submit(client, i) for i in range(8)]
        python = _worker(client, [py_routed], capabilities={"python"})
        other = _worker(client, [rust_routed], capabilities={"rust"})
        async with server_roles(deployment_url), anyio.create_task_group() as tg:
            tg.start_soon(python.run)
            tg.start_soon(other.run)
            with anyio.fail_after(60):
                results = [await r.result(timeout=60) for r in runs]
            python.stop()
            other.stop()
    assert results == [i + 100 for i in range(8)] + [i + 200 for i in range(8)]
    outcomes = [o for w in (python, other) for _, o in w.outcomes]
    assert outcomes and set(outcomes) == {"completed"}


async def test_failing_unknown_kinds_is_refused_when_attached(attached: Backend) -> None:
    class _Client:
        backend = attached

    with pytest.raises(ConfigurationError, match="attached mode"):
        Worker(_Client(), [resize], fail_unknown_after=5)
