"""The wake channel's messages (protocol/wake.py): pure."""

from __future__ import annotations

from flowfabric_worker.protocol.wake import PLAIN_WAKE, DirectWake, direct_wake, parse_wake


def test_a_direct_wake_names_execution_lane_and_kind() -> None:
    msg = direct_wake("{fp:7}:abc", "emails", "send mail\nv2")
    assert parse_wake(msg) == DirectWake("{fp:7}:abc", "emails", "send mail\nv2")
    assert parse_wake(msg.encode()) == DirectWake("{fp:7}:abc", "emails", "send mail\nv2")


def test_plain_and_unrecognised_messages_only_say_look() -> None:
    for data in (PLAIN_WAKE, b"1", b"", "ffw:claim:", "ffw:claim:eid-only", b"\xff\xfe", 7,
                 "ffw:claim:\nlane\nkind"):
        assert parse_wake(data) is None
