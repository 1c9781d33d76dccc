"""Issue 12, hole 6: the client bounds what it sends (``Limits``), and every
bad input is a typed error raised before the first write. Each refusal is
checked with a census of the database's keys before and after (redis-server
and memory://); a configured larger limit admits what the default refuses.

``Limits`` and ``PayloadTooLarge`` are imported inside the tests that need
them, so the rest of this module also runs (and fails) against the code
before the bounds existed.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from worker_support import attempts, lane_worker

from flowfabric_worker import Client, TaskContext, flow, task
from flowfabric_worker.errors import InvalidInput, PayloadError, TaskFailed
from flowfabric_worker.protocol.ids import mint_execution_id
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.tasks import codec

pytestmark = pytest.mark.anyio

LANE = "bounds"
MiB = 1 << 20


@task(name="b.echo", lane=LANE)
async def echo(value: Any) -> Any:
    return value


@task(name="b.big_result", lane=LANE)
async def big_result(n: int) -> str:
    return "x" * n


@flow(name="b.spawner", lane=LANE)
async def spawner(ctx: TaskContext, n: int) -> Any:
    return await ctx.child(echo, "x" * n)


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


async def census(client: Client) -> set[bytes]:
    return set(await client.backend.redis.keys("*"))


async def refused(client: Client, call: Callable[[], Awaitable[Any]],
                  error: type[BaseException], match: str | None = None) -> BaseException:
    """``call()`` raises ``error`` (matching ``match``) and writes nothing."""
    before = await census(client)
    with pytest.raises(error, match=match) as info:
        await call()
    assert await census(client) == before
    return info.value


# --- payloads ----------------------------------------------------------------

BAD_PAYLOADS = {
    "50 MiB": ("x" * (50 * MiB), "max_payload_bytes"),
    "nested 1000 deep": (nested(1000), "nested"),
    "nested 100 deep": (nested(100), "nested"),
    "lone surrogate": ("\ud800", "surrogate"),
    "surrogate key": ({"\udfff": 1}, "surrogate"),
    "NaN": (math.nan, "nan"),
    "infinity": ([1.0, math.inf], "inf"),
}


@pytest.mark.parametrize("case", list(BAD_PAYLOADS))
async def test_bad_payload_is_payload_error_and_writes_nothing(url: str, case: str) -> None:
    value, match = BAD_PAYLOADS[case]
    async with Client.connect(url) as client:
        await refused(client, lambda: echo.submit(client, value), PayloadError, match)
        # By task name (no signature to check) the same bounds hold.
        await refused(client, lambda: client.submit("b.echo", value), PayloadError, match)
        # A flow member is refused when it is added, before the flow is written.
        builder = client.flow()
        await refused(client, lambda: _add(builder, value), PayloadError, match)
        assert builder.nodes == []


async def _add(builder: Any, value: Any) -> None:
    builder.add(echo, value)


async def test_oversize_payload_is_payload_too_large(url: str) -> None:
    from flowfabric_worker.errors import PayloadTooLarge

    async with Client.connect(url) as client:
        err = await refused(client, lambda: echo.submit(client, "x" * (2 * MiB)),
                            PayloadTooLarge, "FLOWFABRIC_MAX_PAYLOAD_BYTES")
        assert isinstance(err, PayloadTooLarge)
        assert err.limit == MiB and err.size > 2 * MiB


def test_codec_turns_deep_or_surrogate_input_into_payload_error() -> None:
    with pytest.raises(PayloadError):
        codec.dumps(nested(5000))
    with pytest.raises(PayloadError):
        codec.to_builtins(nested(5000))
    with pytest.raises(PayloadError):
        codec.dumps("\ud800")
    with pytest.raises(PayloadError):  # a payload written by hand or another SDK
        codec.loads(b"[" * 5000 + b"]" * 5000)


# --- tags, idempotency keys, delays -------------------------------------------

BAD_OPTIONS: dict[str, tuple[dict[str, Any], str]] = {
    "4000 tags": ({"tags": {f"k{i}": "v" for i in range(4000)}}, "max_tags"),
    "long tag key": ({"tags": {"k" * 200: "v"}}, "max_tag_key_bytes"),
    "long tag value": ({"tags": {"k": "v" * 2000}}, "max_tag_value_bytes"),
    "non-string tag value": ({"tags": {"k": {"nested": 1}}}, "string value"),
    "surrogate tag": ({"tags": {"k": "\ud800"}}, "surrogate"),
    "long idempotency key": ({"idempotency_key": "i" * 10_000}, "max_idempotency_key_bytes"),
    "delay NaN": ({"delay": math.nan}, "finite"),
    "delay -5": ({"delay": -5}, "finite"),
    "delay inf": ({"delay": math.inf}, "finite"),
    "delay 1e12": ({"delay": 1e12}, "max_delay"),
    "delay string": ({"delay": "10"}, "number"),
}


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
async def test_bad_option_is_invalid_input_and_writes_nothing(url: str, case: str) -> None:
    options, match = BAD_OPTIONS[case]
    async with Client.connect(url) as client:
        await refused(client, lambda: echo.submit(client, 1, **options), InvalidInput, match)
        await refused(client, lambda: client.submit("b.echo", 1, **options),
                      InvalidInput, match)


async def test_flow_member_tags_bounded(url: str) -> None:
    async with Client.connect(url) as client:
        builder = client.flow()
        tags = {f"k{i}": "v" for i in range(4000)}

        async def add() -> None:
            builder.add(echo, 1, tags=tags)

        await refused(client, add, InvalidInput, "max_tags")


async def test_delay_zero_and_near_max_accepted(url: str) -> None:
    async with Client.connect(url) as client:
        assert await (await echo.submit(client, 1, delay=0)).state() == "waiting"
        later = await echo.submit(client, 1, delay=364 * 86400)
        assert await later.state() == "delayed"


# --- signals -------------------------------------------------------------------


async def test_signal_payload_bounded_before_any_read_or_write(url: str) -> None:
    from flowfabric_worker.errors import PayloadTooLarge
    from flowfabric_worker.settings import Limits

    eid = mint_execution_id(lane_id=LANE)  # never created: refused before the lookup
    async with Client.connect(url, limits=Limits(max_signal_payload_bytes=100)) as client:
        await refused(client, lambda: client.signal(eid, "go", "x" * 200), PayloadTooLarge,
                      "max_signal_payload_bytes")
        # Still an InvalidInput, as an oversize signal payload always was.
        await refused(client, lambda: client.signal(eid, "go", "x" * 200), InvalidInput,
                      "signal payload")
        for bad in (nested(1000), "\ud800", math.nan):
            await refused(client, lambda b=bad: client.signal(eid, "go", b), PayloadError)


# --- results and children (worker side) ----------------------------------------


async def test_result_over_limit_fails_permanently_without_writing_it(url: str) -> None:
    async with Client.connect(url) as client:
        run = await big_result.submit(client, 2 * MiB)
        worker = lane_worker(client, [big_result], LANE)
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            with pytest.raises(TaskFailed) as info:
                await run.result(timeout=20)
            worker.stop()
        assert "max_result_bytes" in info.value.reason
        assert "PayloadTooLarge" in info.value.reason
        assert len(await attempts(client.backend, run.id)) == 1  # permanent: not retried
        assert not await client.backend.get_result(run.id)


async def test_child_over_limit_fails_parent_before_any_child_write(url: str) -> None:
    async with Client.connect(url) as client:
        run = await spawner.submit(client, 2 * MiB)
        worker = lane_worker(client, [spawner, echo], LANE)
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            with pytest.raises(TaskFailed) as info:
                await run.result(timeout=20)
            worker.stop()
        assert "max_payload_bytes" in info.value.reason
        cores = await client.backend.redis.keys("ff:exec:*:core")
        assert [k.decode() for k in cores] == [ExecKeys(run.id).core]
        # Not even the children's flow was created.
        assert await client.backend.redis.keys("ff:flow:*") == []


# --- configuration ---------------------------------------------------------------


async def test_configured_larger_limits_admit_what_the_default_refuses(url: str) -> None:
    from flowfabric_worker.settings import Limits

    roomy = Limits(max_payload_bytes=4 * MiB, max_result_bytes=4 * MiB, max_depth=200,
                   max_tags=100, max_idempotency_key_bytes=1000, max_delay=2 * 365 * 86400)
    async with Client.connect(url) as default:
        with pytest.raises(PayloadError):
            await echo.submit(default, "x" * (2 * MiB))
    async with Client.connect(url, limits=roomy) as client:
        big = await echo.submit(client, "x" * (2 * MiB))
        deep = await echo.submit(client, nested(100))
        tagged = await echo.submit(client, 1, tags={f"k{i}": "v" for i in range(80)},
                                   idempotency_key="i" * 500)
        later = await echo.submit(client, 1, delay=400 * 86400)
        assert await later.state() == "delayed"
        assert len(await client.backend.get_tags(tagged.id)) >= 80
        # The worker built on this client takes its limits: a 2 MiB result is fine.
        worker = lane_worker(client, [echo], LANE)
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            assert await big.result(timeout=20) == "x" * (2 * MiB)
            assert await deep.result(timeout=20) == nested(100)
            worker.stop()


async def test_smaller_configured_limit_refuses(url: str) -> None:
    from flowfabric_worker.settings import Limits

    async with Client.connect(url, limits=Limits(max_payload_bytes=64, max_tags=1)) as client:
        await refused(client, lambda: echo.submit(client, "x" * 100), PayloadError,
                      "the limit is 64")
        await refused(client, lambda: echo.submit(client, 1, tags={"a": "1", "b": "2"}),
                      InvalidInput, "max_tags")


def test_limits_from_environment() -> None:
    from flowfabric_worker.errors import ConfigurationError
    from flowfabric_worker.settings import Limits, Settings

    env = {"FLOWFABRIC_MAX_PAYLOAD_BYTES": "2097152", "FLOWFABRIC_MAX_DELAY": "60",
           "FLOWFABRIC_MAX_TAGS": "8", "FLOWFABRIC_URL": "memory://x"}
    settings = Settings.load(environ=env)
    assert settings.limits.max_payload_bytes == 2 * MiB
    assert settings.limits.max_delay == 60 and settings.limits.max_tags == 8
    assert settings.limits.max_result_bytes == MiB  # untouched: the default
    assert Limits.load(env) == settings.limits
    # An explicit override (a flag, an embedder) wins over the environment.
    assert Settings.load({"limits": Limits(max_tags=3)}, environ=env).limits.max_tags == 3
    for bad in ({"FLOWFABRIC_MAX_PAYLOAD_BYTES": "0"}, {"FLOWFABRIC_MAX_DELAY": "nan"},
                {"FLOWFABRIC_MAX_DEPTH": "lots"}):
        with pytest.raises(ConfigurationError, match="max_"):
            Settings.load(environ=bad)


def test_event_frames_refuse_what_json_cannot_hold() -> None:
    from flowfabric_worker.context.streaming import _json

    for bad in (math.nan, {"a": math.inf}, nested(1000), "\ud800"):
        with pytest.raises(PayloadError):
            _json({"event": "e", "data": bad})
