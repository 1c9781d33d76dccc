"""Resume conditions, timeouts, dedup and limits (spec 03 §3–§5.5)."""

from __future__ import annotations

import pytest
from lifecycle_support import LANE, b, core
from signals_support import active, deliver, hall, suspend

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.errors import ContractError
from flowfabric_worker.protocol import conditions as C
from flowfabric_worker.protocol.ids import new_uuid
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.signals import ExpireSuspension, WaitpointBinding

pytestmark = pytest.mark.anyio
__all__ = ["b"]


async def _effects(b: Backend, cond: str, names: list[str]) -> tuple[list[str], str]:
    eid, c = await active(b)
    s = await suspend(b, eid, c, cond)
    out = []
    for n in names:
        r = await deliver(b, eid, s.primary.waitpoint_id, s.primary.token.secret(), n)
        out.append(r.effect)
    return out, (await core(b, eid))["lifecycle_phase"]


async def test_all_mode_needs_every_matcher(b: Backend) -> None:
    effects, phase = await _effects(b, C.signal_set(["a", "a", "b"], mode="all"),
                                    ["a", "b", "c", "a"])
    assert effects == ["appended_to_waitpoint", "appended_to_waitpoint", "no_op",
                       "resume_condition_satisfied"]
    assert phase == "runnable"


async def test_any_mode_with_count(b: Backend) -> None:
    effects, phase = await _effects(b, C.signal_set(["a", "b"], minimum=2), ["b", "a"])
    assert effects == ["appended_to_waitpoint", "resume_condition_satisfied"]
    assert phase == "runnable"


async def test_wildcard_any_signal(b: Backend) -> None:
    effects, _ = await _effects(b, C.any_signal(), ["whatever"])
    assert effects == ["resume_condition_satisfied"]


async def test_composite_all_of_two_names_on_one_key(b: Backend) -> None:
    eid, c = await active(b)
    wp = new_uuid()
    key = f"wpk:{wp}"
    cond = C.composite(C.all_of(C.single(key, C.by_name("a")), C.single(key, C.by_name("b"))))
    s = await suspend(b, eid, c, cond, wp_id=wp, wp_key=key)
    tok = s.primary.token.secret()
    got = [(await deliver(b, eid, wp, tok, n)).effect for n in ["a", "a", "z", "b"]]
    assert got == ["appended_to_waitpoint", "appended_to_waitpoint_duplicate",
                   "signal_ignored_matcher_failed", "resume_condition_satisfied"]
    susp = await hall(b, ExecKeys(eid).suspension_current)
    assert susp["close_reason"] == "resumed" and susp["closer_signal_id"] != ""
    assert await b.redis.exists(ExecKeys(eid).suspension_current + ":satisfied_set") == 0


async def test_composite_count_over_extra_waitpoints_closes_primary(b: Backend) -> None:
    eid, c = await active(b)
    wp, x1 = new_uuid(), new_uuid()
    k0, k1 = f"wpk:{wp}", f"wpk:{x1}"
    cond = C.composite(C.count(2, "DistinctWaitpoints", [k0, k1]))
    s = await suspend(b, eid, c, cond, wp_id=wp, wp_key=k0,
                      extras=(WaitpointBinding(x1, k1),))
    assert len(s.extras) == 1 and s.extras[0].token.kid == "k1"
    r = await deliver(b, eid, x1, s.extras[0].token.secret(), "any")
    assert r.effect == "appended_to_waitpoint"
    r = await deliver(b, eid, x1, s.extras[0].token.secret(), "again")
    assert r.effect == "appended_to_waitpoint_duplicate"
    r = await deliver(b, eid, wp, s.primary.token.secret(), "x")
    assert r.effect == "resume_condition_satisfied"
    k = ExecKeys(eid)
    assert (await hall(b, k.waitpoint(x1)))["state"] == "closed"
    assert (await core(b, eid))["lifecycle_phase"] == "runnable"


async def test_composite_resume_via_extra_closes_primary(b: Backend) -> None:
    eid, c = await active(b)
    wp, x1 = new_uuid(), new_uuid()
    k0, k1 = f"wpk:{wp}", f"wpk:{x1}"
    cond = C.composite(C.count(1, "DistinctSignals", [k0, k1]))
    s = await suspend(b, eid, c, cond, wp_id=wp, wp_key=k0,
                      extras=(WaitpointBinding(x1, k1),))
    r = await deliver(b, eid, x1, s.extras[0].token.secret(), "go")
    assert r.effect == "resume_condition_satisfied"
    k = ExecKeys(eid)
    assert (await hall(b, k.waitpoint(wp)))["state"] == "closed"
    assert (await hall(b, k.waitpoint_condition(wp)))["closed"] == "1"


@pytest.mark.parametrize(("behavior", "outcome", "phase", "reason"), [
    ("fail", "failed", "terminal", "timed_out_fail"),
    ("cancel", "cancelled", "terminal", "timed_out_cancel"),
    ("expire", "expired", "terminal", "timed_out_expire"),
    ("auto_resume_with_timeout_signal", "waiting", "runnable", "timed_out_auto_resume"),
    ("escalate", "suspended", "suspended", ""),
    ("made_up", "failed", "terminal", "timed_out_fail"),  # unknown strings act as fail
])
async def test_timeout_behaviours(
    b: Backend, behavior: str, outcome: str, phase: str, reason: str
) -> None:
    eid, c = await active(b)
    s = await suspend(b, eid, c, timeout_at=1, timeout_behavior=behavior)
    k = ExecKeys(eid)
    assert await b.redis.zscore(k.suspension_timeout, eid) == 1
    call = ExpireSuspension(eid=eid, lane=LANE, current_waitpoint_id=s.primary.waitpoint_id,
                            current_attempt_index=c.attempt_index)
    r = await b.call(call)
    expected_tag = "auto_resume" if behavior.startswith("auto_resume") else behavior
    assert (r.outcome, r.public_state) == (expected_tag, outcome)
    st = await core(b, eid)
    assert st["lifecycle_phase"] == phase
    assert await b.redis.zscore(k.suspension_timeout, eid) is None
    susp = await hall(b, k.suspension_current)
    assert susp["close_reason"] == reason
    if phase == "terminal":
        # Every terminal behaviour records why on exec_core, the unknown
        # string echoed as given (spec 03 §3.5; issue 12, hole 7).
        assert st["failure_reason"] == f"suspension_timeout:{behavior}"
        assert (st["terminal_outcome"], st["public_state"]) == (outcome, outcome)
        att_state = "ended_cancelled" if behavior == "cancel" else "ended_failure"
        assert (await hall(b, k.attempt(c.attempt_index)))["attempt_state"] == att_state
    if behavior == "escalate":
        assert st["blocking_reason"] == "paused_by_operator"
        assert susp["reason_code"] == "waiting_for_operator_review"
    second = await b.call(call)
    assert second.outcome.endswith("_cleaned") or second.outcome == "not_yet_due"


async def test_expire_not_yet_due(b: Backend) -> None:
    eid, c = await active(b)
    s = await suspend(b, eid, c, timeout_at=2**41)
    r = await b.call(ExpireSuspension(eid=eid, lane=LANE,
                                      current_waitpoint_id=s.primary.waitpoint_id,
                                      current_attempt_index=0))
    assert r.outcome == "not_yet_due"


async def test_dedup_applies_once(b: Backend) -> None:
    eid, c = await active(b)
    s = await suspend(b, eid, c, C.signal_set(["a", "b"], mode="all"))
    tok = s.primary.token.secret()
    r1 = await deliver(b, eid, s.primary.waitpoint_id, tok, "a", idempotency_key="ik")
    r2 = await deliver(b, eid, s.primary.waitpoint_id, tok, "a", idempotency_key="ik")
    assert r2.duplicate and r2.signal_id == r1.signal_id
    cond = await hall(b, ExecKeys(eid).waitpoint_condition(s.primary.waitpoint_id))
    assert cond["satisfied_count"] == "1"
    assert await b.redis.zcard(ExecKeys(eid).signals) == 1


async def test_signal_limit(b: Backend) -> None:
    eid, c = await active(b)
    s = await suspend(b, eid, c, C.signal_set(["a", "b", "c"], mode="all"))
    tok = s.primary.token.secret()
    await deliver(b, eid, s.primary.waitpoint_id, tok, "a", max_signals_per_execution=2)
    await deliver(b, eid, s.primary.waitpoint_id, tok, "b", max_signals_per_execution=2)
    with pytest.raises(ContractError) as e:
        await deliver(b, eid, s.primary.waitpoint_id, tok, "c", max_signals_per_execution=2)
    assert e.value.code == "signal_limit_exceeded"
    assert await b.redis.zcard(ExecKeys(eid).signals) == 2
    r = await deliver(b, eid, s.primary.waitpoint_id, tok, "c", max_signals_per_execution=0)
    assert r.effect == "resume_condition_satisfied"


async def test_terminal_and_closed_condition_refusals(b: Backend) -> None:
    eid, c = await active(b)
    s = await suspend(b, eid, c)
    tok = s.primary.token.secret()
    await deliver(b, eid, s.primary.waitpoint_id, tok)
    with pytest.raises(ContractError) as e:
        await deliver(b, eid, s.primary.waitpoint_id, tok)
    assert e.value.code == "target_not_signalable"
