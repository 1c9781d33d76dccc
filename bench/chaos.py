"""Fault-injection run: worker crashes, stalls and Redis restarts under load.

Starts a private redis-server (``appendonly yes``, ``appendfsync always``: a
restart loses nothing Redis acknowledged), ``--workers`` worker processes
(``flowfabric-worker run bench.chaos_tasks`` with a short lease), submits
executions through the public :class:`Client` and injects one fault per
round:

``kill``
    ``kill -9`` of a random worker; a replacement starts at once.
``stop``
    ``SIGSTOP`` of a random worker for longer than the lease, then ``SIGCONT``.
``redis`` / ``redis-kill`` / ``redis-shutdown``
    ``kill -9`` of redis-server (``redis-kill``), or ``SHUTDOWN``
    (``redis-shutdown``), then a restart on the same port and AOF directory
    after ``--redis-down-ms``; plain ``redis`` alternates the two, starting
    with ``kill -9``.

Kinds cycle in the order given, so ``--faults kill,kill,stop,kill,redis``
gives exactly that mix per five rounds.

Every task body writes ``start`` / ``end`` lines to a ledger outside Redis
(``bench/chaos_tasks.py``). At the end the run waits (bounded) for every
execution to finish and checks each one against Redis records read by the
spec's key schema (01 §3.1, §4.2), not through the SDK: *lost*, *doubly
completed*, *stuck*, *re-executed*, and the recovery time of each fault.

``--guarded`` runs the guarded variants instead: each body calls
``ctx.ensure_lease()`` right before writing an ``effect`` line (its side
effect), and the run counts the guarded effects of each execution. A repeat
is explained when the earlier effect was written by an attempt that then
never completed, *before* the fault that took its lease (``kill -9``, a
``SIGSTOP``, a Redis outage): no fence can undo an effect already made. Any
other repeat, above all an effect written by a stopped worker after it woke
for an attempt it held before the stop, is a fence violation and fails the
run. See bench/README.md, "Fault runs".

    .venv/bin/python bench/chaos.py --rounds 100 --faults kill --workers 3 --executions 2000
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aredis

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from bench.chaos_tasks import guarded, guarded_sync, work, work_sync  # noqa: E402
from flowfabric_worker import Client, TaskDefinition  # noqa: E402

FAULT_KINDS = ("kill", "stop", "redis", "redis-kill", "redis-shutdown")
TERMINAL = "terminal"


# --- configuration -----------------------------------------------------------


@dataclass
class Config:
    rounds: int = 10
    workers: int = 3
    executions: int = 500
    faults: list[str] = field(default_factory=lambda: ["kill", "stop", "redis"])
    lease_ms: int = 2000
    seed: int = 1
    concurrency: int = 8
    task_ms: tuple[int, int] = (200, 1500)
    sync_share: float = 0.25
    scanner_scale: float = 0.2
    stop_ms: int = 0              # 0: 2.5 x lease
    redis_down_ms: int = 2000
    submit_spread: float = 1.0    # seconds over which a round's executions are submitted
    round_timeout: float = 60.0   # a round waits this long for its executions to finish
    settle: float = 180.0         # after the last round, wait this long for everything
    submit_deadline: float = 60.0  # one submit is retried (same idempotency key) this long
    guarded: bool = False         # bodies guard a side effect with ctx.ensure_lease()
    no_fence: bool = False        # negative control: guarded bodies skip ensure_lease()
    json: bool = False
    worker_exe: str | None = None
    json_out: str | None = None
    workdir: str | None = None
    keep: bool = False

    @property
    def stop_s(self) -> float:
        return (self.stop_ms or int(self.lease_ms * 2.5)) / 1000


def parse_args(argv: Sequence[str] | None = None) -> Config:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=10, help="fault rounds (default 10)")
    p.add_argument("--workers", type=int, default=3, help="worker processes (default 3)")
    p.add_argument("--executions", type=int, default=500,
                   help="executions submitted in all, spread over the rounds (default 500)")
    p.add_argument("--faults", default="kill,stop,redis",
                   help="comma-separated kinds cycled over the rounds: "
                        f"{', '.join(FAULT_KINDS)} (default kill,stop,redis)")
    p.add_argument("--lease-ms", type=int, default=2000, help="worker lease TTL (default 2000)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=8, help="per worker (default 8)")
    p.add_argument("--task-ms", default="200,1500",
                   help="MIN,MAX body duration in ms, uniform (default 200,1500)")
    p.add_argument("--sync-share", type=float, default=0.25,
                   help="share of executions with a sync body (default 0.25)")
    p.add_argument("--scanner-scale", type=float, default=0.2,
                   help="worker --scanner-interval-scale (default 0.2: lease scan every 0.3 s)")
    p.add_argument("--stop-ms", type=int, default=0,
                   help="SIGSTOP duration (default 2.5 x lease)")
    p.add_argument("--redis-down-ms", type=int, default=2000,
                   help="Redis downtime before the restart (default 2000)")
    p.add_argument("--round-timeout", type=float, default=60.0,
                   help="seconds a round waits for its executions before the next fault")
    p.add_argument("--settle", type=float, default=180.0,
                   help="seconds to wait after the last round for every execution to end")
    p.add_argument("--guarded", action="store_true",
                   help="run the guarded bodies (ensure_lease() before an effect line) "
                        "and count repeated guarded effects")
    p.add_argument("--no-fence", action="store_true",
                   help="with --guarded: the bodies skip ensure_lease() (a negative control: "
                        "the run must then report violations after stop faults)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--json-out", help="also write the JSON summary to this file")
    p.add_argument("--worker-exe", help="the flowfabric-worker CLI to start workers with "
                   "(default: the one beside this Python)")
    p.add_argument("--workdir", help="keep Redis' AOF, worker logs and ledgers here")
    p.add_argument("--keep", action="store_true", help="do not delete the temporary workdir")
    a = p.parse_args(argv)
    faults = [f.strip() for f in a.faults.split(",") if f.strip()]
    bad = sorted(set(faults) - set(FAULT_KINDS))
    if bad or not faults:
        p.error(f"unknown fault kind(s) {bad}; choose from {', '.join(FAULT_KINDS)}")
    lo, _, hi = a.task_ms.partition(",")
    task_ms = (int(lo), int(hi or lo))
    if a.rounds < 1 or a.workers < 1 or a.executions < a.rounds:
        p.error("need rounds >= 1, workers >= 1 and executions >= rounds")
    if "stop" in faults and a.workers < 2:
        p.error("stop needs --workers >= 2 (someone must reclaim)")
    return Config(rounds=a.rounds, workers=a.workers, executions=a.executions, faults=faults,
                  lease_ms=a.lease_ms, seed=a.seed, concurrency=a.concurrency, task_ms=task_ms,
                  sync_share=a.sync_share, scanner_scale=a.scanner_scale, stop_ms=a.stop_ms,
                  redis_down_ms=a.redis_down_ms, round_timeout=a.round_timeout,
                  settle=a.settle, guarded=a.guarded or a.no_fence,
                  no_fence=a.no_fence, json=a.json, worker_exe=a.worker_exe,
                  json_out=a.json_out, workdir=a.workdir, keep=a.keep)


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


# --- keys (spec 01 §3.1) -----------------------------------------------------


def _tag(eid: str) -> str:
    return eid[: eid.index("}") + 1]


def core_key(eid: str) -> str:
    return f"ff:exec:{_tag(eid)}:{eid}:core"


def attempts_key(eid: str) -> str:
    return f"ff:exec:{_tag(eid)}:{eid}:attempts"


def history_key(eid: str) -> str:
    return f"ff:exec:{_tag(eid)}:{eid}:lease:history"


def attempt_key(eid: str, index: int) -> str:
    return f"ff:attempt:{_tag(eid)}:{eid}:{index}"


# --- processes ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL this child when the run dies (Linux PR_SET_PDEATHSIG),
    so a killed run leaves no worker or redis-server behind."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


def _killpg(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _reap(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait for ``proc``; SIGKILL its group after ``timeout``. True if it ended in time."""
    try:
        proc.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        _killpg(proc, signal.SIGCONT)
        _killpg(proc, signal.SIGKILL)
        proc.wait(timeout=10)
        return False


class RedisServer:
    """A private redis-server that can be killed and restarted on the same
    port and AOF directory."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server") or shutil.which("valkey-server")
        if binary is None:
            raise SystemExit("redis-server not found")
        self.binary = binary
        self.dir = workdir / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = open(workdir / "redis.log", "ab")  # closed in close()

    def start(self, timeout: float = 30.0) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
             "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--dir", str(self.dir), "--logfile", ""],
            stdout=self.log, stderr=self.log, start_new_session=True,
            preexec_fn=_die_with_parent)
        client = redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start (see {self.log.name})")
                time.sleep(0.02)
        finally:
            client.close()

    def kill9(self) -> None:
        assert self.proc is not None
        _killpg(self.proc, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def shutdown(self) -> None:
        assert self.proc is not None
        # On a bare socket: redis-py would retry the command (and reconnect)
        # when the server closes the connection, as SHUTDOWN does.
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
                sock.sendall(b"SHUTDOWN\r\n")
                reply = sock.recv(512)  # b"" once the server exits; an error otherwise
            if reply:
                log(f"SHUTDOWN refused ({reply!r}); killing")
                _killpg(self.proc, signal.SIGKILL)
        except OSError:
            pass
        if not _reap(self.proc, 15):
            log("redis-server ignored SHUTDOWN for 15 s; killed")

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.shutdown()
        self.log.close()


@dataclass
class WorkerProc:
    slot: int
    worker_id: str
    proc: subprocess.Popen[bytes]
    started: float
    stopped: bool = False


class Workers:
    """The worker processes, one per slot; each in its own process group."""

    def __init__(self, cfg: Config, url: str, workdir: Path) -> None:
        self.cfg = cfg
        self.url = url
        self.ledger_dir = workdir / "ledger"
        self.log_dir = workdir / "logs"
        self.ledger_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        exe = Path(sys.executable).parent / "flowfabric-worker"
        found = cfg.worker_exe or (str(exe) if exe.exists() else shutil.which("flowfabric-worker"))
        if found is None:
            raise SystemExit("flowfabric-worker not found (pip install -e .)")
        self.exe = found
        self.slots: dict[int, WorkerProc] = {}
        self.generation = 0
        self.unexpected_exits: list[dict[str, Any]] = []
        self.quick_exits: Counter[int] = Counter()  # per slot, in a row
        self.shutdown_hangs: list[str] = []

    def start(self, slot: int) -> WorkerProc:
        self.generation += 1
        wid = f"chaos-s{slot}-g{self.generation}"
        path = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(ROOT)) if p)
        env = dict(os.environ, FFW_CHAOS_LEDGER_DIR=str(self.ledger_dir),
                   FLOWFABRIC_WORKER_ID=wid, PYTHONPATH=path)
        if self.cfg.no_fence:
            env["FFW_CHAOS_NO_FENCE"] = "1"
        with open(self.log_dir / f"{wid}.log", "ab") as out:
            proc = subprocess.Popen(
                [self.exe, "run", "bench.chaos_tasks", "--url", self.url,
                 "--concurrency", str(self.cfg.concurrency),
                 "--lease-ttl", str(self.cfg.lease_ms / 1000),
                 "--scanner-interval-scale", str(self.cfg.scanner_scale),
                 "--grace-period", "5", "--log-level", "INFO"],
                cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                start_new_session=True, preexec_fn=_die_with_parent)
        w = WorkerProc(slot, wid, proc, time.time())
        self.slots[slot] = w
        return w

    def live(self) -> list[WorkerProc]:
        return [w for w in self.slots.values() if w.proc.poll() is None and not w.stopped]

    def check_exits(self) -> None:
        """Replace a worker that exited on its own (a finding, not a fault)."""
        for slot, w in list(self.slots.items()):
            code = w.proc.poll()
            if code is None:
                continue
            tail = (self.log_dir / f"{w.worker_id}.log").read_text(errors="replace")[-2000:]
            self.unexpected_exits.append({"worker": w.worker_id, "code": code,
                                          "t": time.time(), "log_tail": tail})
            log(f"worker {w.worker_id} exited by itself (code {code}); replacing it")
            self.quick_exits[slot] = self.quick_exits[slot] + 1 if (
                time.time() - w.started < 5) else 0
            if self.quick_exits[slot] >= 3:
                raise RuntimeError(f"workers exit at start, three in a row; last log:\n{tail}")
            self.start(slot)

    def kill9(self, w: WorkerProc) -> None:
        _killpg(w.proc, signal.SIGKILL)
        w.proc.wait(timeout=10)

    def close(self) -> None:
        """SIGCONT + SIGTERM everyone (graceful drain), SIGKILL after 20 s."""
        ws = list(self.slots.values())
        for w in ws:
            _killpg(w.proc, signal.SIGCONT)
            w.stopped = False
            if w.proc.poll() is None:
                _killpg(w.proc, signal.SIGTERM)
        for w in ws:
            if not _reap(w.proc, 20):
                self.shutdown_hangs.append(w.worker_id)


# --- the run -----------------------------------------------------------------


@dataclass
class Planned:
    i: int
    round: int
    sync: bool
    ms: int
    key: str


@dataclass
class Acked:
    i: int
    round: int
    eid: str
    t_ack: float
    tries: int
    duplicate: bool


@dataclass
class Fault:
    round: int
    kind: str
    t: float
    victim: str = ""
    t_end: float = 0.0            # SIGCONT sent / Redis answering again
    in_flight_at_fault: int = 0   # executions not terminal when the fault hit
    outstanding_after: int = 0    # still not terminal when the round ended
    round_s: float = 0.0


class Run:
    def __init__(self, cfg: Config, workdir: Path) -> None:
        self.cfg = cfg
        self.workdir = workdir
        self.rng = random.Random(cfg.seed)
        self.run_id = uuid.uuid4().hex[:8]
        self.redis = RedisServer(workdir)
        self.workers: Workers | None = None
        self.client: Client | None = None
        self.reader: aredis.Redis | None = None
        self.acked: dict[str, Acked] = {}
        self.unacked: list[dict[str, Any]] = []
        self.submit_errors: Counter[str] = Counter()
        self.client_reopens = 0
        self._reopen_lock = asyncio.Lock()
        self.faults: list[Fault] = []
        self.terminal: set[str] = set()
        self.redis_kills = 0
        self.t0 = 0.0
        self.load_start: list[float] = []
        self.guarded_repeats: list[dict[str, Any]] = []

    # -- plumbing --

    def _task(self, sync: bool) -> TaskDefinition[Any, Any]:
        if self.cfg.guarded:
            return guarded_sync if sync else guarded
        return work_sync if sync else work

    async def _open_client(self) -> Client:
        return await Client.open(self.redis.url)

    async def _reopen_client(self, failing: Client | None) -> None:
        """Replace ``failing`` by a new client (once, however many submits saw it fail)."""
        async with self._reopen_lock:
            if self.client is not failing:
                return
            self.client = None
            if failing is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(failing.close(), 5)
            self.client_reopens += 1
            self.client = await self._open_client()

    async def _submit_one(self, plan: Planned) -> None:
        task = self._task(plan.sync)
        deadline = time.monotonic() + self.cfg.submit_deadline
        tries = 0
        failing_since: float | None = None
        while time.monotonic() < deadline:
            tries += 1
            client = self.client
            try:
                if client is None:
                    await self._reopen_client(None)
                    client = self.client
                assert client is not None
                run = await asyncio.wait_for(
                    task.submit(client, plan.i, plan.ms, idempotency_key=plan.key), 10)
            except Exception as exc:  # every failure is retried and counted
                self.submit_errors[type(exc).__name__] += 1
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since > 15 and client is not None and client is self.client:
                    # The shared client did not recover by itself: open a new one.
                    log(f"submits failing for 15 s ({type(exc).__name__}: {exc}); "
                        "reopening the client")
                    failing_since = now
                    with contextlib.suppress(Exception):
                        await self._reopen_client(client)
                await asyncio.sleep(0.2)
                continue
            self.acked[run.id] = Acked(plan.i, plan.round, run.id, time.time(), tries,
                                       run.duplicate)
            return
        self.unacked.append(asdict(plan))

    async def _submit_burst(self, plans: list[Planned]) -> None:
        spread = self.cfg.submit_spread
        start = time.monotonic()
        tasks: list[asyncio.Task[None]] = []
        for k, plan in enumerate(plans):
            due = start + spread * k / max(1, len(plans))
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            tasks.append(asyncio.create_task(self._submit_one(plan)))
        await asyncio.gather(*tasks)

    async def _poll_terminal(self) -> int:
        """Refresh ``self.terminal``; returns how many acked are not terminal
        (-1 when Redis did not answer)."""
        assert self.reader is not None
        pending = [eid for eid in self.acked if eid not in self.terminal]
        try:
            for k in range(0, len(pending), 500):
                chunk = pending[k:k + 500]
                pipe = self.reader.pipeline(transaction=False)
                for eid in chunk:
                    pipe.hget(core_key(eid), "lifecycle_phase")
                phases = await pipe.execute()
                for eid, phase in zip(chunk, phases, strict=True):
                    if phase == b"terminal":
                        self.terminal.add(eid)
        except (redis.RedisError, OSError):
            return -1
        return sum(1 for eid in self.acked if eid not in self.terminal)

    async def _wait_drained(self, limit: float, submitting: asyncio.Task[None] | None) -> int:
        deadline = time.monotonic() + limit
        left = -1
        while time.monotonic() < deadline:
            assert self.workers is not None
            self.workers.check_exits()
            left = await self._poll_terminal()
            if left == 0 and (submitting is None or submitting.done()):
                return 0
            await asyncio.sleep(0.25)
        return left

    async def _wait_workers_registered(self, ids: Iterable[str], limit: float) -> None:
        assert self.reader is not None
        want = set(ids)
        deadline = time.monotonic() + limit
        while want and time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError, OSError):
                members = await self.reader.smembers("ff:idx:default:workers")
                seen = {(m.decode() if isinstance(m, bytes) else m).rsplit("-", 1)[0]
                        for m in members}
                want -= seen
            await asyncio.sleep(0.1)
        if want:
            log(f"workers not registered after {limit:.0f} s: {sorted(want)}")

    # -- faults --

    def _pick_worker(self) -> WorkerProc:
        assert self.workers is not None
        live = self.workers.live()
        if not live:
            self.workers.check_exits()
            live = self.workers.live()
        return self.rng.choice(sorted(live, key=lambda w: w.slot))

    async def _inject(self, fault: Fault) -> None:
        assert self.workers is not None
        if fault.kind == "kill":
            w = self._pick_worker()
            fault.victim = w.worker_id
            fault.t = time.time()
            self.workers.kill9(w)
            fault.t_end = time.time()
            new = self.workers.start(w.slot)
            log(f"  kill -9 {w.worker_id} (pid {w.proc.pid}); replacement {new.worker_id}")
        elif fault.kind == "stop":
            w = self._pick_worker()
            fault.victim = w.worker_id
            fault.t = time.time()
            _killpg(w.proc, signal.SIGSTOP)
            w.stopped = True
            log(f"  SIGSTOP {w.worker_id} for {self.cfg.stop_s:.1f} s")
            try:
                await asyncio.sleep(self.cfg.stop_s)
            finally:
                # Stamped before SIGCONT: whatever the victim writes after
                # waking is later than t_end (the guarded-effect check relies on it).
                fault.t_end = time.time()
                _killpg(w.proc, signal.SIGCONT)
                w.stopped = False
        else:
            variant = fault.kind
            if variant == "redis":
                variant = "redis-kill" if self.redis_kills % 2 == 0 else "redis-shutdown"
                self.redis_kills += 1
            fault.kind = variant
            fault.victim = "redis-server"
            fault.t = time.time()
            if variant == "redis-kill":
                await asyncio.to_thread(self.redis.kill9)
            else:
                await asyncio.to_thread(self.redis.shutdown)
            log(f"  {variant}: down for {self.cfg.redis_down_ms} ms")
            await asyncio.sleep(self.cfg.redis_down_ms / 1000)
            self.redis.start()  # from this thread: the child dies with its parent thread
            fault.t_end = time.time()
            log(f"  redis-server back after {fault.t_end - fault.t:.1f} s")

    # -- main --

    def _plans(self) -> list[list[Planned]]:
        lo, hi = self.cfg.task_ms
        per, extra = divmod(self.cfg.executions, self.cfg.rounds)
        rounds: list[list[Planned]] = []
        i = 0
        for r in range(self.cfg.rounds):
            batch = []
            for _ in range(per + (1 if r < extra else 0)):
                batch.append(Planned(i, r, self.rng.random() < self.cfg.sync_share,
                                     self.rng.randint(lo, hi), f"chaos-{self.run_id}-{i}"))
                i += 1
            rounds.append(batch)
        return rounds

    async def run(self) -> dict[str, Any]:
        cfg = self.cfg
        self.t0 = time.time()
        self.load_start = _load()
        self.reader = aredis.Redis(port=self.redis.port, socket_timeout=5,
                                   socket_connect_timeout=2)
        self.workers = Workers(cfg, self.redis.url, self.workdir)
        try:
            self.redis.start()
            self.client = await self._open_client()
            started = [self.workers.start(s) for s in range(cfg.workers)]
            await self._wait_workers_registered((w.worker_id for w in started), 30)
            plans = self._plans()
            for r, batch in enumerate(plans):
                kind = cfg.faults[r % len(cfg.faults)]
                t_round = time.monotonic()
                submitting = asyncio.create_task(self._submit_burst(batch))
                await asyncio.sleep(self.rng.uniform(0.3, 1.0))
                fault = Fault(round=r, kind=kind, t=time.time())
                fault.in_flight_at_fault = max(0, await self._poll_terminal())
                log(f"round {r + 1}/{cfg.rounds}: {kind} "
                    f"({fault.in_flight_at_fault} not finished)")
                await self._inject(fault)
                self.faults.append(fault)
                try:
                    await asyncio.wait_for(asyncio.shield(submitting),
                                           cfg.submit_deadline + cfg.submit_spread + 15)
                except TimeoutError:
                    log("  submits still running; going on")
                left = await self._wait_drained(cfg.round_timeout, submitting)
                fault.outstanding_after = left
                fault.round_s = time.monotonic() - t_round
                if left:
                    log(f"  {left} executions still not finished after {cfg.round_timeout} s")
            log(f"settling (up to {cfg.settle:.0f} s)")
            left = await self._wait_drained(cfg.settle, None)
            log(f"settled: {left} not finished")
            # A stopped-and-continued body may still be writing its ledger: let it finish.
            await asyncio.sleep(max(cfg.task_ms[1] / 1000, 0.5))
            report = await self._analyse()
        finally:
            self.workers.close()
            if self.client is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.client.close(), 10)
            if self.reader is not None:
                with contextlib.suppress(Exception):
                    await self.reader.aclose()
            self.redis.close()
        report["worker_shutdown_hangs"] = self.workers.shutdown_hangs
        return report

    # -- analysis --

    def _ledger(self) -> dict[str, list[dict[str, Any]]]:
        assert self.workers is not None
        by_eid: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for path in sorted(self.workers.ledger_dir.glob("ledger-*.jsonl")):
            for line in path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn last line (none expected with one write(2) a line)
                by_eid[rec["eid"]].append(rec)
        return by_eid

    async def _read_records(self, eids: list[str]) -> dict[str, dict[str, Any]]:
        """exec_core, every attempt hash and the completions in lease:history."""
        assert self.reader is not None
        out: dict[str, dict[str, Any]] = {}
        for k in range(0, len(eids), 200):
            chunk = eids[k:k + 200]
            pipe = self.reader.pipeline(transaction=False)
            for eid in chunk:
                pipe.hgetall(core_key(eid))
                pipe.zrange(attempts_key(eid), 0, -1)
                pipe.xrange(history_key(eid))
            res = await pipe.execute()
            for n, eid in enumerate(chunk):
                core_raw, idx_raw, hist = res[3 * n], res[3 * n + 1], res[3 * n + 2]
                core = {a.decode(): b.decode() for a, b in core_raw.items()}
                out[eid] = {"core": core, "indices": sorted(int(x) for x in idx_raw),
                            "history": [{a.decode(): b.decode() for a, b in f.items()}
                                        for _, f in hist]}
            pipe = self.reader.pipeline(transaction=False)
            wanted = [(eid, i) for eid in chunk for i in out[eid]["indices"]]
            for eid, i in wanted:
                pipe.hgetall(attempt_key(eid, i))
            for (eid, i), raw in zip(wanted, await pipe.execute(), strict=True):
                out[eid].setdefault("attempts", {})[i] = {
                    a.decode(): b.decode() for a, b in raw.items()}
        return out

    async def _read_results(self, eids: list[str]) -> dict[str, Any]:
        """Each completed execution's result through the public RunHandle."""
        assert self.client is not None
        sem = asyncio.Semaphore(32)
        out: dict[str, Any] = {}

        async def one(eid: str) -> None:
            async with sem:
                assert self.client is not None
                try:
                    out[eid] = await self.client.run(eid, self._task(False)).result(
                        timeout=10)
                except Exception as exc:  # reported as unreadable
                    out[eid] = exc

        await asyncio.gather(*(one(e) for e in eids))
        return out

    async def _analyse(self) -> dict[str, Any]:
        eids = list(self.acked)
        records = await self._read_records(eids)
        completed = [e for e in eids if records[e]["core"].get("public_state") == "completed"]
        results = await self._read_results(completed)
        ledger = self._ledger()

        problems: dict[str, list[dict[str, Any]]] = defaultdict(list)
        per_eid: dict[str, dict[str, Any]] = {}
        attempt_rows: list[tuple[str, int, dict[str, str]]] = []
        for eid in eids:
            rec, ack = records[eid], self.acked[eid]
            core = rec["core"]
            attempts: dict[int, dict[str, str]] = rec.get("attempts", {})
            attempt_rows.extend((eid, i, a) for i, a in attempts.items())
            lines = ledger.get(eid, [])
            starts = [x for x in lines if x["event"] == "start"]
            ends = [x for x in lines if x["event"] == "end"]
            info: dict[str, Any] = {"i": ack.i, "round": ack.round, "eid": eid,
                                    "starts": len(starts), "ends": len(ends),
                                    "attempts": len(attempts)}
            per_eid[eid] = info
            # One attempt runs its body once (these tasks never suspend), and
            # only under an attempt Redis recorded.
            twice = [a for a, n in Counter(x["attempt"] for x in starts).items() if n > 1]
            unknown = sorted({x["attempt"] for x in starts} - set(attempts))
            if twice or unknown:
                problems["ledger"].append({**info, "why": "body started twice in one attempt"
                                           if twice else "body ran under an unknown attempt",
                                           "attempts_twice": twice, "unknown": unknown})
            if not core:
                problems["lost"].append({**info, "why": "no exec_core"})
                continue
            phase = core.get("lifecycle_phase")
            state = core.get("public_state")
            if phase != TERMINAL:
                problems["stuck"].append({**info, "why": "not terminal", "state": {
                    k: core.get(k, "") for k in (
                        "lifecycle_phase", "ownership_state", "eligibility_state",
                        "blocking_reason", "blocking_detail", "attempt_state",
                        "public_state", "current_worker_id", "lease_expires_at",
                        "lease_reclaim_count")}})
                continue
            successes = sorted(i for i, a in attempts.items()
                               if a.get("attempt_state") == "ended_success")
            released_completed = sum(1 for h in rec["history"]
                                     if h.get("event") == "released"
                                     and h.get("reason") == "completed")
            info["successes"] = len(successes)
            if len(successes) > 1 or released_completed > 1:
                problems["double"].append({**info, "why": "several successful outcomes",
                                           "success_attempts": successes,
                                           "released_completed": released_completed})
            if state != "completed":
                problems["lost"].append({**info, "why": f"ended {state}",
                                         "failure_reason": core.get("failure_reason", "")})
                continue
            result = results.get(eid)
            if isinstance(result, BaseException) or not isinstance(result, dict):
                problems["lost"].append({**info, "why": f"result unreadable: {result!r}"})
                continue
            if result.get("eid") != eid or result.get("i") != ack.i:
                problems["lost"].append({**info, "why": "result of another execution",
                                         "result": result})
                continue
            winner = successes[0] if len(successes) == 1 else None
            if winner is not None and result.get("attempt") != winner:
                problems["double"].append({**info, "why": "result written by attempt "
                                           f"{result.get('attempt')}, success recorded "
                                           f"for attempt {winner}"})
            if winner is not None and not any(x["attempt"] == winner for x in ends):
                problems["phantom"].append({**info, "why": f"attempt {winner} completed "
                                            "but its body never wrote its end line"})

        if self.cfg.guarded:
            for eid in eids:
                per_eid[eid].update(self._guarded_effects(
                    eid, records[eid], ledger.get(eid, []), problems))
        return self._summarise(records, ledger, problems, per_eid, attempt_rows)

    def _guarded_effects(self, eid: str, rec: dict[str, Any], lines: list[dict[str, Any]],
                         problems: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        """Count the guarded effects of one execution and explain every repeat.

        The effect of the successful attempt is the one that counts; each
        other one was written by an attempt that did not succeed, and is
        explained by the fault that cost that attempt its lease *after* the
        effect was written (written before ``kill -9`` / ``SIGSTOP``, or
        before the end of a Redis outage). An effect written by a stopped
        worker after it woke, for an attempt it held before the stop, is
        what the fence must prevent: a violation, as is any repeat no fault
        explains."""
        attempts: dict[int, dict[str, str]] = rec.get("attempts", {})
        effects = sorted((x for x in lines if x["event"] == "effect"), key=lambda x: x["t"])
        fenced = [x for x in lines if x["event"] == "fenced"]
        out: dict[str, Any] = {"effects": len(effects), "fenced": len(fenced),
                               "fenced_after_pause": sum(
                                   1 for x in fenced if self._woke_from_stop(x)),
                               "repeat_causes": [],
                               "stale_body_starts": sum(
                                   1 for x in lines if x["event"] == "start"
                                   and self._stale_start(x, attempts))}
        if len(effects) <= 1:
            return out
        successes = [i for i, a in attempts.items() if a.get("attempt_state") == "ended_success"]
        kept = next((x for x in effects if successes and x["attempt"] == successes[0]),
                    effects[0])
        causes = []
        for x in effects:
            if x is kept:
                continue
            cause = self._explain_effect(x, kept, attempts)
            causes.append(cause)
            self.guarded_repeats.append({"eid": eid, "round": self.acked[eid].round,
                                         "why": cause, "effect": x, "kept": kept})
            if cause.startswith("violation"):
                problems["guarded"].append({
                    "eid": eid, "round": self.acked[eid].round, "why": cause,
                    "effect": x, "kept": kept,
                    "attempt_state": attempts.get(x["attempt"], {}).get("attempt_state")})
        out["repeat_causes"] = causes
        return out

    def _woke_from_stop(self, line: dict[str, Any]) -> bool:
        return any(f.kind == "stop" and f.victim == line["worker"] and line["t"] >= f.t_end
                   and (not nxt or line["t"] < nxt) for f, nxt in self._stop_windows())

    def _stale_start(self, line: dict[str, Any], attempts: dict[int, dict[str, str]]) -> bool:
        """A body that began only after its stopped worker woke, for an attempt
        claimed before the stop (the claim's answer was read after the pause):
        its lease was already known lost when the body was called."""
        started = float(attempts.get(line["attempt"], {}).get("started_at") or 0) / 1000
        return bool(started) and any(
            f.kind == "stop" and f.victim == line["worker"] and started <= f.t
            and line["t"] >= f.t_end for f in self.faults)

    def _stop_windows(self) -> list[tuple[Fault, float]]:
        """Each stop fault with the time of the next fault on the same worker (0: none)."""
        out = []
        for k, f in enumerate(self.faults):
            nxt = next((g.t for g in self.faults[k + 1:] if g.victim == f.victim), 0.0)
            out.append((f, nxt))
        return out

    def _explain_effect(self, x: dict[str, Any], kept: dict[str, Any],
                        attempts: dict[int, dict[str, str]]) -> str:
        a = attempts.get(x["attempt"], {})
        if x["attempt"] == kept["attempt"]:
            return "violation: two effects from one attempt"
        if a.get("attempt_state") == "ended_success":
            return "violation: two successful attempts wrote it"
        started = float(a.get("started_at") or 0) / 1000
        reach = self.cfg.lease_ms / 1000 + self.cfg.task_ms[1] / 1000 + 5
        for f in self.faults:
            if (f.kind in ("kill", "stop") and f.victim != x["worker"]) or x["t"] < f.t - reach:
                continue
            if f.kind == "kill" and x["t"] < (f.t_end or f.t):  # t_end: after the victim died
                return "kill: effect before the crash, attempt never completed"
            if f.kind == "stop" and started <= f.t and x["t"] < f.t_end:
                # A stopped process writes nothing; t in [t, t_end): as the signal landed.
                return "stop: effect before the pause, attempt never completed"
            if f.kind == "stop" and started <= f.t and x["t"] >= f.t_end:
                return "violation: stop: the woken worker wrote it for an attempt it held " \
                       "before the pause"
            if f.kind.startswith("redis") and f.t - reach <= x["t"] < f.t_end:
                return f"{f.kind}: effect before the outage ended, attempt never completed"
        return "violation: unexplained repeat"

    def _victims(self, fault: Fault,
                 attempt_rows: list[tuple[str, int, dict[str, str]]]) -> list[tuple[str, int]]:
        """Attempts running when the fault hit: on the victim worker for kill /
        stop, anywhere for a Redis fault."""
        t_ms = fault.t * 1000
        out = []
        for eid, i, a in attempt_rows:
            if fault.kind in ("kill", "stop") and a.get("worker_id") != fault.victim:
                continue
            started = float(a.get("started_at") or 0)
            ended = float(a.get("ended_at") or 0)
            if started and started <= t_ms and (not ended or ended > t_ms):
                out.append((eid, i))
        return out

    def _summarise(self, records: dict[str, dict[str, Any]],
                   ledger: dict[str, list[dict[str, Any]]],
                   problems: dict[str, list[dict[str, Any]]],
                   per_eid: dict[str, dict[str, Any]],
                   attempt_rows: list[tuple[str, int, dict[str, str]]]) -> dict[str, Any]:
        completed_at = sorted(float(r["core"]["completed_at"]) / 1000
                              for r in records.values()
                              if r["core"].get("public_state") == "completed"
                              and r["core"].get("completed_at"))
        attempts_by_eid: dict[str, dict[int, dict[str, str]]] = {
            e: r.get("attempts", {}) for e, r in records.items()}

        fault_rows: list[dict[str, Any]] = []
        for f in self.faults:
            since = _since(completed_at, f.t)
            nxt = None if since is None else f.t + since
            victims = self._victims(f, attempt_rows)
            reclaim: list[float] = []
            finish: list[float] = []
            resumed: list[float] = []  # per victim: reclaimed, or else finished
            same_attempt = 0
            unfinished = 0
            for eid, i in victims:
                core = records[eid]["core"]
                later = attempts_by_eid[eid].get(i + 1)
                done = (float(core["completed_at"]) / 1000 - f.t
                        if core.get("completed_at") else None)
                if later and later.get("started_at"):
                    reclaim.append(float(later["started_at"]) / 1000 - f.t)
                    resumed.append(reclaim[-1])
                elif done is not None:
                    same_attempt += 1
                    resumed.append(done)
                if done is not None:
                    finish.append(done)
                else:
                    unfinished += 1
            if f.kind in ("kill", "stop"):  # no victim in flight: nothing to recover
                recovery = max(resumed) if resumed else None
            else:
                recovery = (nxt - f.t) if nxt is not None else None
            fault_rows.append({
                **asdict(f), "t": round(f.t - self.t0, 3),
                "t_end": round(f.t_end - self.t0, 3) if f.t_end else None,
                "victim_attempts": len(victims),
                "reclaimed": len(reclaim), "finished_by_same_attempt": same_attempt,
                "victims_unfinished": unfinished,
                "recovery_s": _r(recovery),
                "victims_reclaimed_max_s": _r(max(reclaim) if reclaim else None),
                "victims_finished_max_s": _r(max(finish) if finish else None),
                "next_completion_s": _r(nxt - f.t if nxt is not None else None),
                "next_completion_after_end_s": _r(_since(completed_at, f.t_end)),
            })

        kinds = list(dict.fromkeys(f["kind"] for f in fault_rows))
        by_kind: dict[str, dict[str, Any]] = {}
        round_kind = {f.round: f.kind for f in self.faults}
        for kind in [*kinds, "all"]:
            rows = [f for f in fault_rows if kind in ("all", f["kind"])]
            members = {e for e, info in per_eid.items()
                       if kind == "all" or round_kind.get(info["round"]) == kind}
            re_exec = [e for e in members if per_eid[e]["starts"] > 1]
            rec_s = [f["recovery_s"] for f in rows if f["recovery_s"] is not None]
            nxt_s = [f["next_completion_s"] for f in rows if f["next_completion_s"] is not None]
            by_kind[kind] = {
                "faults": len(rows),
                "submitted": len(members),
                "lost": sum(1 for p in problems["lost"] if p["eid"] in members),
                "double": len({p["eid"] for p in problems["double"] if p["eid"] in members}),
                "stuck": sum(1 for p in problems["stuck"] if p["eid"] in members),
                "phantom": sum(1 for p in problems["phantom"] if p["eid"] in members),
                "ledger_anomalies": sum(1 for p in problems["ledger"] if p["eid"] in members),
                "re_executed": len(re_exec),
                "extra_body_runs": sum(per_eid[e]["starts"] - 1 for e in re_exec),
                "bodies_ended_twice": sum(1 for e in members if per_eid[e]["ends"] > 1),
                "victim_attempts": sum(f["victim_attempts"] for f in rows),
                "faults_without_victims": sum(1 for f in rows if f["kind"] in ("kill", "stop")
                                              and not f["victim_attempts"]),
                "recovery_median_s": _r(statistics.median(rec_s) if rec_s else None),
                "recovery_max_s": _r(max(rec_s) if rec_s else None),
                "next_completion_median_s": _r(statistics.median(nxt_s) if nxt_s else None),
                "next_completion_max_s": _r(max(nxt_s) if nxt_s else None),
            }
            if self.cfg.guarded:
                by_kind[kind]["guarded"] = _guarded_row(
                    [per_eid[e] for e in members],
                    sum(1 for p in problems["guarded"] if p["eid"] in members))
        assert self.workers is not None
        log_errors = _count_log_errors(self.workers.log_dir)
        attempt_types = Counter(a.get("attempt_type", "?") for _, _, a in attempt_rows)
        return {
            "config": {k: v for k, v in asdict(self.cfg).items()
                       if k not in ("json", "json_out", "worker_exe", "workdir", "keep")},
            "duration_s": round(time.time() - self.t0, 1),
            "load_average": {"start": self.load_start, "end": _load()},
            "submitted": len(self.acked),
            "not_acknowledged": len(self.unacked),
            "submit_retries": sum(a.tries - 1 for a in self.acked.values()),
            "submit_errors": dict(self.submit_errors),
            "submit_duplicates": sum(1 for a in self.acked.values() if a.duplicate),
            "client_reopens": self.client_reopens,
            "totals": by_kind["all"],
            "by_fault": {k: v for k, v in by_kind.items() if k != "all"},
            "faults": fault_rows,
            "attempt_types": dict(attempt_types),
            "ledger_lines": sum(len(v) for v in ledger.values()),
            "worker_unexpected_exits": [
                {k: v for k, v in x.items() if k != "log_tail"}
                for x in self.workers.unexpected_exits],
            "worker_log_errors": log_errors,
            "problems": {k: v[:20] for k, v in problems.items() if v},
            "guarded_repeats": self.guarded_repeats[:50],
        }


def _guarded_row(infos: list[dict[str, Any]], violations: int) -> dict[str, Any]:
    """Guarded effects of some executions: how many, how often repeated, why."""
    causes: Counter[str] = Counter()
    for info in infos:
        causes.update(c.split(":", 1)[0] for c in info.get("repeat_causes", ()))
    return {
        "effects": sum(i.get("effects", 0) for i in infos),
        "executions_with_effect": sum(1 for i in infos if i.get("effects", 0)),
        "completed_without_effect": sum(1 for i in infos if not i.get("effects", 0)
                                        and i.get("successes")),
        "fenced": sum(i.get("fenced", 0) for i in infos),
        "fenced_after_pause": sum(i.get("fenced_after_pause", 0) for i in infos),
        "repeated": sum(1 for i in infos if i.get("effects", 0) > 1),
        "repeated_after_crash": causes["kill"],
        "repeated_effect_before_pause": causes["stop"],
        "repeated_after_outage": sum(n for c, n in causes.items() if c.startswith("redis")),
        "violations": violations,
        "stale_body_starts": sum(i.get("stale_body_starts", 0) for i in infos),
    }


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _since(times: list[float], t: float) -> float | None:
    """Seconds from ``t`` to the first of the sorted ``times`` at or after it."""
    k = bisect.bisect_left(times, t)
    return times[k] - t if t and k < len(times) else None


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 2)


_EID = re.compile(r"\{fp:\d+\}:[0-9a-f-]{36}")
_PORT = re.compile(r"127\.0\.0\.1:\d+")


def _count_log_errors(log_dir: Path) -> dict[str, int]:
    """ERROR / CRITICAL lines and tracebacks in the worker logs, by message
    (execution ids and ports blanked so that alike lines count together)."""
    counts: Counter[str] = Counter()
    for path in log_dir.glob("*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if "level=ERROR" in line or "level=CRITICAL" in line:
                msg = _PORT.sub("<port>", _EID.sub("<eid>", line.split("level=", 1)[1]))
                counts[msg[:160]] += 1
            elif line.startswith("Traceback"):
                counts["Traceback (most recent call last)"] += 1
    return dict(counts.most_common(15))


# --- output ------------------------------------------------------------------

_COLUMNS = [("faults", "faults"), ("submitted", "submitted"), ("lost", "lost"),
            ("double", "double"), ("stuck", "stuck"), ("re_executed", "re-exec"),
            ("bodies_ended_twice", "ended-2x"), ("victim_attempts", "victims")]


def render(report: dict[str, Any]) -> str:
    out = []
    c = report["config"]
    out.append(f"chaos: {c['rounds']} rounds of {','.join(c['faults'])}, {c['workers']} workers "
               f"x {c['concurrency']}, {c['executions']} executions, lease {c['lease_ms']} ms, "
               f"seed {c['seed']}, {report['duration_s']} s; load average "
               f"{report['load_average']['start']} -> {report['load_average']['end']}")
    head = f"{'fault':<15}" + "".join(f"{label:>10}" for _, label in _COLUMNS)
    head += f"{'recovery med/max s':>21}{'next done med/max s':>22}"
    out.append(head)
    rows = [*report["by_fault"].items(), ("all", report["totals"])]
    for kind, row in rows:
        line = f"{kind:<15}" + "".join(f"{row[k]:>10}" for k, _ in _COLUMNS)
        line += f"{_pair(row['recovery_median_s'], row['recovery_max_s']):>21}"
        line += f"{_pair(row['next_completion_median_s'], row['next_completion_max_s']):>22}"
        out.append(line)
    t = report["totals"]
    out.append("kill/stop faults that hit a worker with nothing in flight: "
               f"{t['faults_without_victims']}")
    out.append(f"re-executed bodies: {t['extra_body_runs']} extra runs; bodies that ended more "
               f"than once: {t['bodies_ended_twice']}; attempts by type: "
               f"{report['attempt_types']}")
    out.append(f"submits: {report['submitted']} acknowledged, {report['not_acknowledged']} not; "
               f"{report['submit_retries']} retries {report['submit_errors'] or ''}, "
               f"{report['submit_duplicates']} found already created; "
               f"client reopened {report['client_reopens']}x")
    if report["config"]["guarded"]:
        out.append("guarded effects (ensure_lease() then an effect line), per fault kind of "
                   "the round:")
        for kind, row in rows:
            g = row["guarded"]
            out.append(
                f"  {kind:<15} effects {g['effects']} in {g['executions_with_effect']} "
                f"executions; repeated {g['repeated']} (after crash "
                f"{g['repeated_after_crash']}, effect before the pause "
                f"{g['repeated_effect_before_pause']}, after outage "
                f"{g['repeated_after_outage']}); violations {g['violations']}; fenced "
                f"{g['fenced']} (by a woken worker {g['fenced_after_pause']}); completed "
                f"without effect {g['completed_without_effect']}; bodies started after "
                f"waking on a claim made before the pause {g['stale_body_starts']}")
    if report["worker_unexpected_exits"]:
        out.append(f"workers that exited by themselves: {report['worker_unexpected_exits']}")
    if report["worker_shutdown_hangs"]:
        out.append(f"workers that ignored SIGTERM for 20 s: {report['worker_shutdown_hangs']}")
    if report["worker_log_errors"]:
        out.append("worker log errors:")
        out.extend(f"  {n:>5}  {msg}" for msg, n in report["worker_log_errors"].items())
    for kind, items in report["problems"].items():
        out.append(f"{kind}: {len(items)} (first ones)")
        out.extend(f"  {json.dumps(x)}" for x in items[:5])
    out.append("per fault (t from start; recovery: kill/stop = until the last attempt the "
               "victim held was reclaimed (or finished by itself), redis = to the next "
               "completion):")
    for f in report["faults"]:
        out.append(f"  r{f['round'] + 1:<3} {f['kind']:<15} t={f['t']:>7}s "
                   f"victim={f['victim']:<14} victims={f['victim_attempts']:<3} "
                   f"reclaimed={f['reclaimed']:<3} recovery={_s(f['recovery_s'])} "
                   f"next-done={_s(f['next_completion_s'])} "
                   f"all-victims-done={_s(f['victims_finished_max_s'])} "
                   f"left-after-round={f['outstanding_after']}"
                   + (f" down={f['t_end'] - f['t']:.2f}s next-done-after-restart="
                      f"{_s(f['next_completion_after_end_s'])}"
                      if f["kind"].startswith("redis") and f["t_end"] else ""))
    return "\n".join(out)


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}s"


def _pair(a: float | None, b: float | None) -> str:
    return "-" if a is None else f"{a:.2f} / {b:.2f}"


def failed(report: dict[str, Any]) -> bool:
    t = report["totals"]
    g = t.get("guarded", {})
    return bool(t["lost"] or t["double"] or t["stuck"] or t["phantom"] or t["ledger_anomalies"]
                or g.get("violations") or g.get("completed_without_effect")
                or report["not_acknowledged"])


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)
    workdir = Path(cfg.workdir) if cfg.workdir else Path(tempfile.mkdtemp(prefix="ffw-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    log(f"workdir {workdir}")
    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop the workers and Redis.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        report = asyncio.run(Run(cfg, workdir).run())
    except KeyboardInterrupt:
        log("interrupted; workers and redis-server stopped")
        return 130
    except RuntimeError as exc:
        log(f"run aborted: {exc}")
        return 2
    finally:
        if not cfg.workdir and not cfg.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if cfg.json_out:
        Path(cfg.json_out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1) if cfg.json else render(report), flush=True)
    return 1 if failed(report) else 0


if __name__ == "__main__":
    sys.exit(main())
