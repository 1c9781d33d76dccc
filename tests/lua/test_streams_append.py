"""ff_append_frame / ff_read_attempt_stream / ff_read_summary on both backends."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import pytest

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.errors import ContractError
from flowfabric_worker.protocol.ids import mint_execution_id
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.streams import (
    AppendFrame,
    ReadAttemptStream,
    ReadSummary,
    StreamMode,
)

pytestmark = pytest.mark.anyio

LEASE = "11111111-1111-4111-8111-111111111111"


async def active(raw: Any, *, epoch: int = 1) -> str:
    # Until lifecycle structs land, the fence fields are written directly.
    eid = mint_execution_id(lane_id="default")
    await raw.hset(ExecKeys(eid).core, mapping={
        "lifecycle_phase": "active", "ownership_state": "leased",
        "current_attempt_index": "0", "current_lease_id": LEASE,
        "current_lease_epoch": str(epoch),
        "lease_expires_at": str(int(time.time() * 1000) + 60_000),
    })
    return eid


def frame(eid: str, payload: str | bytes, **kw: Any) -> AppendFrame:
    base: dict[str, Any] = dict(eid=eid, attempt_index=0, lease_id=LEASE, lease_epoch=1,
                                frame_type="stdout", payload=payload)
    base.update(kw)
    return AppendFrame(**base)


@pytest.fixture
async def backend(url: str, raw: Any) -> Any:
    b = await Backend.open(url)
    try:
        yield b
    finally:
        await b.close()


async def test_durable_append_and_read(backend: Backend, raw: Any) -> None:
    eid = await active(raw)
    r1 = await backend.append_frame(frame(eid, "hello", correlation_id="c1"))
    r2 = await backend.append_frame(frame(eid, b"\x00\xffbin", frame_type="blob"))
    assert (r1.frame_count, r2.frame_count) == (1, 2)
    assert r1.summary_version is None
    page = await backend.read_attempt_stream(ReadAttemptStream(eid=eid, attempt_index=0))
    assert [f.id for f in page.frames] == [r1.entry_id, r2.entry_id]
    assert page.frames[0].text == "hello" and page.frames[0].correlation_id == "c1"
    assert page.frames[1].payload == b"\x00\xffbin" and page.frames[1].correlation_id is None
    assert page.frames[0].mode is StreamMode.DURABLE and not page.closed
    meta = await backend.read_stream_meta(eid, 0)
    assert meta is not None and meta.frame_count == 2 and meta.total_bytes == 5 + 5
    assert meta.has_durable_frame and meta.last_sequence == r2.entry_id
    assert meta.durability_mode == "durable_full" and meta.stream_id == f"{eid}:0"


async def test_read_with_offsets(backend: Backend, raw: Any) -> None:
    eid = await active(raw)
    ids = [(await backend.append_frame(frame(eid, str(i)))).entry_id for i in range(5)]
    page = await backend.read_attempt_stream(
        ReadAttemptStream(eid=eid, attempt_index=0, from_id="(" + ids[1], count_limit=2))
    assert [f.text for f in page.frames] == ["2", "3"]
    page = await backend.read_attempt_stream(
        ReadAttemptStream(eid=eid, attempt_index=0, from_id=ids[3], to_id=ids[4]))
    assert [f.text for f in page.frames] == ["3", "4"]


async def test_read_count_limit_errors(backend: Backend, raw: Any) -> None:
    eid = await active(raw)
    k = ExecKeys(eid)
    for count, detail in (("0", b"count_limit must be >= 1"), ("", b"count_limit must be >= 1"),
                          ("10001", b"count_limit_exceeds_hard_cap")):
        reply = await raw.execute_command("FCALL", "ff_read_attempt_stream", 2, k.stream(0),
                                          k.stream_meta(0), "-", "+", count, "")
        assert reply == [0, b"invalid_input", detail]


async def test_stale_owner_cannot_append(backend: Backend, raw: Any) -> None:
    eid = await active(raw, epoch=2)
    for bad in (dict(lease_epoch=1), dict(lease_id="22222222-2222-4222-8222-222222222222"),
                dict(attempt_index=1)):
        with pytest.raises(ContractError) as ei:
            await backend.append_frame(frame(eid, "x", **{"lease_epoch": 2, **bad}))
        assert ei.value.code == "stale_owner_cannot_append"
    await raw.hset(ExecKeys(eid).core, "lease_expires_at", "1")
    with pytest.raises(ContractError) as ei:
        await backend.append_frame(frame(eid, "x", lease_epoch=2))
    assert ei.value.code == "stale_owner_cannot_append"
    await raw.hset(ExecKeys(eid).core, mapping={"lease_expires_at": "99999999999999",
                                                "ownership_state": "lease_revoked"})
    with pytest.raises(ContractError) as ei:
        await backend.append_frame(frame(eid, "x", lease_epoch=2))
    assert ei.value.code == "stale_owner_cannot_append"
    assert await raw.exists(ExecKeys(eid).stream(0)) == 0


async def test_stream_closed_after_close_and_when_not_active(backend: Backend, raw: Any) -> None:
    eid = await active(raw)
    await backend.append_frame(frame(eid, "before"))
    await raw.hset(ExecKeys(eid).stream_meta(0),
                   mapping={"closed_at": "123", "closed_reason": "attempt_success"})
    with pytest.raises(ContractError) as ei:
        await backend.append_frame(frame(eid, "after"))
    assert ei.value.code == "stream_closed"
    page = await backend.read_attempt_stream(ReadAttemptStream(eid=eid, attempt_index=0))
    assert [f.text for f in page.frames] == ["before"]
    assert page.closed_at == 123 and page.closed_reason == "attempt_success"
    other = await active(raw)
    await raw.hset(ExecKeys(other).core, "lifecycle_phase", "terminal")
    with pytest.raises(ContractError) as ei:
        await backend.append_frame(frame(other, "x"))
    assert ei.value.code == "stream_closed"


async def test_oversize_frame_typed_error_nothing_appended(backend: Backend, raw: Any) -> None:
    eid = await active(raw)
    k = ExecKeys(eid)
    fc = frame(eid, "x" * 10, max_payload_bytes=10)
    argv = list(fc.argv())
    argv[6] = "x" * 11
    reply = await raw.execute_command("FCALL", "ff_append_frame", 4, *fc.keys(), *argv)
    assert reply == [0, b"retention_limit_exceeded"]
    assert await raw.exists(k.stream(0), k.stream_meta(0)) == 0
    argv[12] = ""  # the 0.15 crash position answers a typed error here
    reply = await raw.execute_command("FCALL", "ff_append_frame", 4, *fc.keys(), *argv)
    assert reply[:2] == [0, b"invalid_input"]
    assert await raw.exists(k.stream(0), k.stream_meta(0)) == 0


async def test_summary_merge_patch(backend: Backend, raw: Any) -> None:
    eid = await active(raw)

    async def patch(doc: dict[str, Any]) -> int | None:
        r = await backend.append_frame(frame(eid, json.dumps(doc), frame_type="progress",
                                             mode=StreamMode.SUMMARY))
        return r.summary_version

    assert await patch({"a": 1, "n": {"x": 1, "y": {"z": 1}}, "drop": 1}) == 1
    assert await patch({"n": {"y": {"w": 2}, "x": None}, "drop": None,
                        "explicit": "__ff_null__", "list": ["__ff_null__", 1],
                        "a": {}}) == 2
    s = await backend.read_summary(ReadSummary(eid=eid, attempt_index=0))
    assert s.version == 2 and s.patch_kind == "json-merge-patch"
    # the empty object replaced 1 wholesale; the server's cjson may render it as [] or {}
    assert s.document.pop("a") in ({}, [])
    assert s.document == {"n": {"y": {"z": 1, "w": 2}}, "explicit": None, "list": [None, 1]}
    assert s.first_applied_ms > 0 and s.last_updated_ms >= s.first_applied_ms
    page = await backend.read_attempt_stream(ReadAttemptStream(eid=eid, attempt_index=0))
    assert [f.summary_version for f in page.frames] == [1, 2]
    assert page.frames[1].mode is StreamMode.SUMMARY


async def test_summary_refusals_write_nothing(backend: Backend, raw: Any) -> None:
    eid = await active(raw)
    fc = frame(eid, "{}", mode=StreamMode.SUMMARY)
    deep: dict[str, Any] = {"leaf": 1}
    for _ in range(17):
        deep = {"d": deep}
    for payload, detail in (("not json", b"patch payload is not valid JSON"),
                            ("[1]", b"patch must be a JSON object"),
                            ("null", b"patch must be a JSON object"),
                            (json.dumps(deep), b"patch_depth_exceeded")):
        argv = list(fc.argv())
        argv[6] = payload
        reply = await raw.execute_command("FCALL", "ff_append_frame", 4, *fc.keys(), *argv)
        assert reply == [0, b"invalid_input", detail]
    assert await raw.exists(ExecKeys(eid).stream(0)) == 0
    s = await backend.read_summary(ReadSummary(eid=eid, attempt_index=0))
    assert s.version == 0 and s.document == {}


async def test_best_effort_maxlen_formula_and_ttl(backend: Backend, raw: Any) -> None:
    eid = await active(raw)
    k = ExecKeys(eid)
    ttl = 10_000
    r = await backend.append_frame(frame(eid, "live", mode=StreamMode.BEST_EFFORT, ttl_ms=ttl))
    meta = await backend.read_stream_meta(eid, 0)
    assert meta is not None and meta.maxlen_applied_last == 64
    assert meta.ema_rate_hz == pytest.approx(64 / (2 * ttl / 1000))
    assert not meta.has_durable_frame
    assert 0 < await raw.pttl(k.stream(0)) <= 2 * ttl
    # Second append: recompute with the stored (rounded) estimator state.
    prev_rate, prev_ts = meta.ema_rate_hz, meta.last_append_ts_ms
    assert prev_ts is not None and prev_rate is not None
    await backend.append_frame(frame(eid, "live2", mode=StreamMode.BEST_EFFORT, ttl_ms=ttl,
                                     maxlen_floor=2, maxlen_ceiling=100_000, ema_alpha=0.5))
    meta2 = await backend.read_stream_meta(eid, 0)
    assert meta2 is not None and meta2.last_append_ts_ms is not None
    dt = max(meta2.last_append_ts_ms - prev_ts, 1)
    rate = 0.5 * (1000 / dt) + 0.5 * prev_rate
    assert meta2.ema_rate_hz == pytest.approx(rate, rel=1e-9)
    assert meta2.maxlen_applied_last == min(max(math.ceil(rate * 20), 2), 100_000)
    page = await backend.read_attempt_stream(ReadAttemptStream(eid=eid, attempt_index=0))
    assert page.frames[0].id == r.entry_id and page.frames[0].ttl_ms == ttl
    # A durable frame pins the stream: no TTL afterwards, and visibility filter works.
    await backend.append_frame(frame(eid, "keep"))
    assert await raw.pttl(k.stream(0)) == -1
    await backend.append_frame(frame(eid, "live3", mode=StreamMode.BEST_EFFORT, ttl_ms=ttl))
    assert await raw.pttl(k.stream(0)) == -1
    durable = await backend.read_attempt_stream(
        ReadAttemptStream(eid=eid, attempt_index=0, exclude_best_effort=True))
    assert [f.text for f in durable.frames] == ["keep"]


async def test_durable_retention_exact_cap(backend: Backend, raw: Any) -> None:
    eid = await active(raw)
    for i in range(5):
        r = await backend.append_frame(frame(eid, str(i), retention_maxlen=3))
    assert r.frame_count == 5
    page = await backend.read_attempt_stream(ReadAttemptStream(eid=eid, attempt_index=0))
    assert [f.text for f in page.frames] == ["2", "3", "4"]


async def test_tail_frames_blocking_read(backend: Backend, raw: Any) -> None:
    eid = await active(raw)
    r = await backend.append_frame(frame(eid, "one"))
    frames, closed_at, _ = await backend.tail_frames(eid, 0, "0-0")
    assert [f.text for f in frames] == ["one"] and closed_at is None
    frames, _, _ = await backend.tail_frames(eid, 0, r.entry_id, block_ms=20)
    assert frames == []
