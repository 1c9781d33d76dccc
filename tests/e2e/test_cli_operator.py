"""The operator commands as a user runs them: ``ls``, ``cancel``, ``retry``,
``submit --wait`` / ``--module``, ``inspect`` for people, ``--version``, and
``memory://`` refused — each a real subprocess against a real redis-server,
with a real worker process where something must run."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis
from process_support import stop_processes

from flowfabric_worker.authoring.decorators import task
from flowfabric_worker.client.client import Client
from flowfabric_worker.protocol.keys import ExecKeys

TASKS = '''
import os
from pathlib import Path

from flowfabric_worker import Permanent, TaskContext, task

MARKS = Path(os.environ["OPS_MARKS"])


@task(name="ops.ok", lane="ops")
async def ok(n: int) -> dict:
    return {"double": 2 * n}


@task(name="ops.flaky", lane="ops")
async def flaky(n: int) -> int:
    """Fails its first run (no retry policy), succeeds once replayed."""
    mark = MARKS / f"flaky-{n}"
    if not mark.exists():
        mark.write_text("ran")
        raise ValueError(f"first run of {n} fails")
    return n


@task(name="ops.perm", lane="ops")
async def perm() -> int:
    raise Permanent("nothing to charge")


@task(name="ops.approve", lane="ops")
async def approve(ctx: TaskContext, doc: str) -> str:
    await ctx.progress(40, "waiting for a reviewer")
    got = await ctx.wait_for_signal("approve", timeout=3600)
    return f"{doc} approved by {got.source_identity}"


@task(name="ops.frozen", lane="ops")
async def frozen() -> int:
    import gc

    return gc.get_freeze_count()


@task(name="ops.hold", lane="ops")
async def hold(seconds: float) -> str:
    import anyio

    await anyio.sleep(seconds)
    return "held"
'''


def cli(*args: str, url: str | None, cwd: Path | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    tail = ["--url", url] if url is not None else []
    return subprocess.run(
        [sys.executable, "-m", "flowfabric_worker", *args, *tail],
        capture_output=True, text=True, timeout=120, cwd=cwd, env=env or dict(os.environ),
    )


@pytest.fixture
def app(tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "ops_tasks.py").write_text(TASKS)
    marks = tmp_path / "marks"
    marks.mkdir()
    env = dict(os.environ, OPS_MARKS=str(marks),
               PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path]))
    return {"dir": tmp_path, "env": env}


@pytest.fixture
def worker(redis_url: str, app: dict[str, Any]) -> Iterator[subprocess.Popen[bytes]]:
    r = redis.Redis.from_url(redis_url)
    r.delete("ff:idx:default:workers")  # the registry of workers from earlier tests
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowfabric_worker", "run", "ops_tasks", "--url", redis_url,
         "--lease-ttl", "5", "--log-level", "WARNING",
         # a test may leave ops.hold running: its drain need not wait 15 s
         "--grace-period", "1"], cwd=app["dir"], env=app["env"])
    try:
        for _ in range(600):  # registered: the worker index names it (up to ~60 s)
            if r.scard("ff:idx:default:workers"):
                break
            time.sleep(0.1)  # another process: nothing to wait on but the registry
        else:
            raise AssertionError("worker never registered")
        yield proc
    finally:
        stop_processes([proc])
        r.close()


def _json(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _wait_state(url: str, eid: str, *states: str) -> None:
    """Wait (up to ~60 s) for ``eid`` to reach one of ``states``, read from
    the server: a CLI process per look cost ~0.7 s of start-up each, and
    what ``inspect`` shows is checked by the tests themselves."""
    r = redis.Redis.from_url(url)
    try:
        for _ in range(1200):
            state = r.hget(ExecKeys(eid).core, "public_state")
            if state is not None and state.decode() in states:
                return
            time.sleep(0.05)  # another process: nothing to wait on but the record
        raise AssertionError(f"{eid} never reached {states}: {state!r}")
    finally:
        r.close()


def _clis(*argvs: list[str], url: str) -> list[subprocess.CompletedProcess[str]]:
    """Independent read-only commands, run side by side (each is mostly
    interpreter start-up)."""
    with ThreadPoolExecutor(max_workers=len(argvs)) as pool:
        return list(pool.map(lambda argv: cli(*argv, url=url), argvs))


def test_submit_wait_exit_codes_and_module_options(
        redis_url: str, app: dict[str, Any], worker: subprocess.Popen[bytes]) -> None:
    d, env = app["dir"], app["env"]
    done = cli("submit", "ops.ok", "--module", "ops_tasks", "--json", "[21]", "--wait",
               url=redis_url, cwd=d, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"double": 42}
    assert "no live worker" not in done.stderr  # the worker serves lane ops
    eid = done.stderr.split("submitted ", 1)[1].split()[0]
    # --module gave the task's declared lane, not "default".
    assert _json(cli("inspect", eid, "--json", url=redis_url))["lane"] == "ops"

    # The run command froze its start-up objects out of the collector.
    frozen = cli("submit", "ops.frozen", "--module", "ops_tasks", "--wait",
                 url=redis_url, cwd=d, env=env)
    assert frozen.returncode == 0, frozen.stderr
    assert json.loads(frozen.stdout) > 1000

    failed = cli("submit", "ops.perm", "--module", "ops_tasks", "--wait",
                 url=redis_url, cwd=d, env=env)
    assert failed.returncode == 1, failed.stderr
    assert "TaskFailed" in failed.stderr and "nothing to charge" in failed.stderr
    assert failed.stdout == ""

    # The bare function name is enough after --module when it is unambiguous.
    short = cli("submit", "ok", "--module", "ops_tasks", "--json", "[2]", "--wait",
                url=redis_url, cwd=d, env=env)
    assert short.returncode == 0, short.stderr
    assert json.loads(short.stdout) == {"double": 4}

    missing = cli("submit", "ops.nope", "--module", "ops_tasks", url=redis_url, cwd=d, env=env)
    assert missing.returncode == 2 and "no task named 'ops.nope'" in missing.stderr

    # By name, with no worker on the lane: a warning, then a wait that times out.
    lonely = cli("submit", "ops.ok", "--lane", "nobody", "--json", '{"args": [1]}', "--wait",
                 "--wait-timeout", "0.5", url=redis_url)
    assert lonely.returncode == 124, lonely.stderr
    assert "warning: no live worker serves lane 'nobody'" in lonely.stderr


@pytest.mark.parametrize("bad", ['{"args": 5}', "5", '{"a": 1}', '{"args": [], "kw": {}}',
                                 '{"kwargs": [1]}', "{nope"])
def test_submit_json_shape_is_one_line_and_writes_nothing(redis_url: str, bad: str) -> None:
    r = redis.Redis.from_url(redis_url)
    before = r.dbsize()
    out = cli("submit", "ops.ok", "--json", bad, url=redis_url)
    assert out.returncode == 2
    assert out.stderr.startswith("error: --json ") and out.stderr.count("\n") == 1, out.stderr
    assert r.dbsize() == before
    r.close()


@pytest.mark.parametrize("argv", [
    ["submit", "ops.ok"], ["ls"], ["inspect", "{fp:1}:6f1c2d3e-0000-4000-8000-000000000000"],
    ["signal", "{fp:1}:6f1c2d3e-0000-4000-8000-000000000000", "go"],
    ["cancel", "{fp:1}:6f1c2d3e-0000-4000-8000-000000000000"],
    ["retry", "{fp:1}:6f1c2d3e-0000-4000-8000-000000000000"],
    ["tail", "{fp:1}:6f1c2d3e-0000-4000-8000-000000000000"],
])
def test_memory_url_is_refused(argv: list[str]) -> None:
    out = cli(*argv, url="memory://")
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "memory://" in out.stderr
    assert "dies with it" in out.stderr and out.stdout == ""


def test_ls_lists_every_state_newest_first(
        redis_url: str, app: dict[str, Any], worker: subprocess.Popen[bytes]) -> None:
    d, env = app["dir"], app["env"]

    def submit(*args: str) -> str:
        out = cli("submit", *args, url=redis_url, cwd=d, env=env)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    completed = submit("ops.ok", "--module", "ops_tasks", "--json", "[1]")
    failed = submit("ops.perm", "--module", "ops_tasks")
    suspended = submit("ops.approve", "--module", "ops_tasks", "--json", '["doc"]')
    active = submit("ops.hold", "--module", "ops_tasks", "--json", "[120]")
    waiting = submit("ops.ok", "--lane", "idle", "--json", "[2]")
    cancelled = submit("ops.ok", "--lane", "idle", "--json", "[3]")
    assert cli("cancel", cancelled, "--reason", "not needed", url=redis_url).returncode == 0
    _wait_state(redis_url, completed, "completed")
    _wait_state(redis_url, failed, "failed")
    _wait_state(redis_url, suspended, "suspended")
    _wait_state(redis_url, active, "active")

    rows = _json(cli("ls", "--json", url=redis_url))
    states = {r["id"]: r["state"] for r in rows}
    assert states == {completed: "completed", failed: "failed", suspended: "suspended",
                      active: "active", waiting: "waiting", cancelled: "cancelled"}
    order = [completed, failed, suspended, active, waiting, cancelled]
    assert [r["id"] for r in rows] == order[::-1]  # newest first
    assert next(r for r in rows if r["id"] == suspended)["progress_pct"] == "40"

    by_state = [("failed", failed), ("active", active), ("waiting", waiting),
                ("suspended", suspended)]
    *states_out, lane_out, task_out, text = _clis(
        *[["ls", "--state", state, "--json"] for state, _ in by_state],
        ["ls", "--lane", "idle", "--json"], ["ls", "--task", "ops.ok", "--limit", "2", "--json"],
        ["ls"], url=redis_url)
    for (_, eid), out in zip(by_state, states_out, strict=True):
        assert [r["id"] for r in _json(out)] == [eid]
    assert [r["id"] for r in _json(lane_out)] == [cancelled, waiting]
    assert [r["id"] for r in _json(task_out)] == [cancelled, waiting]

    assert text.returncode == 0, text.stderr
    head, *lines = text.stdout.splitlines()
    assert head.split() == ["ID", "TASK", "LANE", "STATE", "ATTEMPT", "AGE", "PROGRESS"]
    assert len(lines) == 6 and lines[0].startswith(cancelled)
    assert "40% waiting for a reviewer" in text.stdout

    # Suspended: inspect names the signal it waits for; cancel ends it.
    shown = cli("inspect", suspended, url=redis_url)
    assert shown.returncode == 0, shown.stderr
    assert "signal approve on waitpoint" in shown.stdout and "then fail" in shown.stdout
    assert cli("cancel", suspended, url=redis_url).stdout.startswith(
        f"cancelled {suspended} (was suspended)")
    again = cli("cancel", suspended, url=redis_url)
    assert again.returncode == 2 and again.stderr == (
        f"error: execution {suspended} already cancelled: nothing to cancel\n")


def test_retry_replays_a_failure_and_inspect_drops_the_stale_reason(
        redis_url: str, app: dict[str, Any], worker: subprocess.Popen[bytes]) -> None:
    d, env = app["dir"], app["env"]
    out = cli("submit", "ops.flaky", "--module", "ops_tasks", "--json", "[7]", "--wait",
              url=redis_url, cwd=d, env=env)
    assert out.returncode == 1 and "first run of 7 fails" in out.stderr
    eid = out.stderr.split("submitted ", 1)[1].split()[0]

    shown = cli("inspect", eid, url=redis_url)
    assert shown.returncode == 0, shown.stderr
    assert "failed (handler_error)" in shown.stdout
    assert "ValueError: first run of 7 fails  (--traceback for more)" in shown.stdout
    assert "raise ValueError" not in shown.stdout  # the traceback only when asked
    assert "duration" in shown.stdout and "ago)" in shown.stdout
    full = cli("inspect", eid, "--traceback", url=redis_url)
    assert 'raise ValueError(f"first run of {n} fails")' in full.stdout
    doc = _json(cli("inspect", eid, "--json", url=redis_url))
    assert doc["category"] == "handler_error" and "raise ValueError" in doc["reason"]

    again = cli("retry", eid, url=redis_url)
    assert again.returncode == 0 and again.stdout.startswith(f"retrying {eid} (was failed)")
    _wait_state(redis_url, eid, "completed")
    doc = _json(cli("inspect", eid, "--json", url=redis_url))
    assert doc["result"] == 7 and doc["replays"] == 1 and doc["attempt"]["type"] == "replay"
    assert "reason" not in doc and "category" not in doc  # replay kept failure_reason
    text = cli("inspect", eid, url=redis_url).stdout
    assert "first run" not in text and "reason" not in text and "result     7" in text

    refused = cli("retry", eid, url=redis_url)
    assert refused.returncode == 2 and "completed; submit it again" in refused.stderr
    unknown = cli("retry", "{fp:1}:6f1c2d3e-0000-4000-8000-000000000000", url=redis_url)
    assert unknown.returncode == 2 and "does not exist" in unknown.stderr


@task(name="ops.node", lane="opsflow")
async def node(label: str) -> str:
    return label


@pytest.mark.anyio
async def test_inspect_flow_members_in_creation_order_and_a_tree(redis_url: str) -> None:
    async with Client.connect(redis_url) as client:
        flow = client.flow()
        root = flow.add(node, "root", name="zz-root")
        left = flow.add(node, "left", after=[root], name="left")
        right = flow.add(node, "right", after=[root], name="right")
        flow.add(node, "merge", after=[left, right], name="merge")
        handle = await flow.submit()
    out = await anyio.to_thread.run_sync(lambda: cli("inspect", handle.id, url=redis_url))
    assert out.returncode == 0, out.stderr
    names = [line.split()[0] for line in out.stdout.split("members, in creation order:")[1]
             .split("tree:")[0].strip().splitlines()[1:]]
    # Creation order, not by id or name: left and right may share a ms (then
    # either order), but the root is first and merge last.
    assert names[0] == "zz-root" and names[3] == "merge" and set(names[1:3]) == {"left", "right"}
    doc = await anyio.to_thread.run_sync(
        lambda: _json(cli("inspect", handle.id, "--json", url=redis_url)))
    assert [m["name"] for m in doc["members"]] == names
    assert [m["created_at"] for m in doc["members"]] == sorted(
        m["created_at"] for m in doc["members"])
    first, second = names[1:3]
    tree = out.stdout.split("tree:\n", 1)[1].splitlines()
    assert [t.strip() for t in tree] == [
        "zz-root [waiting]", f"├─ {first} [waiting_children]", "│  └─ merge [waiting_children]",
        f"└─ {second} [waiting_children]", "└─ merge [waiting_children] (see above)"]
    rows = await anyio.to_thread.run_sync(
        lambda: _json(cli("ls", "--flow", handle.id, "--json", url=redis_url)))
    assert len(rows) == 4 and {r["flow_id"] for r in rows} == {handle.id}


def test_version_and_python_m() -> None:
    from importlib.metadata import version

    for argv in (["-m", "flowfabric_worker"], ["-m", "flowfabric_worker.cli"]):
        out = subprocess.run([sys.executable, *argv, "--version"], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0 and out.stdout.strip() == (
            f"flowfabric-worker {version('flowfabric-worker')}")


def test_every_flag_has_help() -> None:
    from flowfabric_worker.cli.parser import build_parser

    missing: list[str] = []

    def walk(p: argparse.ArgumentParser, path: str) -> None:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            elif action.help != argparse.SUPPRESS and not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")

    walk(build_parser(), "flowfabric-worker")
    assert missing == []
