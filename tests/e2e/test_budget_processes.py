"""Budgets and quotas enforced by separate ``flowfabric-worker run`` processes
on a real redis-server: usage reports from task code, claim-time blocking by
the workers' schedulers, release by their unblock scanners."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
from process_support import stop_processes

from flowfabric_worker import Client, Limit, TaskFailed
from flowfabric_worker.protocol.keys import ExecKeys

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from budget_tasks import hold, llm_call  # noqa: E402

pytestmark = pytest.mark.anyio


@pytest.fixture
def workers(redis_url: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), *sys.path]))
    procs = [subprocess.Popen(
        [sys.executable, "-m", "flowfabric_worker.cli", "run", "budget_tasks", "--url",
         redis_url, "--lease-ttl", "2", "--grace-period", "1", "--concurrency", "4",
         "--scanner-interval-scale", "0.05", "--log-level", "WARNING"], env=env)
        for _ in range(2)]
    try:
        yield procs
    finally:
        stop_processes(procs)


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Client]:
    async with Client.connect(redis_url) as c:
        yield c


async def _field(client: Client, eid: str, name: str) -> str:
    raw = await client.backend.redis.hget(ExecKeys(eid).core, name)
    return raw.decode() if raw else ""


async def test_budget_story(client: Client, workers: list[subprocess.Popen[bytes]]) -> None:
    budget = await client.create_budget({"tokens": Limit(hard=100, soft=60),
                                         "cost_microusd": Limit()})
    first = await llm_call.submit(client, 40, budgets=[budget])
    assert await first.result(timeout=60) == "ok"
    second = await llm_call.submit(client, 40, budgets=[budget])
    assert await second.result(timeout=60) == "soft"  # 80 > soft 60
    third = await llm_call.submit(client, 40, budgets=[budget])
    with pytest.raises(TaskFailed) as failed:
        await third.result(timeout=60)  # 80 + 40 > hard 100: refused, no retry
    assert failed.value.category == "budget_hard_breach"
    assert await client.backend.attempt_indexes(third.id) == [0]
    assert await budget.usage() == {"cost_microusd": 160, "tokens": 80}
    exact = await llm_call.submit(client, 20, budgets=[budget])
    assert await exact.result(timeout=60) == "soft"  # lands exactly on the hard limit
    # At the hard limit, new claims are blocked by the workers' schedulers...
    blocked = await llm_call.submit(client, 1, budgets=[budget])
    with anyio.fail_after(60):
        while await _field(client, blocked.id, "eligibility_state") != "blocked_by_budget":  # noqa: ASYNC110
            await anyio.sleep(0.05)
    assert await blocked.state() == "rate_limited"
    # ...and released by their unblock scanners once the budget is reset.
    await budget.reset()
    assert await blocked.result(timeout=60) == "ok"
    assert (await budget.usage())["tokens"] == 1


async def test_quota_concurrency_across_processes(
        client: Client, workers: list[subprocess.Popen[bytes]]) -> None:
    quota = await client.create_quota(concurrency=1, per=60)
    runs = [await hold.submit(client, 0.3, quota=quota) for _ in range(4)]
    for run in runs:
        assert await run.result(timeout=90) == "held"
    # Never two at once, across both processes.
    spans = sorted([(int(await _field(client, r.id, "started_at")),
                     int(await _field(client, r.id, "completed_at"))) for r in runs])
    assert all(nxt[0] >= prev[1] for prev, nxt in itertools.pairwise(spans))
    info = await quota.info()
    assert info.active == 0
