"""Client.signal / pending_waitpoints / RunHandle.wait_for against the real Lua
(redis-server and memory://)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anyio
import pytest
from waitpoint_support import complete, pending, running, suspend

from flowfabric_worker.client import signal_sender as client_signals
from flowfabric_worker.client.client import Client
from flowfabric_worker.client.keystore import init_secrets, rotate_secrets
from flowfabric_worker.errors import (
    AmbiguousWaitpoint,
    InvalidInput,
    NoWaitpoint,
    ResultTimeout,
    StateNotReached,
    UnknownWaitpoint,
    UnmatchedSignalWarning,
)
from flowfabric_worker.protocol.errors import (
    ExecutionNotFound,
    HmacSecretNotInitialized,
    InvalidToken,
    TokenExpired,
    TokenMismatch,
    WaitpointClosed,
)
from flowfabric_worker.protocol.ids import execution_tag, mint_execution_id, new_uuid
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.signals import BufferSignal, CloseWaitpoint, DeliverSignal

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(url: str) -> AsyncIterator[Client]:
    async with Client.connect(url, init_secrets=True) as c:
        yield c


async def test_signal_resumes_a_suspended_execution(client: Client) -> None:
    eid, c = await running(client)
    run = client.run(eid)
    s = await suspend(client, eid, c, ["approve"])
    assert await run.wait_for("suspended", timeout=10) == "suspended"
    (wp,) = await client.pending_waitpoints(eid)
    assert (wp.state, wp.primary, wp.waitpoint_id) == ("active", True, s.primary.waitpoint_id)
    assert wp.token.secret() == s.primary.token.secret()
    stored = await client.backend.waitpoint_token(execution_tag(eid), wp.waitpoint_id)
    assert stored == wp.token.secret() and wp.token.secret()[3:] not in f"{stored!r} {stored}"

    with pytest.warns(UnmatchedSignalWarning):  # issue 16: not a silent no_op
        other = await client.signal(eid, "unrelated", {"x": 1})
    assert (other.status, other.effect) == ("unmatched", "no_op")
    out = await run.signal("approve", {"ok": True}, source="reviewer-7")
    assert out.resumed and out.status == "resumed" and out.waitpoint_id == wp.waitpoint_id
    assert await run.wait_for("waiting", "active", timeout=10) == "waiting"
    recorded = await client.backend.get_signal(execution_tag(eid), out.signal_id)
    assert recorded is not None and recorded.source_identity == "reviewer-7"
    payload = await client.backend.get_signal_payload(execution_tag(eid), out.signal_id)
    assert payload is not None and json.loads(payload) == {"ok": True}
    # Nothing waits any more.
    with pytest.raises(NoWaitpoint) as e:
        await client.signal(eid, "approve")
    assert e.value.state == "waiting"


async def test_pending_waitpoint_buffers_then_activation_replays(client: Client) -> None:
    eid, c = await running(client)
    p = await pending(client, eid, c, key="approval")
    (wp,) = await client.pending_waitpoints(eid)
    assert (wp.state, wp.primary, wp.waitpoint_key) == ("pending", False, "approval")
    out = await client.signal(eid, "approve", [1, 2])
    assert (out.status, out.effect) == ("buffered", "buffered_for_pending_waitpoint")
    s = await suspend(client, eid, c, ["approve"], use_pending=p.waitpoint_id)
    assert s.status == "ALREADY_SATISFIED"  # the buffered signal satisfied it
    assert await client.pending_waitpoints(eid) == []


async def test_duplicate_idempotency_key_is_applied_once(client: Client) -> None:
    eid, c = await running(client)
    await suspend(client, eid, c, ["a", "b"], mode="all")
    first = await client.signal(eid, "a", {"n": 1}, idempotency_key="k-1")
    assert (first.status, first.effect) == ("accepted", "appended_to_waitpoint")
    again = await client.signal(eid, "a", {"n": 1}, idempotency_key="k-1")
    assert (again.status, again.signal_id) == ("duplicate", first.signal_id)
    assert await client.backend.redis.zcard(ExecKeys(eid).signals) == 1
    assert await client.run(eid).state() == "suspended"
    done = await client.signal(eid, "b", idempotency_key="k-2")
    assert done.resumed


async def test_duplicate_key_on_a_pending_waitpoint(client: Client) -> None:
    eid, c = await running(client)
    await pending(client, eid, c)
    first = await client.signal(eid, "go", idempotency_key="once")
    again = await client.signal(eid, "go", idempotency_key="once")
    assert first.status == "buffered" and again.status == "duplicate"
    assert again.signal_id == first.signal_id
    assert await client.backend.redis.zcard(ExecKeys(eid).signals) == 1


async def test_signal_buffered_after_activation_is_delivered(client: Client) -> None:
    # The race the client covers: it saw the waitpoint pending, the task
    # suspended, then the buffer call landed on the now active waitpoint.
    eid, c = await running(client)
    p = await pending(client, eid, c)
    await suspend(client, eid, c, ["go"], use_pending=p.waitpoint_id)
    common = dict(eid=eid, waitpoint_id=p.waitpoint_id, signal_name="go", token=p.token,
                  signal_category="callback", source_type="external_api",
                  source_identity="t", payload=b"", idempotency_key="", correlation_id="")
    late = await client.backend.call(BufferSignal(signal_id=new_uuid(), **common))
    assert late.effect == "buffered_for_pending_waitpoint"
    assert await client.run(eid).state() == "suspended"  # never evaluated
    core = await client.run(eid).info()
    out = await client_signals._redeliver_if_late(client.backend, core, late.signal_id, common)
    assert out is not None and out.resumed and await client.run(eid).state() == "waiting"


async def test_retry_after_a_lost_late_buffer_still_delivers(client: Client) -> None:
    # A first client.signal(..., idempotency_key="k") buffered onto the
    # just-activated waitpoint, then died before redelivering. The retry with
    # the same key is a duplicate for the library; the client notices the
    # first signal was never evaluated and delivers it, once.
    eid, c = await running(client)
    p = await pending(client, eid, c)
    await suspend(client, eid, c, ["go"], use_pending=p.waitpoint_id)
    first = await client.backend.call(BufferSignal(
        eid=eid, signal_id=new_uuid(), waitpoint_id=p.waitpoint_id, signal_name="go",
        token=p.token, idempotency_key="k"))
    assert await client.run(eid).state() == "suspended"
    retry = await client.signal(eid, "go", idempotency_key="k")
    assert retry.resumed and retry.signal_id != first.signal_id
    assert await client.run(eid).state() == "waiting"


async def test_no_waitpoint_unknown_execution_and_ambiguity(client: Client) -> None:
    run = await client.submit("sig.task", lane="sigclient")
    with pytest.raises(NoWaitpoint) as e:
        await client.signal(run.id, "go")
    assert e.value.state == "waiting" and e.value.execution_id == run.id
    with pytest.raises(ExecutionNotFound):
        await client.signal(mint_execution_id(lane_id="sigclient"), "go")
    with pytest.raises(InvalidInput):
        await client.signal("not-an-id", "go")

    eid, c = await running(client)
    a = await pending(client, eid, c, key="first")
    await pending(client, eid, c, key="second")
    with pytest.raises(AmbiguousWaitpoint, match="first"):
        await client.signal(eid, "go")
    out = await client.signal(eid, "go", waitpoint="second")
    assert out.status == "buffered" and out.waitpoint_id != a.waitpoint_id
    assert (await client.signal(eid, "go", waitpoint=a.waitpoint_id)).waitpoint_id == \
        a.waitpoint_id
    with pytest.raises(UnknownWaitpoint):
        await client.signal(eid, "go", waitpoint="third")

    done_eid, dc = await running(client)
    await complete(client, done_eid, dc)
    with pytest.raises(NoWaitpoint) as e:
        await client.signal(done_eid, "go")
    assert e.value.state == "completed"


async def test_presented_tokens_and_other_executions_waitpoints(client: Client) -> None:
    ea, ca = await running(client)
    eb, cb = await running(client)
    assert execution_tag(ea) == execution_tag(eb)
    await suspend(client, ea, ca, ["go"])
    sb = await suspend(client, eb, cb, ["go"])
    tok_b = sb.primary.token.secret()
    # A bridge presenting B's token for A: refused before anything is sent.
    with pytest.raises(TokenMismatch) as e:
        await client.signal(ea, "go", token=tok_b)
    assert isinstance(e.value, InvalidToken) and e.value.code == "invalid_token"
    # Naming B's waitpoint under A: not A's, so unknown (nothing revealed).
    with pytest.raises(UnknownWaitpoint):
        await client.signal(ea, "go", waitpoint=sb.primary.waitpoint_id)
    # And the library itself refuses that pairing too.
    with pytest.raises(InvalidToken):
        await client.backend.call(DeliverSignal(
            eid=ea, signal_id=new_uuid(), waitpoint_id=sb.primary.waitpoint_id,
            signal_name="go", token=sb.primary.token, lane="sigclient"))
    assert await client.run(ea).state() == "suspended"
    assert await client.run(eb).state() == "suspended"
    # The right token, presented explicitly, goes through.
    assert (await client.signal(eb, "go", token=tok_b)).resumed


async def test_rotation_grace_expiry_and_missing_keystore(client: Client) -> None:
    ea, ca = await running(client)
    await suspend(client, ea, ca, ["a", "b"], mode="all")
    # Rotated, old kid inside its grace: still accepted.
    await rotate_secrets(client.backend, grace_ms=3_600_000)
    assert (await client.signal(ea, "a")).status == "accepted"
    # k1's grace over (expiry moved to the past): its tokens have expired.
    await client.backend.redis.hset(ExecKeys(ea).hmac_keystore, "expires_at:k1", "1")
    with pytest.raises(TokenExpired):
        await client.signal(ea, "b")
    # A further rotation garbage-collects k1: now the kid is simply unknown.
    await rotate_secrets(client.backend, grace_ms=0)
    with pytest.raises(InvalidToken):
        await client.signal(ea, "b")
    # No keystore at all on the partition.
    eb, cb = await running(client)
    await suspend(client, eb, cb, ["go"])
    await client.backend.redis.delete(ExecKeys(eb).hmac_keystore)
    with pytest.raises(HmacSecretNotInitialized):
        await client.signal(eb, "go")
    # secrets init restores that partition from the others: same kid and secret,
    # so the token minted before the loss validates again.
    assert (await init_secrets(client.backend)).status == "repaired"
    assert (await client.signal(eb, "go")).resumed


async def test_closed_waitpoint_and_wait_for_outcomes(client: Client) -> None:
    eid, c = await running(client)
    run = client.run(eid)
    with pytest.raises(ResultTimeout):
        await run.wait_for("suspended", timeout=0.1)
    with pytest.raises(InvalidInput):
        await run.wait_for("sleeping")
    await complete(client, eid, c)
    assert await run.wait_for("terminal", timeout=5) == "completed"
    with pytest.raises(StateNotReached) as e:
        await run.wait_for("suspended", timeout=5)
    assert e.value.state == "completed"

    # A closed waitpoint is not signalled: nothing waits on it any more.
    eid2, c2 = await running(client)
    p = await pending(client, eid2, c2)
    await client.backend.call(CloseWaitpoint(eid=eid2, waitpoint_id=p.waitpoint_id))
    with pytest.raises(NoWaitpoint):
        await client.signal(eid2, "go")
    with pytest.raises(WaitpointClosed):  # and the library agrees
        await client.backend.call(BufferSignal(
            eid=eid2, signal_id=new_uuid(), waitpoint_id=p.waitpoint_id, signal_name="go",
            token=p.token))


async def test_wait_for_is_woken_when_the_execution_ends(client: Client) -> None:
    eid, c = await running(client)
    run = client.run(eid)
    async with anyio.create_task_group() as tg:
        got: list[str] = []

        async def waiter() -> None:
            got.append(await run.wait_for("completed", timeout=10))

        tg.start_soon(waiter)
        await anyio.sleep(0.05)
        await complete(client, eid, c)
        await client.backend.redis.publish(f"ffw:done:{eid}", "completed")
    assert got == ["completed"]


def test_reprs_never_show_tokens() -> None:
    from flowfabric_worker.protocol.records import Waitpoint
    from flowfabric_worker.protocol.tokens import Token

    digest = "0123456789abcdef0123456789abcdef01234567"
    wp = Waitpoint(waitpoint_id="w", waitpoint_token=f"k1:{digest}", state="active")
    info = client_signals.WaitpointInfo.from_record(wp, primary=True)
    for text in (repr(wp), str(wp), repr(info), str(info), repr(info.to_display()),
                 repr(wp.__rich_repr__()), repr(info.__rich_repr__())):
        assert digest not in text, text
    assert "k1:<redacted:40>" in repr(info)
    assert Token(f"k1:{digest}").matches(f"k1:{digest}")


async def test_delivery_announces_work_on_the_lane_wake_channel(client: Client) -> None:
    eid, c = await running(client)
    await suspend(client, eid, c, ["go"])
    pubsub = client.backend.redis.pubsub()
    await pubsub.subscribe("ffw:wake:sigclient")
    try:
        assert (await client.signal(eid, "go")).resumed
        with anyio.fail_after(5):
            while True:
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if msg is not None:
                    break
        assert msg["channel"] == b"ffw:wake:sigclient"
    finally:
        await pubsub.aclose()


async def test_pending_waitpoint_found_behind_a_page_of_others(client: Client) -> None:
    eid, c = await running(client)
    index = ExecKeys(eid).pending_waitpoint_expiry
    # 1200 entries of other (here: vanished) waitpoints sort before ours.
    await client.backend.redis.zadd(index, {f"other-{i}": i + 1 for i in range(1200)})
    p = await pending(client, eid, c)
    (wp,) = await client.pending_waitpoints(eid)
    assert wp.waitpoint_id == p.waitpoint_id
    assert (await client.signal(eid, "go")).status == "buffered"
