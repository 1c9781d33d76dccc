"""``ffw_publish_done`` (lua/ffw/45_done.lua): the done message a completion's
pipeline ends with. It carries the stored result of a completed execution
when small, else the bare id; bad input is refused before anything is
published."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import redis.asyncio

pytestmark = pytest.mark.anyio

CORE, RESULT, CHANNEL = "ff:exec:{fp:1}:e1:core", "ff:exec:{fp:1}:e1:result", "ffw:done:e1"


async def _published(raw: redis.asyncio.Redis, *args: Any) -> tuple[Any, list[bytes]]:
    """The call's reply, and the messages CHANNEL received because of it."""
    pubsub = raw.pubsub()
    await pubsub.subscribe(CHANNEL)
    try:
        while await pubsub.get_message(timeout=1.0) is None:
            pass  # the subscribe confirmation
        try:
            reply = await raw.execute_command("FCALL", "ffw_publish_done", *args)
        except redis.exceptions.ResponseError as exc:
            reply = exc
        got: list[bytes] = []
        with anyio.move_on_after(0.3):
            while True:
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.3)
                if msg is not None:
                    got.append(msg["data"])
        return reply, got
    finally:
        await pubsub.aclose()


async def test_a_small_stored_result_rides_along(raw: redis.asyncio.Redis) -> None:
    await raw.hset(CORE, "public_state", "completed")
    await raw.set(RESULT, b"42")
    reply, got = await _published(raw, 2, CORE, RESULT, CHANNEL, 16, "p:", "e1")
    assert got == [b"p:42"]
    assert reply[:2] == [1, b"OK"]


async def test_a_large_result_or_no_completion_sends_the_bare_id(
        raw: redis.asyncio.Redis) -> None:
    await raw.hset(CORE, "public_state", "completed")
    await raw.set(RESULT, b"x" * 17)
    assert (await _published(raw, 2, CORE, RESULT, CHANNEL, 16, "p:", "e1"))[1] == [b"e1"]
    await raw.hset(CORE, "public_state", "failed")
    assert (await _published(raw, 2, CORE, RESULT, CHANNEL, 16, "p:", "e1"))[1] == [b"e1"]


@pytest.mark.parametrize("args", [
    (1, CORE, CHANNEL, 16, "p:", "e1"),                  # a key short
    (2, CORE, RESULT, CHANNEL, "-1", "p:", "e1"),        # negative cap
    (2, CORE, RESULT, CHANNEL, "lots", "p:", "e1"),      # cap not a number
    (2, CORE, RESULT, "", 16, "p:", "e1"),               # no channel
])
async def test_bad_input_is_refused_and_publishes_nothing(
        raw: redis.asyncio.Redis, args: tuple[Any, ...]) -> None:
    await raw.hset(CORE, "public_state", "completed")
    reply, got = await _published(raw, *args)
    assert got == []
    assert "invalid_input" in str(reply)
