"""Step journal (ffw library): lease fencing, ordering, replay and non-determinism."""

from __future__ import annotations

import pytest
from lifecycle_support import b, claim, create

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.errors import ContractError, InvalidInput
from flowfabric_worker.protocol.journal import JournalAppend, JournalRead

pytestmark = pytest.mark.anyio
__all__ = ["b"]


async def test_append_read_and_replay(b: Backend) -> None:
    eid = await create(b)
    c = await claim(b, eid)

    def step(i: int, name: str, result: bytes, **kw: object) -> JournalAppend:
        return JournalAppend(eid=eid, lease_id=c.lease_id, lease_epoch=c.lease_epoch,
                             step_index=i, step_name=name, result=result, **kw)  # type: ignore[arg-type]

    assert not (await b.call(step(0, "fetch", b"\x00\xffbin"))).existing
    assert not (await b.call(step(1, "wait", b"sig-1", kind="signal"))).existing
    again = await b.call(step(0, "fetch", b"other"))
    assert again.existing and again.result == b"\x00\xffbin"
    entries = await b.call(JournalRead(eid=eid))
    assert [(e.index, e.name, e.kind, e.result) for e in entries] == [
        (0, "fetch", "step", b"\x00\xffbin"), (1, "wait", "signal", b"sig-1")]
    # The pipelined plain read a run uses decodes the same entries.
    assert (await b.journal_and_suspension(eid)) == (entries, None)

    with pytest.raises(ContractError) as e:
        await b.call(step(1, "changed", b""))
    assert e.value.code == "nondeterministic_step"
    with pytest.raises(ContractError) as e:
        await b.call(step(5, "gap", b""))
    assert e.value.code == "invalid_input"
    with pytest.raises(InvalidInput):
        step(0, "", b"")


async def test_stale_lease_refused(b: Backend) -> None:
    eid = await create(b)
    c = await claim(b, eid)
    with pytest.raises(ContractError) as e:
        await b.call(JournalAppend(eid=eid, lease_id=c.lease_id, lease_epoch=c.lease_epoch + 1,
                                   step_index=0, step_name="s"))
    assert e.value.code == "stale_lease"
    with pytest.raises(ContractError) as e:
        await b.call(JournalAppend(eid=eid, lease_id="nope", lease_epoch=c.lease_epoch,
                                   step_index=0, step_name="s"))
    assert e.value.code == "stale_lease"
    assert await b.call(JournalRead(eid=eid)) == ()
