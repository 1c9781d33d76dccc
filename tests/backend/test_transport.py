"""Retry rules for transport failures (no Redis involved: the failing operation
is a plain coroutine)."""

from __future__ import annotations

import pytest
from redis.exceptions import BusyLoadingError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from flowfabric_worker.backend.transport import RetryPolicy, classify, with_retries
from flowfabric_worker.errors import TransportError

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(attempts=4, base_delay=0.0)


class Flaky:
    def __init__(self, exc: BaseException, failures: int) -> None:
        self.exc = exc
        self.failures = failures
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc
        return "ok"


BEFORE = RedisConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")
AFTER = RedisConnectionError("Connection closed by server.")


@pytest.mark.parametrize("idempotent", [False, True])
async def test_failure_before_sending_is_always_retried(idempotent: bool) -> None:
    op = Flaky(BEFORE, 2)
    assert await with_retries(op, what="x", url="u", idempotent=idempotent, policy=FAST) == "ok"
    assert op.calls == 3


async def test_lost_reply_is_not_resent_for_non_idempotent_calls() -> None:
    op = Flaky(AFTER, 1)
    with pytest.raises(TransportError) as info:
        await with_retries(op, what="ff_x", url="redis://h:1", idempotent=False, policy=FAST)
    assert op.calls == 1 and info.value.sent is True
    assert "redis://h:1" in str(info.value) and "ff_x" in str(info.value)


async def test_lost_reply_is_resent_for_idempotent_calls() -> None:
    op = Flaky(RedisTimeoutError("Timeout reading from socket"), 1)
    assert await with_retries(op, what="x", url="u", idempotent=True, policy=FAST) == "ok"
    assert op.calls == 2


async def test_retries_are_bounded() -> None:
    op = Flaky(BEFORE, 100)
    with pytest.raises(TransportError) as info:
        await with_retries(op, what="x", url="u", idempotent=True, policy=FAST)
    assert op.calls == FAST.attempts and info.value.sent is False


async def test_transient_server_replies_are_retried_and_others_pass_through() -> None:
    for exc in (ResponseError("TRYAGAIN x"), ResponseError("CLUSTERDOWN y"),
                BusyLoadingError("LOADING z")):
        op = Flaky(exc, 1)
        assert await with_retries(op, what="x", url="u", idempotent=False, policy=FAST) == "ok"
    op = Flaky(ResponseError("ERR Function not found"), 1)
    with pytest.raises(ResponseError):
        await with_retries(op, what="x", url="u", idempotent=True, policy=FAST)
    assert op.calls == 1


def test_classify_and_backoff() -> None:
    assert classify(BEFORE) == (True, False)
    assert classify(AFTER) == (True, True)
    assert classify(ValueError()) is None
    policy = RetryPolicy(attempts=10, base_delay=0.1, max_delay=0.5)
    assert [policy.delay(i) for i in range(4)] == [0.1, 0.2, 0.4, 0.5]
