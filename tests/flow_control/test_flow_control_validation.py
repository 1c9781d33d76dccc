"""Bad flow-control input: a clear InvalidInput at declaration or submission,
and nothing written (checked in Python and again in Lua)."""

from __future__ import annotations

import pytest
from redis.exceptions import ResponseError

from flowfabric_worker import Client, Debounce, InvalidInput, Limit, Rate, task

pytestmark = pytest.mark.anyio

LANE = "fc-validation"


@task(name="fc.v.nested", lane=LANE, concurrency=Limit(per="account.id", max=1))
async def nested(account: dict[str, object]) -> None:
    return None


@task(name="fc.v.debounced", lane=LANE, debounce=Debounce(key="doc", period=2))
async def debounced(doc: str) -> None:
    return None


@task(name="fc.v.keyfn", lane=LANE, rate=Rate(per=lambda x: 1 / x, limit=1))
async def keyfn(x: int) -> None:
    return None


@pytest.mark.parametrize("make", [
    lambda: Limit(per="u", max=0),
    lambda: Limit(per="u", max=True),
    lambda: Limit(per="u", max=2, hard=3),
    lambda: Limit(max=2),
    lambda: Limit(per="", max=2),
    lambda: Limit(per="a..b", max=2),
    lambda: Limit(per="u", max=2, strategy="drop"),  # type: ignore[arg-type]
    lambda: Limit(per="u", max=2, slot_ttl=0),
    lambda: Rate(per="t", limit=0),
    lambda: Rate(per="t", limit=1, period=1.5),  # type: ignore[arg-type]
    lambda: Debounce(key="k", period=1),
    lambda: Debounce(key="k", period=float("nan")),
    lambda: Debounce(key=3, period=5),  # type: ignore[arg-type]
])
def test_bad_declarations(make: object) -> None:
    with pytest.raises(InvalidInput):
        make()  # type: ignore[operator]


def test_bad_task_options() -> None:
    with pytest.raises(InvalidInput, match="names no parameter"):
        @task(concurrency=Limit(per="nope", max=1))
        async def a(user: str) -> None: ...
    with pytest.raises(InvalidInput, match="same per"):
        @task(concurrency=Limit(per="u", max=1), rate=Rate(per="t", limit=1))
        async def b(u: str, t: str) -> None: ...
    with pytest.raises(InvalidInput, match="concurrency= takes"):
        task(concurrency=Limit(hard=1))
    # A budget Limit and a concurrency Limit do not mix.
    with pytest.raises(InvalidInput, match="not a budget"):
        Limit(per="u", max=1).pair()


async def test_bad_submissions_write_nothing(client: Client) -> None:
    bad = [
        nested.submit(client, {"name": "x"}),              # path not found
        nested.submit(client, {"id": [1, 2]}),             # key not a str/int
        nested.submit(client, {"id": "x" * 600}),          # key too long
        nested.submit(client, {"id": "x"}, quota=await _no_quota(client)),
        debounced.submit(client, "d", idempotency_key="mine"),
        debounced.submit(client, "d", delay=30),
        keyfn.submit(client, 0),                           # key function raises
        client.submit_many(nested, [({"id": "a"},), ({"name": "b"},)]),  # second item bad
    ]
    for call in bad:
        with pytest.raises(InvalidInput):
            await call
    assert await client.backend.redis.dbsize() == 0
    with pytest.raises(InvalidInput, match="flow member or child"):
        client.flow().add(nested, {"id": "a"})


async def _no_quota(client: Client) -> str:
    return "00000000-0000-4000-8000-000000000001"


async def test_lua_refuses_before_writing(client: Client) -> None:
    await client.backend.ensure_libraries()
    r = client.backend.redis
    qid = "00000000-0000-4000-8000-000000000002"
    keys = [f"ff:quota:{{q:1}}:{qid}", f"ff:quota:{{q:1}}:{qid}:concurrency",
            "ff:idx:{q:1}:quota_policies"]
    for argv in ([qid, "60", "0", "2", "1", "drop", ""],      # unknown strategy
                 [qid, "0", "0", "2", "1", "queue", ""],      # window 0
                 [qid, "60", "0", "0", "1", "queue", ""],     # neither rate nor cap
                 [qid, "60", "-1", "2", "1", "queue", ""],    # negative
                 ["nope", "60", "0", "2", "1", "queue", ""]):  # not a UUID
        with pytest.raises(ResponseError, match="invalid_input"):
            await _fcall(r, "ffw_flow_quota", keys, argv)
    with pytest.raises(ResponseError, match="invalid_input"):
        await _fcall(r, "ffw_debounce", ["ff:idem:{fp:1}:ns:k"], [""])
    assert await r.dbsize() == 0


async def _fcall(r: object, name: str, keys: list[str], argv: list[str]) -> object:
    reply = await r.execute_command("FCALL", name, len(keys), *keys, *argv)  # type: ignore[attr-defined]
    if isinstance(reply, list) and reply and reply[0] == 0:
        raise ResponseError(reply[1].decode() if isinstance(reply[1], bytes) else str(reply[1]))
    return reply


async def test_flow_quota_writes_the_contract_fields_and_takes_new_limits(
        client: Client) -> None:
    from flowfabric_worker.protocol.flow_control import FlowQuota
    from flowfabric_worker.protocol.partitions import quota_tag

    qid = "00000000-0000-4000-8000-000000000003"
    tag = quota_tag(qid, client.backend.partitions)

    def call(cap: int) -> FlowQuota:
        return FlowQuota(tag=tag, quota_id=qid, window_seconds=600, rate=0, cap=cap,
                         now_ms=5, strategy="queue", label="t per k=1")

    assert await client.backend.call(call(2)) == "created"
    assert await client.backend.call(call(2)) == "unchanged"
    limits = (await client.backend.read_quota_limits([qid]))[qid]
    assert limits is not None and (limits.concurrency_cap, limits.window_seconds) == (2, 600)
    assert (limits.strategy, limits.label) == ("queue", "t per k=1")
    stored = await client.backend.redis.hgetall(f"ff:quota:{tag}:{qid}")
    assert {k.decode() for k in stored} == {
        "quota_policy_id", "requests_per_window_seconds", "max_requests_per_window",
        "active_concurrency_cap", "created_at", "ffw_strategy", "ffw_label"}
    assert await client.backend.call(call(3)) == "updated"  # a changed declaration applies
    limits = (await client.backend.read_quota_limits([qid]))[qid]
    assert limits is not None and limits.concurrency_cap == 3
    assert await client.backend.redis.sismember(f"ff:idx:{tag}:quota_policies", qid)
