"""Pure protocol tests for attempt-stream structs and the merge-patch helper."""

from __future__ import annotations

import pytest

from flowfabric_worker.errors import ContractError, InvalidInput
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.streams import (
    NULL_SENTINEL,
    AppendFrame,
    FrameKind,
    ReadAttemptStream,
    ReadSummary,
    StreamMeta,
    StreamMode,
    decode_entry,
    merge_patch,
)

EID = "{fp:7}:6f1c0a52-8d7e-4b7b-9a44-1d2e3f405162"


def test_append_argv_is_19_explicit_positions() -> None:
    fc = AppendFrame(eid=EID, attempt_index=2, lease_id="L", lease_epoch=3,
                     frame_type="event", payload="p", mode=StreamMode.BEST_EFFORT, ttl_ms=5000)
    argv = fc.argv()
    assert len(argv) == 19
    assert argv[5] == "" and argv[6] == b"p"
    assert argv[10] == "10000" and argv[12] == "65536" and argv[13] == "best_effort"
    assert argv[14] == "" and argv[15] == "5000" and argv[18] == "0.000000"
    k = ExecKeys(EID)
    assert fc.keys() == [k.core, k.stream(2), k.stream_meta(2), k.attempt_summary(2)]
    assert AppendFrame(eid=EID, attempt_index=0, lease_id="L", lease_epoch=1,
                       frame_type="s", payload="{}", mode=StreamMode.SUMMARY).argv()[14] \
        == "json-merge-patch"


@pytest.mark.parametrize("kw", [
    {"payload": "x" * 11, "max_payload_bytes": 10},
    {"ttl_ms": -1},
    {"ema_alpha": 1.5},
    {"mode": StreamMode.SUMMARY, "payload": "nope"},
    {"mode": StreamMode.SUMMARY, "payload": "[1]"},
])
def test_append_client_side_validation(kw: dict[str, object]) -> None:
    base: dict[str, object] = dict(eid=EID, attempt_index=0, lease_id="L", lease_epoch=1,
                                   frame_type="stdout", payload="ok")
    base.update(kw)
    with pytest.raises(InvalidInput):
        AppendFrame(**base)  # type: ignore[arg-type]


def test_append_decode_and_refusal() -> None:
    fc = AppendFrame(eid=EID, attempt_index=0, lease_id="L", lease_epoch=1,
                     frame_type="stdout", payload="x")
    r = fc.decode([1, b"OK", b"1-0", b"4", b""])
    assert (r.entry_id, r.frame_count, r.summary_version) == ("1-0", 4, None)
    assert fc.decode([1, b"OK", b"1-0", b"4", b"7"]).summary_version == 7
    with pytest.raises(ContractError) as ei:
        fc.decode([0, b"stale_owner_cannot_append"])
    assert ei.value.code == "stale_owner_cannot_append"


def test_read_stream_decode_and_limits() -> None:
    rd = ReadAttemptStream(eid=EID, attempt_index=0)
    res = rd.decode([1, b"OK", [[b"5-1", [b"frame_type", b"stderr", b"ts", b"9", b"payload",
                                           b"oops", b"encoding", b"utf8", b"source", b"worker"]]],
                     b"10", b"attempt_failure"])
    f = res.frames[0]
    assert f.kind is FrameKind.STDERR and f.mode is StreamMode.DURABLE  # no mode = durable
    assert f.text == "oops" and f.ts == 9 and f.timestamp_ms == 5
    assert res.closed_at == 10 and res.closed_reason == "attempt_failure"
    with pytest.raises(InvalidInput):
        ReadAttemptStream(eid=EID, attempt_index=0, count_limit=0)
    with pytest.raises(InvalidInput):
        ReadAttemptStream(eid=EID, attempt_index=0, count_limit=10_001)


def test_decode_entry_unknown_mode_kept_as_text() -> None:
    f = decode_entry(b"1-0", {b"frame_type": b"custom", b"mode": b"weird", b"payload": b""})
    assert f.mode == "weird" and f.kind is None


def test_read_summary_decode() -> None:
    rs = ReadSummary(eid=EID, attempt_index=0)
    empty = rs.decode([1, b"OK", b"", b"0", b"", b"0", b"0"])
    assert empty.version == 0 and empty.document == {}
    s = rs.decode([1, b"OK", b'{"a":1}', b"3", b"json-merge-patch", b"20", b"10"])
    assert s.document == {"a": 1} and s.version == 3 and s.first_applied_ms == 10


def test_stream_meta_from_hash() -> None:
    m = StreamMeta.from_hash({b"frame_count": b"3", b"closed_at": b"", b"has_durable_frame": b"1",
                              b"ema_rate_hz": b"12.08380952381"})
    assert m.frame_count == 3 and not m.closed and m.has_durable_frame
    assert m.ema_rate_hz == pytest.approx(12.08380952381)


def test_merge_patch_rules() -> None:
    doc = {"a": 1, "n": {"x": 1, "y": 2}, "s": "keep"}
    out = merge_patch(doc, {"a": None, "n": {"x": None, "z": {"q": 1}}, "e": {},
                            "v": NULL_SENTINEL, "l": [NULL_SENTINEL, 2], "s": [1]})
    assert out == {"n": {"y": 2, "z": {"q": 1}}, "e": {}, "v": None, "l": [None, 2], "s": [1]}
    assert doc == {"a": 1, "n": {"x": 1, "y": 2}, "s": "keep"}  # input untouched
    assert merge_patch({"t": 5}, {"t": {"k": 1}}) == {"t": {"k": 1}}  # non-object target replaced
    deep: dict[str, object] = {"leaf": 1}
    for _ in range(17):
        deep = {"d": deep}
    with pytest.raises(InvalidInput):
        merge_patch({}, deep)
