"""The scheduler role on both backends, with time passed explicitly: exactly
one execution per tick with several engines firing at once, catch-up and
overlap policies, pause, and nothing written for bad input."""

from __future__ import annotations

import anyio
import pytest
from schedule_support import scheduled_runs

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.client.client import Client
from flowfabric_worker.engine.runner import Candidate
from flowfabric_worker.engine.schedule_firing import fire_due, fire_schedule
from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol.errors import ContractInvalidInput, ScheduleNotFound
from flowfabric_worker.protocol.schedules import ScheduleKeys, ScheduleUpsert, schedule_tag
from flowfabric_worker.tasks.schedule_store import read_schedule

pytestmark = pytest.mark.anyio


async def _fire(backend: Backend, sid: str, now: int) -> int:
    record = await read_schedule(backend, sid)
    assert record is not None
    return await fire_schedule(backend, schedule_tag(sid, backend.partitions), record, now)


async def _next(backend: Backend, sid: str) -> int:
    record = await read_schedule(backend, sid)
    assert record is not None and record.next_tick is not None
    return record.next_tick


async def _sched_keys(backend: Backend) -> list[str]:
    return [k.decode() if isinstance(k, bytes) else k
            async for k in backend.redis.scan_iter(match="ffw:sched:*")]


async def test_several_engines_firing_the_same_ticks_create_one_run_each(url: str) -> None:
    async with Client.connect(url) as client:
        await client.schedule("job", 1, every=1, schedule_id="often")
        first = await _next(client.backend, "often")
        tag = schedule_tag("often", client.backend.partitions)
        engines = [await Backend.open(url) for _ in range(4)]
        try:
            for step in range(6):
                now = first + step * 1000 + 10
                candidate = Candidate(tag=tag, lane=None, index=ScheduleKeys(tag).due,
                                      member="often")
                async with anyio.create_task_group() as tg:
                    for engine in engines:
                        for _ in range(2):
                            tg.start_soon(fire_due, engine, [candidate], now)
        finally:
            for engine in engines:
                await engine.close()
        runs = await scheduled_runs(client.backend, schedule_id="often")
        ticks = [t for _, t in runs]
        assert ticks == [first + i * 1000 for i in range(6)]
        info = await client.schedule_handle("often").info()
        assert info.fired == 6 and info.last_execution_id == runs[-1][0]


async def test_catchup_policies_after_a_long_outage(url: str) -> None:
    async with Client.connect(url) as client:
        for policy in ("skip", "all", "none"):
            await client.schedule("job", every=60, schedule_id=f"c-{policy}",
                                  catchup=policy, catchup_limit=5)
        first = await _next(client.backend, "c-skip")
        later = first + 60 * 60_000 + 30_000  # an hour of ticks missed
        for policy in ("skip", "all", "none"):
            await _fire(client.backend, f"c-{policy}", later)
        got = {p: [t for _, t in await scheduled_runs(client.backend, schedule_id=f"c-{p}")]
               for p in ("skip", "all", "none")}
        latest = first + 60 * 60_000
        assert got["skip"] == [latest]
        assert got["all"] == [latest - i * 60_000 for i in range(4, -1, -1)]
        assert got["none"] == []
        for p in ("skip", "all", "none"):  # every schedule moved past the outage
            assert await _next(client.backend, f"c-{p}") == latest + 60_000
        # On time, "none" runs the tick.
        await _fire(client.backend, "c-none", latest + 60_000 + 100)
        assert len(await scheduled_runs(client.backend, schedule_id="c-none")) == 1


async def test_late_ticks_are_not_missed_ones(url: str) -> None:
    # A scan that comes late (a busy box, a scan interval as long as the
    # schedule's) finds several ticks due that are late, not missed (at most
    # MISSED_AFTER_MS): every policy runs them all. Only the older ones, past
    # that, are missed and follow the policy.
    async with Client.connect(url) as client:
        for policy in ("skip", "none"):
            await client.schedule("job", every=1, schedule_id=f"late-{policy}", catchup=policy)
            await client.schedule("job", every=1, schedule_id=f"gap-{policy}", catchup=policy)
        first = await _next(client.backend, "late-skip")
        for policy in ("skip", "none"):
            await _fire(client.backend, f"late-{policy}", first + 2_500)
            await _fire(client.backend, f"gap-{policy}", first + 8_010)

        async def ticks(sid: str) -> list[int]:
            return [t for _, t in await scheduled_runs(client.backend, schedule_id=sid)]

        late = [first + i * 1000 for i in range(3)]
        assert await ticks("late-skip") == late and await ticks("late-none") == late
        # first..first+3000 are more than 5 s late at first+8010: missed.
        on_time = [first + i * 1000 for i in range(4, 9)]
        assert await ticks("gap-skip") == [first + 3000, *on_time]
        assert await ticks("gap-none") == on_time
        assert (await client.schedule_handle("gap-skip").info()).skipped == 3
        assert (await client.schedule_handle("gap-none").info()).skipped == 4


async def test_overlap_skip_and_cancel_previous(url: str) -> None:
    async with Client.connect(url) as client:
        await client.schedule("job", every=10, schedule_id="o-skip", overlap="skip")
        await client.schedule("job", every=10, schedule_id="o-cancel",
                              overlap="cancel_previous")
        await client.schedule("job", every=10, schedule_id="o-buffer", overlap="buffer_one")
        first = await _next(client.backend, "o-skip")
        for sid in ("o-skip", "o-cancel", "o-buffer"):
            await _fire(client.backend, sid, first + 1)
            await _fire(client.backend, sid, first + 10_001)  # the first never ran
        assert len(await scheduled_runs(client.backend, schedule_id="o-skip")) == 1
        assert (await client.schedule_handle("o-skip").info()).skipped == 1
        cancelled = await scheduled_runs(client.backend, schedule_id="o-cancel")
        assert len(cancelled) == 2
        core = await client.backend.get_exec_core(cancelled[0][0])
        assert core is not None and core.lifecycle_phase == "terminal"
        # buffer_one keeps the tick until the previous run ends.
        buffered = await scheduled_runs(client.backend, schedule_id="o-buffer")
        assert len(buffered) == 1
        assert await _next(client.backend, "o-buffer") == first + 10_000
        await client.cancel(buffered[0][0])
        await _fire(client.backend, "o-buffer", first + 10_500)
        assert len(await scheduled_runs(client.backend, schedule_id="o-buffer")) == 2


async def test_a_paused_schedule_creates_nothing_and_resumes_from_now(url: str) -> None:
    async with Client.connect(url) as client:
        handle = await client.schedule("job", every=5, schedule_id="p")
        first = await _next(client.backend, "p")
        assert await handle.pause() == "active"
        tag = schedule_tag("p", client.backend.partitions)
        (due,) = await client.backend.read_many([["ZCARD", ScheduleKeys(tag).due]])
        assert due == 0  # the scanner does not even see it
        assert await _fire(client.backend, "p", first + 60_000) == 0
        assert await scheduled_runs(client.backend, schedule_id="p") == []
        assert await handle.next_runs(3) == []
        assert await handle.resume() == "paused"
        assert len(await handle.next_runs(3)) == 3
        run = await handle.trigger()
        assert (await scheduled_runs(client.backend, schedule_id="p"))[0][0] == run.id
        assert await handle.delete() is True
        with pytest.raises(ScheduleNotFound):
            await handle.info()
        assert await _sched_keys(client.backend) == []


async def test_bad_input_writes_nothing(url: str) -> None:
    async with Client.connect(url) as client:
        for bad in (dict(cron="61 * * * *"), dict(cron="* * * * *", tz="Mars/Olympus"),
                    dict(every=0.2), dict(every=5, overlap="sometimes"),
                    dict(every=5, catchup="maybe"), dict(every=5, schedule_id="a b"),
                    dict(every=5, cron="* * * * *"), dict(every=5, tz="UTC"),
                    dict(every=5, jitter=-1), dict(every=5, priority=10**12),
                    dict(every=5, tags={"k": 1})):
            with pytest.raises(InvalidInput):
                await client.schedule("job", **bad)
        assert await _sched_keys(client.backend) == []
        # The library refuses on its own too, before its first write.
        tag = schedule_tag("x", client.backend.partitions)
        bad_fields: list[dict[str, str | bytes]] = [
            {"task": "t", "lane": "l", "overlap": "never"},
            {"task": "t", "lane": "l", "catchup_limit": "0"},
            {"task": "t"}, {"task": "t", "lane": "l", "color": "red"}]
        for fields in bad_fields:
            with pytest.raises(ContractInvalidInput):
                await client.backend.call(ScheduleUpsert(
                    tag=tag, schedule_id="x", fields=fields, spec='{"every_ms":1000}',
                    next_tick=1, next_fire=1))
        assert await _sched_keys(client.backend) == []
        with pytest.raises(ScheduleNotFound):
            await client.schedule_handle("absent").pause()


async def test_update_in_place_keeps_state_and_replans(url: str) -> None:
    async with Client.connect(url) as client:
        handle = await client.schedule("job", every=60, schedule_id="u")
        before = await _next(client.backend, "u")
        await client.schedule("job", 2, every=60, schedule_id="u")  # new args, same plan
        assert await _next(client.backend, "u") == before
        await handle.pause()
        info = await handle.update(cron="0 9 * * MON-FRI", tz="Europe/Paris")
        assert info.state == "paused" and info.when.expr == "0 9 * * MON-FRI"  # type: ignore[union-attr]
        assert [s.id for s in await client.schedules()] == ["u"]
