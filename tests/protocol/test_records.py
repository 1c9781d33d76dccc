"""Stored-record decoding (spec 01 §4)."""

from __future__ import annotations

from flowfabric_worker.protocol.records import (
    Attempt,
    Condition,
    ExecCore,
    LeaseCurrent,
    StreamMeta,
    Suspension,
    Waitpoint,
)


def test_exec_core_at_creation_blanks_become_none() -> None:
    core = ExecCore.from_hash({
        b"execution_id": b"{fp:3}:0b4d3c0e-7f62-4a53-9a8e-0c1d2e3f4a5b",
        b"priority": b"7",
        b"lifecycle_phase": b"runnable",
        b"public_state": b"delayed",
        b"current_attempt_index": b"",
        b"current_lease_id": b"",
        b"current_lease_epoch": b"0",
        b"created_at": b"1795348788532",
        b"delay_until": b"",
        b"flow_id": b"",
        b"required_capabilities": b"gpu,linux",
        b"some_future_field": b"ignored",
    })
    assert core.priority == 7
    assert core.created_at == 1795348788532
    assert core.current_attempt_index is None
    assert core.current_lease_id is None
    assert core.delay_until is None
    assert core.flow_id is None
    assert core.public_state == "delayed"
    assert core.capabilities == ["gpu", "linux"]
    assert not core.is_terminal


def test_missing_fields_take_defaults() -> None:
    core = ExecCore.from_hash({})
    assert core.total_attempt_count == 0
    assert core.started_at is None
    assert core.pending_replay_attempt is False


def test_attempt_lease_and_flags() -> None:
    a = Attempt.from_hash({"attempt_index": "2", "attempt_type": "retry",
                           "attempt_state": "ended_failure", "previous_attempt_index": "1",
                           "suspended_at": ""})
    assert (a.attempt_index, a.attempt_type, a.previous_attempt_index) == (2, "retry", 1)
    assert a.suspended_at is None
    lease = LeaseCurrent.from_hash({b"lease_epoch": b"3", b"expires_at": b"100"})
    assert lease.lease_epoch == 3 and lease.expires_at == 100
    cond = Condition.from_hash({"closed": "1", "total_matchers": "2"})
    assert cond.closed is True and cond.total_matchers == 2
    meta = StreamMeta.from_hash({"ema_rate_hz": "2.5", "has_durable_frame": "0"})
    assert meta.ema_rate_hz == 2.5 and meta.has_durable_frame is False


def test_suspension_open_means_id_set_and_not_closed() -> None:
    assert Suspension.from_hash({"suspension_id": "s", "closed_at": ""}).is_open
    assert not Suspension.from_hash({"suspension_id": "s", "closed_at": "5"}).is_open
    assert not Suspension.from_hash({}).is_open
    wp = Waitpoint.from_hash({"state": "active", "signal_count": "4"})
    assert wp.state == "active" and wp.signal_count == 4
