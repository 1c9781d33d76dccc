"""Flows run by separate ``flowfabric-worker run`` processes on a real
redis-server: the completion cascade, joins and cancellation happen in the
workers' engine roles, never in the test process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
from process_support import stop_processes

from flowfabric_worker import Client
from flowfabric_worker.cli.parser import main
from flowfabric_worker.client.flow_graph import FlowNode, any_of, quorum
from flowfabric_worker.protocol.keys import DAG_COMPLETIONS, ExecKeys, PartitionKeys

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from flow_tasks import boom, fanout, first_attempt_hangs, naps, slow, step  # noqa: E402

pytestmark = pytest.mark.anyio


class Workers:
    """``flowfabric-worker run flow_tasks`` subprocesses, stopped with SIGTERM."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *extra: str) -> None:
        self._spawn("run", "flow_tasks", "--lease-ttl", "2", "--grace-period", "1", *extra)

    def scan(self, *extra: str) -> None:
        """A ``flowfabric-worker scan`` process (engine roles only)."""
        self._spawn("scan", *extra)

    def _spawn(self, *args: str) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), *sys.path]))
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "flowfabric_worker.cli", *args, "--url", self.url,
             "--scanner-interval-scale", "0.05", "--log-level", "WARNING"], env=env))

    def stop(self) -> None:
        stop_processes(self.procs)


@pytest.fixture
def workers(redis_url: str) -> Iterator[Workers]:
    w = Workers(redis_url)
    try:
        yield w
    finally:
        w.stop()


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Client]:
    async with Client.connect(redis_url) as c:
        yield c


async def times(client: Client, node: FlowNode[object]) -> tuple[int, int]:
    started, completed = await client.backend.redis.hmget(
        ExecKeys(node.id).core, ["started_at", "completed_at"])
    return int(started or 0), int(completed or 0)


async def test_diamond_across_two_worker_processes(client: Client, workers: Workers) -> None:
    workers.start()
    workers.start()
    flow = client.flow()
    a = flow.add(step, "a")
    b = flow.add(step, "b", after=[a])
    c = flow.add(step, "c", after=[a])
    d = flow.add(step, "d", after=[b, c])
    handle = await flow.submit()
    st = await handle.wait(timeout=60)
    assert st.state == "completed"
    (_, a_done), (b_start, b_done), (c_start, c_done), (d_start, _) = [
        await times(client, n) for n in (a, b, c, d)]
    assert b_start >= a_done and c_start >= a_done and d_start >= max(b_done, c_done)
    assert await handle.run(d).result() == "d"


async def test_scan_process_runs_the_engine_roles(client: Client, workers: Workers) -> None:
    # Workers without scanners: dispatch comes from the `scan` process alone.
    workers.start("--no-scanners")
    workers.scan()
    with anyio.fail_after(30):  # its completion subscriber is up
        while not (await client.backend.redis.pubsub_numsub(DAG_COMPLETIONS))[0][1]:  # noqa: ASYNC110
            await anyio.sleep(0.05)
    flow = client.flow()
    a = flow.add(step, "a")
    b = flow.add(boom, "b", after=[a])
    c = flow.add(step, "c", after=[b])
    handle = await flow.submit()
    st = await handle.wait(timeout=60)
    assert [st.members[n.id] for n in (a, b, c)] == ["completed", "failed", "skipped"]
    assert await client.backend.redis.keys("ffw:dagclaim:*")  # the push path ran


async def test_failure_skip_cascades_two_levels(client: Client, workers: Workers) -> None:
    workers.start()
    flow = client.flow()
    a = flow.add(boom, "a")
    b = flow.add(step, "b", after=[a])
    c = flow.add(step, "c", after=[b])
    handle = await flow.submit()
    st = await handle.wait(timeout=60)
    assert st.state == "failed"
    assert [st.members[n.id] for n in (a, b, c)] == ["failed", "skipped", "skipped"]


async def test_any_of_cancel_remaining_and_quorum(client: Client, workers: Workers) -> None:
    workers.start()
    workers.start()
    flow = client.flow()
    fast, lag = flow.add(step, "fast"), flow.add(slow, 60.0)
    first = flow.add(step, "first", after=[fast, lag], join=any_of(cancel_remaining=True))
    ok1, ok2, bad = flow.add(step, "1"), flow.add(step, "2"), flow.add(boom, "3")
    two = flow.add(step, "two", after=[ok1, ok2, bad], join=quorum(2))
    three = flow.add(step, "three", after=[ok1, ok2, bad], join=quorum(3))
    handle = await flow.submit()
    st = await handle.wait(timeout=60)
    assert st.members[first.id] == "completed" and st.members[lag.id] == "cancelled"
    assert st.members[two.id] == "completed" and st.members[three.id] == "skipped"
    reason = await client.backend.redis.hget(ExecKeys(lag.id).core, "cancellation_reason")
    assert reason == b"sibling_quorum_satisfied"


async def test_cli_cancel_all_then_inspect(
    client: Client, workers: Workers, capsys: pytest.CaptureFixture[str]
) -> None:
    workers.start()
    flow = client.flow()
    running = flow.add(slow, 60.0, name="running")
    waiting = flow.add(step, "never", after=[running], name="waiting")
    handle = await flow.submit()
    with anyio.fail_after(30):
        while (await handle.state()).members[running.id] != "active":  # noqa: ASYNC110
            await anyio.sleep(0.05)
    url = workers.url
    code = await anyio.to_thread.run_sync(lambda: main(
        ["flow", "cancel", handle.id, "--policy", "cancel_all", "--reason", "stop", "--url", url]))
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["policy"] == "cancel_all" and sorted(out["cancelled"]) == sorted(
        [running.id, waiting.id])
    st = await handle.wait(timeout=10)
    assert st.state == "cancelled" and set(st.members.values()) == {"cancelled"}
    assert await anyio.to_thread.run_sync(
        lambda: main(["inspect", handle.id, "--json", "--url", url])) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["state"] == "cancelled" and shown["cancel_reason"] == "stop"
    assert {m["name"]: m["state"] for m in shown["members"]} == {
        "running": "cancelled", "waiting": "cancelled"}
    assert [(e["upstream"], e["downstream"]) for e in shown["edges"]] == [
        (running.id, waiting.id)]
    assert await anyio.to_thread.run_sync(
        lambda: main(["inspect", waiting.id, "--json", "--url", url])) == 0
    member = json.loads(capsys.readouterr().out)
    assert member["flow"] == handle.id and member["state"] == "cancelled"


async def test_reconciler_alone_drives_a_flow(client: Client, workers: Workers) -> None:
    # No push dispatch anywhere: every hop is found by the dependency reconciler.
    workers.start("--disable-scanner", "completion_dispatch")
    flow = client.flow()
    a = flow.add(step, "a")
    b = flow.add(step, "b", after=[a])
    bad = flow.add(boom, "x", after=[b])
    skipped = flow.add(step, "y", after=[bad])
    handle = await flow.submit()
    st = await handle.wait(timeout=60)
    assert [st.members[n.id] for n in (a, b, bad, skipped)] == [
        "completed", "completed", "failed", "skipped"]
    assert await client.backend.redis.keys("ffw:dagclaim:*") == []  # no cascade ran


async def _children_created(client: Client, parent: str, kind: str) -> list[str]:
    """Every execution of ``kind`` on the parent's partition, flow member or not."""
    pk = PartitionKeys(parent[: parent.index("}") + 1])
    eids = sorted(m.decode() for m in await client.backend.redis.smembers(pk.all_executions))
    kinds = await client.backend.exec_fields(eids, ["execution_kind"])
    return [e for e, (k,) in zip(eids, kinds, strict=True) if k == kind]


async def test_fanout_of_100_children_with_one_slot(client: Client, workers: Workers) -> None:
    workers.start("--concurrency", "1")
    run = await fanout.submit(client, 100)
    assert await run.result(timeout=120) == sum(i * i for i in range(100))
    assert len(await _children_created(client, run.id, "flows.square")) == 100


async def test_kill_9_while_the_parent_waits(client: Client, workers: Workers) -> None:
    workers.start("--concurrency", "1")
    run = await naps.submit(client, 12)
    with anyio.fail_after(30):
        while (await run.state()) != "waiting_children":  # noqa: ASYNC110
            await anyio.sleep(0.02)
    workers.procs[0].send_signal(signal.SIGKILL)
    workers.procs[0].wait()
    workers.start("--concurrency", "1")
    assert await run.result(timeout=60) == list(range(12))
    children = await _children_created(client, run.id, "flows.nap")
    assert len(children) == 12  # none created twice
    parent_flow = (await run.info()).flow_id
    assert parent_flow is not None
    members = await client.flow_handle(parent_flow).member_ids()
    assert sorted(children) == sorted(m for m in members if m != run.id)


async def test_kill_9_mid_member_is_reclaimed(client: Client, workers: Workers) -> None:
    # Members live on the flow's partition, not on their lane's: reclaim must
    # find them there.
    workers.start()
    flow = client.flow()
    a = flow.add(first_attempt_hangs, "a")
    b = flow.add(step, "b", after=[a])
    handle = await flow.submit()
    with anyio.fail_after(30):
        while (await handle.state()).members[a.id] != "active":  # noqa: ASYNC110
            await anyio.sleep(0.02)
    workers.procs[0].send_signal(signal.SIGKILL)
    workers.procs[0].wait()
    workers.start()
    st = await handle.wait(timeout=60)
    assert st.state == "completed" and st.members[b.id] == "completed"
    assert (await client.backend.exec_fields([a.id], ["lease_reclaim_count"])) == [["1"]]


async def test_kill_9_while_the_parent_spawns(client: Client, workers: Workers) -> None:
    # Killed part-way through spawning: the next attempt replays the journaled
    # spawns and re-creates an unjournaled one under the same derived id.
    workers.start("--concurrency", "1")
    run = await fanout.submit(client, 150)
    with anyio.fail_after(30):
        while True:
            flow_id = (await run.info()).flow_id
            if flow_id and len(await client.flow_handle(flow_id).member_ids()) > 10:
                break
            await anyio.sleep(0.005)
    workers.procs[0].send_signal(signal.SIGKILL)
    workers.procs[0].wait()
    spawned_before_restart = len(await client.flow_handle(flow_id).member_ids()) - 1
    workers.start("--concurrency", "1")
    assert await run.result(timeout=120) == sum(i * i for i in range(150))
    assert len(await _children_created(client, run.id, "flows.square")) == 150
    assert 10 <= spawned_before_restart <= 150
