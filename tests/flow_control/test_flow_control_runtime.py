"""Per-key flow control with an in-process worker on a real backend
(redis-server and memory://): concurrency limits and their strategies,
rate limits, debounce, and the blocking detail that says why work waits."""

from __future__ import annotations

import itertools
from collections import defaultdict

import anyio
import pytest
from limit_support import core, run_until, worker

from flowfabric_worker import Client, Debounce, Limit, Rate, TaskContext, task

pytestmark = pytest.mark.anyio

LANE = "fc-runtime"
RUNNING: dict[str, int] = defaultdict(int)
PEAK: dict[str, int] = defaultdict(int)
SEEN: list[tuple[str, int]] = []


@task(name="fc.limited", lane=LANE, concurrency=Limit(per="user", max=2))
async def limited(user: str, n: int, hold: float = 0.2) -> int:
    RUNNING[user] += 1
    PEAK[user] = max(PEAK[user], RUNNING[user])
    try:
        await anyio.sleep(hold)
    finally:
        RUNNING[user] -= 1
    return n


@task(name="fc.debounced", lane=LANE, debounce=Debounce(key="doc.id", period=1.5))
async def debounced(doc: dict[str, str], version: int) -> int:
    SEEN.append((doc["id"], version))
    return version


GATE: list[anyio.Event] = []


@task(name="fc.newest", lane=LANE,
      concurrency=Limit(per="k", max=1, strategy="cancel_newest"))
async def newest(k: str, wait: bool) -> str:
    if wait:
        await GATE[0].wait()
    return "done"


@task(name="fc.replace", lane=LANE,
      concurrency=Limit(per=lambda k, hold: k.upper(), max=1, strategy="cancel_in_progress"))
async def replace(ctx: TaskContext, k: str, hold: float) -> str:
    await anyio.sleep(hold)
    return "done"


@task(name="fc.rated", lane=LANE, rate=Rate(per="tenant", limit=1, period=2))
async def rated(tenant: str, n: int) -> int:
    return n


def _reset() -> None:
    RUNNING.clear()
    PEAK.clear()
    SEEN.clear()


async def _states(client: Client, ids: list[str]) -> list[str]:
    return [(await core(client.backend, eid)).get("public_state", "") for eid in ids]


async def test_concurrency_per_key_never_above_max(client: Client) -> None:
    _reset()
    runs_a = [await limited.submit(client, "a", n) for n in range(8)]
    runs_b = await client.submit_many(limited, [("b", n) for n in range(3)])
    ids = [r.id for r in runs_a + runs_b]
    details: set[str] = set()

    async def all_done() -> bool:
        for r in runs_a:
            c = await core(client.backend, r.id)
            if c.get("public_state") == "rate_limited":
                details.add(c["blocking_detail"])
        return all(s == "completed" for s in await _states(client, ids))

    await run_until(worker(client, [limited], LANE), all_done)
    assert PEAK["a"] == 2 and PEAK["b"] <= 2
    assert [await r.result(timeout=5) for r in runs_a] == list(range(8))
    # `inspect` / `ls` show this detail: which task, key and limit.
    assert any(d.startswith("flow control: fc.limited per user=a: concurrency 2 reached")
               for d in details), details


async def test_debounce_runs_once_with_the_last_arguments(client: Client) -> None:
    _reset()
    runs = [await debounced.submit(client, {"id": "d1"}, v) for v in range(20)]
    other = await debounced.submit(client, {"id": "d2"}, 7)
    assert len({r.id for r in runs}) == 1 and other.id != runs[0].id
    assert [r.duplicate for r in runs] == [False] + [True] * 19
    c = await core(client.backend, runs[0].id)
    assert c["public_state"] == "delayed"

    async def done() -> bool:
        return await _states(client, [runs[0].id, other.id]) == ["completed", "completed"]

    await run_until(worker(client, [debounced], LANE), done)
    assert await runs[-1].result(timeout=5) == 19
    assert sorted(SEEN) == [("d1", 19), ("d2", 7)]
    # After it ran, the next submission starts a new group.
    again = await debounced.submit(client, {"id": "d1"}, 20)
    assert again.id != runs[0].id and not again.duplicate


async def test_cancel_newest(client: Client) -> None:
    GATE[:] = [anyio.Event()]
    first = await newest.submit(client, "k", True)
    second_id: list[str] = []

    async def settled() -> bool:
        if not second_id and (await _states(client, [first.id])) == ["active"]:
            second_id.append((await newest.submit(client, "k", False)).id)
        if second_id and (await _states(client, second_id)) == ["cancelled"]:
            GATE[0].set()  # the first finishes only once the newest was refused
        return bool(second_id) and await _states(client, [first.id, second_id[0]]) == [
            "completed", "cancelled"]

    try:
        await run_until(worker(client, [newest], LANE), settled)
    except TimeoutError:
        for eid in [first.id, *second_id]:
            c = await core(client.backend, eid)
            print("DEBUG", eid, {k: c.get(k) for k in ("public_state", "blocking_detail",
                  "quota_policy_id", "eligibility_state", "cancellation_reason")})
        raise
    c = await core(client.backend, second_id[0])
    assert "newest cancelled" in c.get("cancellation_reason", "")


async def test_cancel_in_progress(client: Client) -> None:
    first = await replace.submit(client, "k", 30.0)
    second_id: list[str] = []

    async def settled() -> bool:
        if not second_id and (await _states(client, [first.id])) == ["active"]:
            second_id.append((await replace.submit(client, "k", 0.0)).id)
        return bool(second_id) and await _states(client, [first.id, second_id[0]]) == [
            "cancelled", "completed"]

    await run_until(worker(client, [replace], LANE, grace_period=0.2), settled)
    c = await core(client.backend, first.id)
    assert "fc.replace per <lambda>=K: replaced by a newer execution" in c.get(
        "cancellation_reason", "")


@pytest.mark.parametrize("url", ["redis"], indirect=True)
async def test_rate_per_key_queues_and_spaces_starts(client: Client) -> None:
    runs = [await rated.submit(client, "t", n) for n in range(3)]
    free = await rated.submit(client, "other", 9)
    details: set[str] = set()

    async def done() -> bool:
        for r in runs:
            c = await core(client.backend, r.id)
            if c.get("public_state") == "rate_limited":
                details.add(c["blocking_detail"])
        return all(s == "completed"
                   for s in await _states(client, [*(r.id for r in runs), free.id]))

    await run_until(worker(client, [rated], LANE), done)
    starts = sorted([int((await core(client.backend, r.id))["started_at"]) for r in runs])
    # One start per 2 s window per key (admission time; the claim follows it
    # within the same pass, hence the margin).
    assert all(b - a >= 1500 for a, b in itertools.pairwise(starts)), starts
    assert any("fc.rated per tenant=t: rate 1 per 2s reached" in d for d in details), details


HELD: list[anyio.Event] = []


@task(name="fc.held", lane=LANE, concurrency=Limit(per="k", max=1))
async def held(k: str) -> str:
    await HELD[0].wait()
    return "done"


async def test_failed_claim_keeps_the_slot_of_a_running_execution(client: Client) -> None:
    """Two workers race for one candidate: A admits it, B's admission answers
    ALREADY_ADMITTED and B wins the claim; A then gives back the admission of
    its failed claim. The slot is the running execution's: it must stay
    taken (it was released: 5 running under a cap of 2 with 3 processes)."""
    from flowfabric_worker.engine.admission import release_admissions

    HELD[:] = [anyio.Event()]
    run = await held.submit(client, "k")
    qid = (await core(client.backend, run.id))["quota_policy_id"]
    quota = client.quota(qid)

    async def released_by_a_racer() -> bool:
        if (await _states(client, [run.id])) != ["active"]:
            return False
        await release_admissions(client.backend, [(qid, run.id)])  # worker A's failed claim
        assert (await quota.info()).active == 1
        HELD[0].set()
        return True

    await run_until(worker(client, [held], LANE), released_by_a_racer)
    assert await run.result(timeout=10) == "done"
    assert (await quota.info()).active == 0  # the attempt's end released it
