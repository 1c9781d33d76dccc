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
import contextlib
import json
import random
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aredis

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from bench.chaos_analysis import RunAnalysis, _load  # noqa: E402
from bench.chaos_model import (  # noqa: E402
    FAULT_KINDS,
    Acked,
    Config,
    Fault,
    Planned,
    core_key,
    log,
)
from bench.chaos_procs import RedisServer, WorkerProc, Workers, _killpg  # noqa: E402
from bench.chaos_report import failed, render  # noqa: E402
from bench.chaos_tasks import guarded, guarded_sync, work, work_sync  # noqa: E402
from flowfabric_worker import Client, TaskDefinition  # noqa: E402


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



class Run(RunAnalysis):
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
