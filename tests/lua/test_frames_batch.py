"""ffw_append_frames against N consecutive ff_append_frame calls, on both backends.

Two executions get the same frames: one through single ``ff_append_frame``
calls, one through ``ffw_append_frames`` batches. Everything a consumer can
read must match, apart from the server clock (entry ids, ``ts`` of frames sent
without one, timestamps in stream_meta and the summary hash) and one deliberate
difference: in a stream holding durable frames, summary and best-effort
appends trim to the durable retention instead of ~64 / ~K (issue 12), so a
batch never loses durable frames that the single calls would.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import pytest

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.errors import ContractError, InvalidInput
from flowfabric_worker.protocol.ids import mint_execution_id
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.stream_batch import AppendFrames, OutFrame
from flowfabric_worker.protocol.streams import AppendFrame, ReadSummary, StreamMode

pytestmark = pytest.mark.anyio

LEASE = "11111111-1111-4111-8111-111111111111"
CLOCK_META = {"created_at", "last_frame_at", "last_sequence", "stream_id", "execution_id",
              "last_append_ts_ms", "ema_rate_hz", "maxlen_applied_last"}


async def active(raw: Any, *, epoch: int = 1) -> str:
    eid = mint_execution_id(lane_id="default")
    await raw.hset(ExecKeys(eid).core, mapping={
        "lifecycle_phase": "active", "ownership_state": "leased",
        "current_attempt_index": "0", "current_lease_id": LEASE,
        "current_lease_epoch": str(epoch),
        "lease_expires_at": str(int(time.time() * 1000) + 60_000),
    })
    return eid


@pytest.fixture
async def backend(url: str, raw: Any) -> Any:
    b = await Backend.open(url)
    try:
        yield b
    finally:
        await b.close()


def batch(eid: str, frames: list[OutFrame], **kw: Any) -> AppendFrames:
    base: dict[str, Any] = dict(eid=eid, attempt_index=0, lease_id=LEASE, lease_epoch=1,
                                frames=tuple(frames))
    base.update(kw)
    return AppendFrames(**base)


def single(eid: str, f: OutFrame, **kw: Any) -> AppendFrame:
    mode = StreamMode(f.mode) if f.mode in {m.value for m in StreamMode} else StreamMode.DURABLE
    fc = AppendFrame(eid=eid, attempt_index=0, lease_id=LEASE, lease_epoch=1,
                     frame_type=f.frame_type, payload=f.payload, mode=mode,
                     correlation_id=f.correlation_id, ts=int(f.ts) if f.ts else None, **kw)
    return fc


async def send_single(raw: Any, fc: AppendFrame, mode: str) -> None:
    # The raw ARGV so unknown mode strings ("", "custom") reach the server as given.
    argv = list(fc.argv())
    argv[13] = mode
    reply = await raw.execute_command("FCALL", "ff_append_frame", 4, *fc.keys(), *argv)
    assert reply[0] == 1, reply


async def entries(raw: Any, eid: str) -> list[tuple[bytes, list[bytes]]]:
    k = ExecKeys(eid)
    reply = await raw.execute_command("FCALL", "ff_read_attempt_stream", 2, k.stream(0),
                                      k.stream_meta(0), "-", "+", "10000", "")
    return [(e[0], list(e[1])) for e in reply[2]]


def without_clock(flat: list[bytes], sent_ts: bool) -> list[bytes]:
    out = list(flat)
    if not sent_ts:
        out[out.index(b"ts") + 1] = b"<now>"
    return out


async def meta_of(raw: Any, eid: str) -> dict[str, str]:
    m = await raw.hgetall(ExecKeys(eid).stream_meta(0))
    return {k.decode(): v.decode() for k, v in m.items()}


async def assert_same_state(raw: Any, backend: Backend, a: str, b: str,
                            frames: list[OutFrame]) -> None:
    ea, eb = await entries(raw, a), await entries(raw, b)
    assert len(ea) == len(eb)
    by_payload = {f.payload: bool(f.ts) for f in frames}
    for (_, fa), (_, fb) in zip(ea, eb, strict=True):
        sent_ts = by_payload.get(fa[fa.index(b"payload") + 1], False)
        assert without_clock(fa, sent_ts) == without_clock(fb, sent_ts)
    ma, mb = await meta_of(raw, a), await meta_of(raw, b)
    # Our one extra field: the batch records that a durable-mode frame was
    # appended (it switches off the trims that would cut it, see below).
    holds_durable = any(f.mode not in ("summary", "best_effort") for f in frames)
    assert mb.pop("ffw_durable_frame", None) == ("1" if holds_durable else None)
    assert {k: v for k, v in ma.items() if k not in CLOCK_META} == \
        {k: v for k, v in mb.items() if k not in CLOCK_META}
    assert mb["last_sequence"] == eb[-1][0].decode()
    sa = await backend.read_summary(ReadSummary(eid=a, attempt_index=0))
    sb = await backend.read_summary(ReadSummary(eid=b, attempt_index=0))
    assert (sa.document, sa.version, sa.patch_kind) == (sb.document, sb.version, sb.patch_kind)
    ka, kb = ExecKeys(a).stream(0), ExecKeys(b).stream(0)
    assert (await raw.pttl(ka) == -1) == (await raw.pttl(kb) == -1)


MIXED = [
    OutFrame("stdout", b"hello", correlation_id="c1"),
    OutFrame("blob", b"\x00\xffbin", ts="1700000000000"),
    OutFrame("progress", b'{"a":1,"n":{"x":1,"y":{"z":1}},"drop":1}', mode="summary"),
    OutFrame("event", b'{"event":"e"}', mode="custom"),
    OutFrame("stdout", b"empty-mode", mode=""),
    OutFrame("progress", json.dumps({"n": {"y": {"w": 2}, "x": None}, "drop": None,
                                     "explicit": "__ff_null__",
                                     "list": ["__ff_null__", 1]}).encode(), mode="summary"),
    OutFrame("stderr", b"oops"),
]


@pytest.mark.parametrize("split", [[7], [3, 4], [1, 1, 1, 1, 1, 1, 1]])
async def test_batches_equal_single_calls(backend: Backend, raw: Any, split: list[int]) -> None:
    a, b = await active(raw), await active(raw)
    for f in MIXED:
        await send_single(raw, single(a, f, retention_maxlen=5), f.mode)
    results = []
    start = 0
    for size in split:
        results.append(await backend.append_frames(
            batch(b, MIXED[start:start + size], retention_maxlen=5)))
        start += size
    assert sum(r.appended for r in results) == 7 and results[-1].frame_count == 7
    # Durable retention 5 is exact: the two oldest entries are gone on both.
    assert len(await entries(raw, b)) == 5
    await assert_same_state(raw, backend, a, b, MIXED)
    s = await backend.read_summary(ReadSummary(eid=b, attempt_index=0))
    assert s.version == 2 and s.document == {"a": 1, "n": {"y": {"z": 1, "w": 2}},
                                             "explicit": None, "list": [None, 1]}
    ids = [e[0] for e in await entries(raw, b)]
    assert ids == sorted(ids, key=lambda i: tuple(int(x) for x in i.split(b"-")))
    assert results[-1].last_id == ids[-1].decode()
    versions = [e[1][e[1].index(b"summary_version") + 1] for e in await entries(raw, b)
                if b"summary_version" in e[1]]
    assert versions == [b"1", b"2"]
    assert results[-1].summary_version == (2 if split[-1] >= 2 else None)


async def test_summary_only_batch_keeps_approximate_trim(backend: Backend, raw: Any) -> None:
    a, b = await active(raw), await active(raw)
    frames = [OutFrame("p", json.dumps({"i": i, f"k{i % 3}": None}).encode(), mode="summary")
              for i in range(250)]
    for f in frames:
        await send_single(raw, single(a, f), f.mode)
    await backend.append_frames(batch(b, frames[:120]))
    await backend.append_frames(batch(b, frames[120:]))
    # `MAXLEN ~ 64` drops whole stream nodes, whose size in bytes depends on
    # the entry ids (the clock), so only the kept suffix is compared.
    ea, eb = await entries(raw, a), await entries(raw, b)
    assert 64 <= len(eb) < 250 and 64 <= len(ea) < 250
    kept = [e[1][e[1].index(b"payload") + 1] for e in eb]
    assert kept == [f.payload for f in frames[-len(eb):]]
    assert [e[1][-1] for e in eb] == [str(i + 1).encode() for i in range(250 - len(eb), 250)]
    ma, mb = await meta_of(raw, a), await meta_of(raw, b)
    assert {k: v for k, v in ma.items() if k not in CLOCK_META} == \
        {k: v for k, v in mb.items() if k not in CLOCK_META}
    sa = await backend.read_summary(ReadSummary(eid=a, attempt_index=0))
    sb = await backend.read_summary(ReadSummary(eid=b, attempt_index=0))
    assert sb.version == 250 and (sa.document, sa.version) == (sb.document, sb.version)
    assert sb.document == {"i": 249}


def payloads(es: list[tuple[bytes, list[bytes]]], *modes: bytes) -> list[bytes]:
    """Payloads of the entries whose mode is one of ``modes``."""
    return [f[f.index(b"payload") + 1] for _, f in es if f[f.index(b"mode") + 1] in modes]


async def test_summary_and_best_effort_appends_keep_every_durable_frame(
        backend: Backend, raw: Any) -> None:
    # Issue 12, hole 1: 0.15 trims the whole stream to ~64 entries on every
    # summary append (and to ~K on a best-effort one), deleting the tokens a
    # task streamed before. Our append never cuts a durable frame below the
    # stream's retention.
    tokens = [OutFrame("stdout", f"tok-{i} ".encode()) for i in range(300)]
    want = [f.payload for f in tokens]
    summary = OutFrame("summary", b'{"tokens":300}', mode="summary")
    # The tightest best-effort cap there is: floor = ceiling = 1.
    tight = dict(ttl_ms=1000, maxlen_floor=1, maxlen_ceiling=1)
    live = OutFrame("tick", b"1", mode="best_effort")

    eid = await active(raw)
    await backend.append_frames(batch(eid, tokens))
    await backend.append_frames(batch(eid, [summary]))
    assert payloads(await entries(raw, eid), b"durable") == want
    await backend.append_frames(batch(eid, [live], **tight))
    es = await entries(raw, eid)
    assert payloads(es, b"durable") == want and len(es) == 302
    assert await raw.pttl(ExecKeys(eid).stream(0)) == -1
    # Many summary and best-effort appends after the tokens, one per call.
    for i in range(150):
        await backend.append_frames(batch(eid, [OutFrame("p", b'{"i":%d}' % i,
                                                         mode="summary")]))
        await backend.append_frames(batch(eid, [live], **tight))
    es = await entries(raw, eid)
    assert payloads(es, b"durable") == want and len(es) == 602

    # All in one batch: tokens, summaries, best-effort, more tokens.
    more = [OutFrame("stdout", f"more-{i}".encode()) for i in range(10)]
    one = await active(raw)
    await backend.append_frames(batch(one, tokens + [summary] * 3 + [live] + more, **tight))
    assert payloads(await entries(raw, one), b"durable") == want + [f.payload for f in more]

    # The contract function keeps 0.15's trim: the same frames one by one
    # through ff_append_frame lose the start of the text.
    single_eid = await active(raw)
    for f in [*tokens, summary]:
        await send_single(raw, single(single_eid, f), f.mode)
    kept = payloads(await entries(raw, single_eid), b"durable")
    assert len(kept) < 300 and kept == want[-len(kept):]


async def test_mixed_stream_stays_within_the_retention_cap(backend: Backend, raw: Any) -> None:
    # In a stream holding durable frames, summary and best-effort appends trim
    # to the durable retention (never below): the stream stays bounded, and
    # only the cap the durable frames themselves are under removes them.
    eid = await active(raw)
    tokens = [OutFrame("stdout", f"t{i}".encode()) for i in range(10)]
    await backend.append_frames(batch(eid, tokens, retention_maxlen=50))
    for i in range(30):
        await backend.append_frames(batch(eid, [OutFrame("p", b'{"i":%d}' % i,
                                                         mode="summary")],
                                          retention_maxlen=50))
    es = await entries(raw, eid)
    assert len(es) == 40 and payloads(es, b"durable") == [f.payload for f in tokens]
    for _ in range(30):
        await backend.append_frames(batch(eid, [OutFrame("tick", b"1", mode="best_effort")],
                                          retention_maxlen=50, ttl_ms=1000))
    # 70 entries over a cap of 50: the 20 oldest go, as 20 more durable
    # appends would have removed them; here they are the tokens.
    es = await entries(raw, eid)
    assert len(es) == 50 and payloads(es, b"durable") == []
    # A summary-only stream keeps 0.15's ~64 (no durable frame to protect):
    # see test_summary_only_batch_keeps_approximate_trim.


def expected_rates(prev: tuple[float, int] | None, now: int, n: int, *, floor: float,
                   ceiling: float, alpha: float, ttl_ms: int) -> tuple[str, int]:
    """§8.2 for n best-effort appends at the same server ms, the estimator
    stored as Lua renders numbers (14 significant digits) between appends."""
    ttl_s = max(ttl_ms, 1) / 1000
    ema, last = prev if prev else (None, None)
    k = 0
    for _ in range(n):
        if ema is None or last is None:
            rate = floor / (ttl_s * 2)
        else:
            rate = alpha * (1000 / max(now - last, 1)) + (1 - alpha) * ema
        k = int(min(max(math.ceil(rate * ttl_s * 2), floor), ceiling))
        ema, last = float(f"{rate:.14g}"), now
    assert ema is not None
    return f"{ema:.14g}", k


async def test_best_effort_estimator_and_ttl(backend: Backend, raw: Any) -> None:
    eid = await active(raw)
    key = ExecKeys(eid).stream(0)
    params = dict(ttl_ms=1000, maxlen_floor=10, maxlen_ceiling=50, ema_alpha=0.5)
    live = [OutFrame("tick", str(i).encode(), mode="best_effort") for i in range(150)]
    await backend.append_frames(batch(eid, live[:3], **params))
    m = await meta_of(raw, eid)
    rate, k = expected_rates(None, int(m["last_frame_at"]), 3, floor=10, ceiling=50,
                             alpha=0.5, ttl_ms=1000)
    assert (m["ema_rate_hz"], int(m["maxlen_applied_last"])) == (rate, k)
    assert m["last_append_ts_ms"] == m["last_frame_at"] and m["has_durable_frame"] == "0"
    assert 0 < await raw.pttl(key) <= 2000
    e = await entries(raw, eid)
    assert e[0][1][-2:] == [b"ttl_ms", b"1000"]
    prev = (float(m["ema_rate_hz"]), int(m["last_append_ts_ms"]))
    await backend.append_frames(batch(eid, live[3:], **params))
    m = await meta_of(raw, eid)
    rate, k = expected_rates(prev, int(m["last_frame_at"]), 147, floor=10, ceiling=50,
                             alpha=0.5, ttl_ms=1000)
    assert (m["ema_rate_hz"], int(m["maxlen_applied_last"])) == (rate, k) and k == 50
    # `~ 50` after each append keeps at least 50 and drops whole nodes.
    kept = [e[1][e[1].index(b"payload") + 1] for e in await entries(raw, eid)]
    assert 50 <= len(kept) < 150 and kept == [f.payload for f in live[-len(kept):]]
    assert int(m["frame_count"]) == 150 and int(m["total_bytes"]) == sum(
        len(f.payload) for f in live)
    # A durable frame in a batch pins the stream, even after best-effort ones.
    await backend.append_frames(batch(eid, [live[0], OutFrame("stdout", b"keep"), live[1]],
                                      **params))
    assert await raw.pttl(key) == -1
    assert (await meta_of(raw, eid))["has_durable_frame"] == "1"


async def test_fencing_refuses_the_whole_batch(backend: Backend, raw: Any) -> None:
    eid = await active(raw, epoch=2)
    k = ExecKeys(eid)
    frames = [OutFrame("stdout", b"x")] * 3
    for bad in (dict(lease_epoch=1), dict(lease_id="22222222-2222-4222-8222-222222222222"),
                dict(attempt_index=1)):
        with pytest.raises(ContractError) as ei:
            await backend.append_frames(batch(eid, frames, **{"lease_epoch": 2, **bad}))
        assert ei.value.code == "stale_owner_cannot_append"
    await raw.hset(k.core, "lease_expires_at", "1")
    with pytest.raises(ContractError) as ei:
        await backend.append_frames(batch(eid, frames, lease_epoch=2))
    assert ei.value.code == "stale_owner_cannot_append"
    assert await raw.exists(k.stream(0), k.stream_meta(0)) == 0
    await raw.hset(k.core, mapping={"lease_expires_at": "99999999999999",
                                    "ownership_state": "lease_revoked"})
    with pytest.raises(ContractError) as ei:
        await backend.append_frames(batch(eid, frames, lease_epoch=2))
    assert ei.value.code == "stale_owner_cannot_append"
    await raw.hset(k.core, mapping={"ownership_state": "leased"})
    r = await backend.append_frames(batch(eid, frames, lease_epoch=2))
    assert r.appended == 3
    await raw.hset(k.stream_meta(0), mapping={"closed_at": "5", "closed_reason": "reclaimed"})
    with pytest.raises(ContractError) as ei:
        await backend.append_frames(batch(eid, frames, lease_epoch=2))
    assert ei.value.code == "stream_closed"
    await raw.hset(k.core, "lifecycle_phase", "terminal")
    with pytest.raises(ContractError) as ei:
        await backend.append_frames(batch(eid, frames, lease_epoch=2))
    assert ei.value.code == "stream_closed"
    assert len(await entries(raw, eid)) == 3


async def test_oversize_or_bad_patch_appends_nothing(backend: Backend, raw: Any) -> None:
    eid = await active(raw)
    k = ExecKeys(eid)
    ok = OutFrame("stdout", b"x" * 10)
    with pytest.raises(InvalidInput):
        batch(eid, [ok, OutFrame("stdout", b"x" * 11)], max_payload_bytes=10)
    with pytest.raises(InvalidInput):
        batch(eid, [ok, OutFrame("p", b"[1]", mode="summary")])
    # The server checks too (a caller that skipped the client-side checks).
    fc = batch(eid, [ok, OutFrame("stdout", b"x" * 11), ok], max_payload_bytes=10,
               prevalidated=True)
    with pytest.raises(ContractError) as ei:
        await backend.append_frames(fc)
    assert ei.value.code == "retention_limit_exceeded" and ei.value.details == ("1",)
    assert await raw.exists(k.stream(0), k.stream_meta(0)) == 0
    await backend.append_frames(batch(eid, [OutFrame("p", b'{"a":1}', mode="summary")]))
    for payload, detail in ((b"not json", "patch payload is not valid JSON"),
                            (b"null", "patch must be a JSON object"),
                            (json.dumps({"d" * i: 1 for i in range(1, 3)}).encode(), None)):
        fc = batch(eid, [ok, OutFrame("p", payload, mode="summary")], prevalidated=True)
        if detail is None:
            assert (await backend.append_frames(fc)).summary_version == 2
            continue
        with pytest.raises(ContractError) as ei:
            await backend.append_frames(fc)
        assert ei.value.code == "invalid_input" and ei.value.details == (detail, "1")
    assert len(await entries(raw, eid)) == 3
    s = await backend.read_summary(ReadSummary(eid=eid, attempt_index=0))
    assert s.version == 2 and s.document == {"a": 1, "d": 1, "dd": 1}
    # Malformed batches: wrong argument count, lengths not matching the
    # fields, no frames.
    argv = list(batch(eid, [ok]).argv())
    for lengths in ("6 0 10 7 1", "6 0 10 6 0", "6 0 10 7", "6 0 x 7 0"):
        reply = await raw.execute_command("FCALL", "ffw_append_frames", 4,
                                          *batch(eid, [ok]).keys(), *argv[:14], lengths,
                                          argv[15])
        assert reply[:2] == [0, b"invalid_input"], lengths
    assert argv[14:] == ["6 0 10 7 0", b"stdout" + b"x" * 10 + b"durable"]
    reply = await raw.execute_command("FCALL", "ffw_append_frames", 4,
                                      *batch(eid, [ok]).keys(), *argv[:-1])
    assert reply[:2] == [0, b"invalid_input"]
    argv[13] = "0"
    reply = await raw.execute_command("FCALL", "ffw_append_frames", 4,
                                      *batch(eid, [ok]).keys(), *argv[:14])
    assert reply[:2] == [0, b"invalid_input"]
    with pytest.raises(InvalidInput):
        batch(eid, [])
