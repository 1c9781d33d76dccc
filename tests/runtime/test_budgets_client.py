"""Client side of budgets and quotas: creation, validation, handles and the
attachment of both to submitted executions (real redis and memory://)."""

from __future__ import annotations

import uuid

import pytest

from flowfabric_worker import Budget, Client, InvalidInput, Limit, Quota, task
from flowfabric_worker.protocol.budgets import ReportUsageAndCheck
from flowfabric_worker.protocol.keys import ExecKeys

pytestmark = pytest.mark.anyio


@task(name="bq.noop", lane="bq-client")
async def noop(n: int) -> int:
    return n


async def test_create_budget_and_read_it_back(url: str) -> None:
    async with Client.connect(url) as client:
        budget = await client.create_budget(
            {"tokens": Limit(hard=100, soft=80), "cost": Limit(hard=5)},
            reset_every=3600, scope=("flow", "f-1"))
        assert isinstance(budget, Budget)
        info = await budget.info()
        assert info.hard == {"cost": 5, "tokens": 100}
        assert info.soft == {"cost": 0, "tokens": 80}
        assert info.usage == {"cost": 0, "tokens": 0}
        assert (info.scope_type, info.scope_id) == ("flow", "f-1")
        assert info.reset_interval_ms == 3_600_000 and info.next_reset_at > 0
        # Usage counted by the library shows up; reset zeroes it.
        await client.backend.report_usage(ReportUsageAndCheck(
            tag=budget.tag, budget_id=budget.id, deltas={"tokens": 7}, now_ms=1))
        assert await budget.usage() == {"cost": 0, "tokens": 7}
        assert await budget.reset() > 0
        assert await budget.usage() == {"cost": 0, "tokens": 0}
        # Creating again with the same id keeps the stored limits.
        again = await client.create_budget({"tokens": Limit(hard=1)}, budget_id=budget.id)
        assert again == budget and (await again.info()).hard["tokens"] == 100


async def test_budget_input_is_validated(url: str) -> None:
    async with Client.connect(url) as client:
        with pytest.raises(InvalidInput, match="at least one"):
            await client.create_budget({})
        with pytest.raises(InvalidInput, match="at most 64"):
            await client.create_budget({f"d{i}": Limit(hard=1) for i in range(65)})
        with pytest.raises(InvalidInput, match="non-negative"):
            Limit(hard=-1)
        with pytest.raises(InvalidInput, match="never fires"):
            Limit(hard=5, soft=10)
        with pytest.raises(InvalidInput, match="Limit"):
            await client.create_budget({"tokens": 5})  # type: ignore[dict-item]
        with pytest.raises(InvalidInput, match="reserved"):
            await client.create_budget({"breached_at": Limit(hard=1)})
        with pytest.raises(InvalidInput, match="scope"):
            await client.create_budget({"t": Limit(hard=1)}, scope=("planet", "x"))
        with pytest.raises(InvalidInput, match="on_hard_limit"):
            await client.create_budget({"t": Limit(hard=1)}, on_hard_limit="explode")
        with pytest.raises(InvalidInput, match="reset_every"):
            await client.create_budget({"t": Limit(hard=1)}, reset_every=0)
        with pytest.raises(InvalidInput, match="budget id"):
            await client.create_budget({"t": Limit(hard=1)}, budget_id="nope")
        # 64 dimensions are fine, and stored sorted.
        ok = await client.create_budget({f"d{i:02}": Limit(hard=1) for i in range(64)})
        assert list((await ok.info()).hard) == sorted(f"d{i:02}" for i in range(64))


async def test_create_quota_and_validation(url: str) -> None:
    async with Client.connect(url) as client:
        quota = await client.create_quota(rate=10, per=60, concurrency=2, jitter=0.25)
        assert isinstance(quota, Quota)
        info = await quota.info()
        assert (info.rate, info.per, info.concurrency, info.jitter_ms) == (10, 60, 2, 250)
        assert (info.in_window, info.active) == (0, 0)
        with pytest.raises(InvalidInput, match="rate, a concurrency"):
            await client.create_quota(per=10)
        with pytest.raises(InvalidInput, match="whole number"):
            await client.create_quota(rate=1, per=1.5)
        with pytest.raises(InvalidInput, match="jitter"):
            await client.create_quota(rate=1, jitter=-1)
        with pytest.raises(InvalidInput, match="does not exist"):
            await client.quota(str(uuid.uuid4())).info()


async def test_submit_attaches_budgets_and_quota(url: str) -> None:
    async with Client.connect(url) as client:
        b1 = await client.create_budget({"tokens": Limit(hard=10)})
        b2 = await client.create_budget({"tokens": Limit(hard=10)})
        quota = await client.create_quota(rate=5)
        run = await noop.submit(client, 1, budgets=[b1, b2.id, b1], quota=quota)
        core = await run.info()
        assert core.budget_ids == f"{b1.id},{b2.id}"
        assert core.quota_policy_id == quota.id
        plain = await noop.submit(client, 2)
        assert (await plain.info()).budget_ids == ""
        # A duplicate submission writes nothing anywhere (no stray core under
        # the id minted for it, no change to the original).
        first = await noop.submit(client, 3, idempotency_key="bq-k", budgets=[b1])
        keys_before = set(await client.backend.redis.keys("ff:exec:*:core"))
        dup = await noop.submit(client, 3, idempotency_key="bq-k", budgets=[b2], quota=quota)
        assert dup.duplicate and dup.id == first.id
        assert set(await client.backend.redis.keys("ff:exec:*:core")) == keys_before
        core = await first.info()
        assert core.budget_ids == b1.id and not core.quota_policy_id
        with pytest.raises(InvalidInput, match="budget id"):
            await noop.submit(client, 4, budgets=["not-a-uuid"])


async def test_task_defaults_and_submit_override(url: str) -> None:
    async with Client.connect(url) as client:
        budget = await client.create_budget({"tokens": Limit(hard=10)})
        quota = await client.create_quota(concurrency=1)

        @task(name="bq.defaults", lane="bq-client", budgets=[budget], quota=quota)
        async def with_defaults() -> None:
            return None

        run = await with_defaults.submit(client)
        raw = await client.backend.redis.hmget(ExecKeys(run.id).core,
                                               ["budget_ids", "quota_policy_id"])
        assert [v.decode() for v in raw] == [budget.id, quota.id]
        bare = await with_defaults.submit(client, budgets=[])
        assert (await bare.info()).budget_ids == ""
        assert (await bare.info()).quota_policy_id == quota.id
        delayed = await client.submit(with_defaults, delay=30)
        assert (await delayed.info()).budget_ids == budget.id
