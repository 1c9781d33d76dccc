"""Waitpoint HMAC tokens: validation, cross-execution refusal, rotation, GC (spec 01 §8)."""

from __future__ import annotations

import anyio
import pytest
from lifecycle_support import b, core
from signals_support import active, deliver, hall, suspend

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.errors import ContractError, InvalidInput
from flowfabric_worker.protocol.ids import execution_tag
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.signals import ListHmacKids, RotateHmacSecret, Token

pytestmark = pytest.mark.anyio
__all__ = ["b"]

OTHER = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"


async def _refused(b: Backend, eid: str, wp: str, token: str) -> str:
    with pytest.raises(ContractError) as e:
        await deliver(b, eid, wp, token)
    return e.value.code


async def test_malformed_and_wrong_tokens_are_refused_and_stamped(b: Backend) -> None:
    eid, c = await active(b)
    s = await suspend(b, eid, c)
    wp, tok = s.primary.waitpoint_id, s.primary.token.secret()
    assert await _refused(b, eid, wp, "") == "missing_token"
    assert await _refused(b, eid, wp, "k1") == "invalid_token"
    assert await _refused(b, eid, wp, ":" + "a" * 40) == "invalid_token"
    assert await _refused(b, eid, wp, "k1:" + "a" * 39) == "invalid_token"
    assert await _refused(b, eid, wp, "k1:" + "0" * 40) == "invalid_token"
    assert await _refused(b, eid, wp, "k1:" + tok[3:].upper()) == "invalid_token"
    assert await _refused(b, eid, wp, "k9:" + tok[3:]) == "invalid_token"
    assert (await core(b, eid))["last_hmac_validation_failed_at"] != ""
    assert (await core(b, eid))["lifecycle_phase"] == "suspended"
    # Unknown waitpoint: invalid_token (no probing).
    assert await _refused(b, eid, "nope", tok) == "invalid_token"
    assert (await deliver(b, eid, wp, tok)).effect == "resume_condition_satisfied"


async def test_token_of_another_executions_waitpoint_never_resumes(b: Backend) -> None:
    ea, ca = await active(b)
    eb, cb = await active(b)
    assert execution_tag(ea) == execution_tag(eb)
    await suspend(b, ea, ca)
    sb = await suspend(b, eb, cb)
    code = await _refused(b, ea, sb.primary.waitpoint_id, sb.primary.token.secret())
    assert code == "invalid_token"
    assert (await core(b, ea))["lifecycle_phase"] == "suspended"
    wpb = await hall(b, ExecKeys(eb).waitpoint(sb.primary.waitpoint_id))
    assert wpb["state"] == "active"


async def test_rotation_grace_and_expiry(b: Backend) -> None:
    eid, c = await active(b)
    s = await suspend(b, eid, c)
    tag = execution_tag(eid)
    r = await b.call(RotateHmacSecret(tag=tag, new_kid="k2", new_secret_hex=OTHER,
                                      grace_ms=60_000))
    assert (r.outcome, r.previous_kid, r.current_kid, r.gc_count) == ("rotated", "k1", "k2", 0)
    kids = await b.call(ListHmacKids(tag=tag))
    assert kids.current_kid == "k2" and [k for k, _ in kids.in_grace] == ["k1"]
    # Old kid inside grace still validates.
    r1 = await deliver(b, eid, s.primary.waitpoint_id, s.primary.token.secret(), "x")
    assert r1.effect == "no_op"
    # Rotate again with zero grace for k2 and shorten k1's grace to the past.
    await b.redis.hset(ExecKeys(eid).hmac_keystore, "expires_at:k1", "1")
    assert await _refused(b, eid, s.primary.waitpoint_id,
                          s.primary.token.secret()) == "token_expired"
    r = await b.call(RotateHmacSecret(tag=tag, new_kid="k3", new_secret_hex=OTHER, grace_ms=0))
    assert r.gc_count == 1
    assert await b.redis.hexists(ExecKeys(eid).hmac_keystore, "secret:k1") == 0
    assert await _refused(b, eid, s.primary.waitpoint_id,
                          s.primary.token.secret()) == "invalid_token"
    await anyio.sleep(0.01)
    assert [k for k, _ in (await b.call(ListHmacKids(tag=tag))).in_grace] == []


async def test_rotation_noop_conflict_and_validation(b: Backend) -> None:
    tag = "{fp:3}"
    assert (await b.call(ListHmacKids(tag=tag))).current_kid == ""
    r = await b.call(RotateHmacSecret(tag=tag, new_kid="k1", new_secret_hex=OTHER))
    assert (r.outcome, r.previous_kid) == ("rotated", "")
    assert (await b.call(RotateHmacSecret(tag=tag, new_kid="k1",
                                          new_secret_hex=OTHER))).outcome == "noop"
    with pytest.raises(ContractError) as e:
        await b.call(RotateHmacSecret(tag=tag, new_kid="k1", new_secret_hex="abcd"))
    assert e.value.code == "rotation_conflict"
    with pytest.raises(InvalidInput):
        RotateHmacSecret(tag=tag, new_kid="a:b", new_secret_hex=OTHER)
    raw = await b.redis.execute_command("FCALL", "ff_rotate_waitpoint_hmac_secret", 1,
                                        f"ff:sec:{tag}:waitpoint_hmac", "k2", "abc", "0")
    assert raw[1] == b"invalid_secret_hex"
    raw = await b.redis.execute_command("FCALL", "ff_rotate_waitpoint_hmac_secret", 1,
                                        f"ff:sec:{tag}:waitpoint_hmac", "k2", "ab", "-1")
    assert raw[1] == b"invalid_grace_ms"


async def test_invalid_stored_secret(b: Backend) -> None:
    eid, c = await active(b)
    await b.redis.hset(ExecKeys(eid).hmac_keystore, "secret:k1", "xyz")
    with pytest.raises(ContractError) as e:
        await suspend(b, eid, c)
    assert e.value.code == "invalid_secret"


def test_token_redaction() -> None:
    t = Token("k1:" + "a" * 40)
    assert repr(t) == "Token('k1:<redacted:40>')" and str(t) == "k1:<redacted:40>"
    assert f"{t}" == "k1:<redacted:40>" and "aaaa" not in repr([t])
