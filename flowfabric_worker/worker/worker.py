"""The worker: claim loop, executors and drain in one anyio task group."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Iterable
from types import FrameType
from typing import Any

import anyio
from anyio.abc import TaskGroup

from flowfabric_worker.backend.durability import Durability
from flowfabric_worker.context.attempt import Claimed
from flowfabric_worker.observability.metrics import Recorder, recorder
from flowfabric_worker.protocol.keys import WAKE_CHANNEL
from flowfabric_worker.protocol.wake import parse_wake
from flowfabric_worker.settings import Limits
from flowfabric_worker.tasks.bounds import DEFAULT_LIMITS
from flowfabric_worker.tasks.spec import TaskLike
from flowfabric_worker.worker.backend_port import BackendEngine
from flowfabric_worker.worker.executor import Executor
from flowfabric_worker.worker.port import Engine
from flowfabric_worker.worker.renewer import Renewals
from flowfabric_worker.worker.scheduler import Backoff, ClaimIdentity, Permits, Scheduler
from flowfabric_worker.worker.telemetry import Telemetry
from flowfabric_worker.worker.unknown_kinds import UnknownKinds
from flowfabric_worker.worker.watchdog import LoopWatchdog

log = logging.getLogger("flowfabric_worker.worker")

#: Added to a task's timeout when indexing its attempts for the scanner.
ATTEMPT_TIMEOUT_GRACE_MS = 2_000

#: Longest the drain's hand-back may take once the grace period is over: the
#: process exits at grace + this at most (a lease not handed back in time
#: lapses and is reclaimed, nothing is lost).
HAND_BACK_TIMEOUT = 2.0

#: Seconds between two Redis round-trip probes while metrics are enabled.
ROUND_TRIP_PROBE_INTERVAL = 5.0
#: How many of the latest attempt outcomes ``Worker.outcomes`` keeps. The
#: list grew by one entry per attempt for the worker's whole life: ~200
#: bytes a task, 200 MB after a million.
OUTCOMES_KEPT = 1000


def _attempt_timeouts(tasks: Iterable[TaskLike]) -> dict[str, int]:
    return {t.name: int(t.timeout * 1000) + ATTEMPT_TIMEOUT_GRACE_MS
            for t in tasks if t.timeout}


class Worker:
    """Runs registered tasks claimed from the engine.

    ``client`` is a :class:`~flowfabric_worker.client.Client` (anything with a
    ``.backend``) or directly an :class:`~flowfabric_worker.worker.port.Engine`.
    ``run()`` returns after :meth:`stop` (or SIGTERM/SIGINT) once in-flight
    work finished or was handed back.

    ``attempt_timeouts=True`` (the default) passes each task's ``timeout``
    (plus :data:`ATTEMPT_TIMEOUT_GRACE_MS`) as the claim's
    ``attempt_timeout_ms``, so the attempt-timeout scanner of any process
    expires attempts whose worker hangs (a body blocking the event loop) or
    vanished without its lease lapsing (spec 05 §2.4 note, the Python
    extension; ``False`` gives 0.15's behaviour, no index). The grace lets
    the worker's own timeout — a failure that may be retried — land before
    the scanner's terminal ``expired``.

    ``loop_watchdog`` (seconds, 0 = off) logs one warning with the blocking
    stack when the event loop has not run for that long
    (:mod:`~flowfabric_worker.worker.watchdog`). ``max_abandoned_threads``
    (default ``concurrency``) caps the sync bodies left running in their
    threads past their timeout or a drain: at the cap the worker claims
    nothing until one of them returns.

    ``durability`` (``fast``, ``strict``, ``replicas:N``; default: the
    client's) is what its complete / fail calls wait for before they count
    as done; ``run()`` refuses a server that cannot give it with
    :class:`~flowfabric_worker.errors.DurabilityUnavailable`
    (docs/operations.md, "Durability").

    An execution of a kind with no task here is handed back for another
    worker (the same attempt, after a short back-off; docs/operations.md,
    "Mixed fleets"). ``fail_unknown_after=N`` (standalone only) fails it
    ``unknown_task`` instead once it has been claimed N times.

    ``metrics`` (default: the process's recorder,
    :func:`~flowfabric_worker.observability.metrics.recorder`) receives the
    worker's measurements; every attempt's lifecycle is logged on
    ``flowfabric_worker.lifecycle`` (docs/observability.md).
    """

    def __init__(
        self, client: Any, tasks: Iterable[TaskLike], *, lanes: list[str] | None = None,
        concurrency: int = 16, capabilities: Iterable[str] = (), lease_ttl: float = 30.0,
        worker_id: str | None = None, grace_period: float = 30.0, reclaim: bool = True,
        scanners: bool = True, scanner_interval_scale: float = 1.0,
        attempt_timeouts: bool = True, disabled_scanners: Iterable[str] = (),
        init_secrets: bool = True, waitpoint_hmac_secret: str | None = None,
        loop_watchdog: float = 1.0, max_abandoned_threads: int | None = None,
        limits: Limits | None = None, durability: str | None = None,
        metrics: Recorder | None = None, fail_unknown_after: int | None = None,
    ) -> None:
        # Before anything is built: a bound attached mode cannot honour.
        unknown = UnknownKinds.for_mode(
            str(getattr(getattr(client, "backend", None), "mode", "standalone")),
            fail_unknown_after)
        # durability: what terminal calls wait for (None: the client's own).
        engine: Engine = (BackendEngine(client.backend, Durability.parse(durability)
                                        if durability is not None else None)
                          if hasattr(client, "backend") else client)
        self.engine = engine
        self._backend = getattr(client, "backend", None)
        self.namespace = str(getattr(client, "namespace", "") or "")
        self.capabilities = frozenset(capabilities)
        self.run_scanners = scanners and self._backend is not None
        self.scanner_interval_scale = scanner_interval_scale
        self.disabled_scanners = tuple(disabled_scanners)
        self.init_secrets = init_secrets
        self._initial_secret = waitpoint_hmac_secret
        self.tasks = {t.name: t for t in tasks}
        self.lanes = lanes or sorted({t.lane for t in self.tasks.values()})
        self.lease_ttl_ms = int(lease_ttl * 1000)
        self.grace_period = grace_period
        self.worker_id = worker_id or f"w-{uuid.uuid4().hex[:12]}"
        self.instance_id = f"{self.worker_id}-{uuid.uuid4().hex[:8]}"
        self.permits = Permits(concurrency)
        self.scheduler = Scheduler(
            engine, self.lanes,
            ClaimIdentity(self.worker_id, self.instance_id, self.capabilities,
                          self.lease_ttl_ms,
                          _attempt_timeouts(self.tasks.values()) if attempt_timeouts else {}),
            self.permits, reclaim=reclaim, known_kinds=self.tasks)
        #: Result bounds and those of children spawned by tasks: ``limits``,
        #: else the client's (one configuration for both sides of a process).
        self.limits: Limits = limits or getattr(client, "limits", None) or DEFAULT_LIMITS
        self.metrics = metrics if metrics is not None else recorder()
        self.executor = Executor(engine, self.tasks, self.lease_ttl_ms, self.limits,
                                 Telemetry(self.metrics, self.worker_id), unknown)
        self.executor.threads.on_released = self._thread_released
        self.max_abandoned_threads = (concurrency if max_abandoned_threads is None
                                      else max_abandoned_threads)
        self.watchdog = (LoopWatchdog(loop_watchdog, self.executor.loop_tasks.get)
                         if loop_watchdog > 0 else None)
        self._stop = anyio.Event()
        self._changed = anyio.Event()
        #: Set when claiming may succeed again (a permit came back, new work
        #: was announced, stop was asked): the claim loop waits on it.
        self._wake = anyio.Event()
        self._at_capacity = False
        #: Empty-poll backoff. Submitters announce work on the wake channel,
        #: so the poll is only a fallback (flows, promotions, other
        #: submitters): it starts low and is capped at 0.5 s.
        self.idle_backoff = Backoff(0.005, 0.5)
        self._inflight: dict[str, anyio.CancelScope] = {}
        self._leases: dict[str, Claimed] = {}
        #: The latest attempt outcomes, ``(execution id, label)``, oldest
        #: first (at most about twice :data:`OUTCOMES_KEPT`): for tests and
        #: debugging. The totals are counted apart.
        self.outcomes: list[tuple[str, str]] = []
        self._ran = 0
        self._handed_back = 0
        # Read when scraped: nothing per task.
        self.metrics.bind_slots(lambda: len(self._inflight),
                                lambda: self.permits.size - self.permits.in_use)

    def stop(self) -> None:
        """Stop claiming and start draining (safe to call from a signal handler)."""
        self._stop.set()
        self._wake.set()

    async def run(self, *, install_signals: bool = False) -> None:
        """Claim and execute until stopped, then drain."""
        if isinstance(self.engine, BackendEngine):
            # Before claiming anything: a server that cannot confirm terminal
            # calls as asked is refused (DurabilityUnavailable), not found out later.
            await self.engine.check_durability()
        self.executor.telemetry.worker_started(
            lanes=self.lanes, tasks=self.tasks, concurrency=self.permits.size,
            mode=getattr(self._backend, "mode", "embedded"), worker_id=self.worker_id)
        try:
            await self._run(install_signals)
        finally:
            self.executor.telemetry.worker_stopped(
                worker_id=self.worker_id,
                ran=self._ran, handed_back=self._handed_back)

    async def _run(self, install_signals: bool) -> None:
        async with anyio.create_task_group() as tg:
            if install_signals:
                tg.start_soon(self._signals, tg)
            if self.watchdog is not None:
                tg.start_soon(self.watchdog.run)
            if isinstance(self.engine, BackendEngine):
                await self._check_keystore(self.engine)
                await self._register_schedules(self.engine)
                tg.start_soon(self._registration, self.engine)
                # Retries this worker schedules are promoted on time by it.
                self.engine.promotes_retries = True
                tg.start_soon(self.engine.retry_promoter.run)
                tg.start_soon(self._wake_listener, self.engine)
                if self.metrics.enabled:
                    tg.start_soon(self._probe_round_trips, self.engine)
            renewals = Renewals()
            tg.start_soon(renewals.run)
            self.executor.renewals = renewals
            scan_stop = anyio.Event()
            if self.run_scanners:
                tg.start_soon(self._scanners, scan_stop)
            async with anyio.create_task_group() as work:
                await self._claim_loop(work)
                with anyio.move_on_after(self.grace_period):
                    while self._inflight:
                        self._changed = anyio.Event()
                        await self._changed.wait()
                if self._inflight:
                    with anyio.move_on_after(HAND_BACK_TIMEOUT) as bounded:
                        await self._hand_back(work)
                    if bounded.cancelled_caught:
                        log.warning("hand-back not finished after %.0fs: the remaining "
                                    "leases will expire and be reclaimed", HAND_BACK_TIMEOUT)
                    work.cancel_scope.cancel()
                if self.executor.threads.abandoned:
                    # Daemon threads: they do not keep the process alive.
                    log.warning("exiting with %d task bodies still running in their "
                                "threads (hung): %s", self.executor.threads.abandoned,
                                ", ".join(self.executor.threads.abandoned_labels()))
            scan_stop.set()
            tg.cancel_scope.cancel()

    async def _check_keystore(self, engine: BackendEngine) -> None:
        """Tasks that wait for signals or sleep need the waitpoint HMAC
        keystore. A standalone worker installs it when it is missing (spec 05
        §7.3 bootstrap: a random secret, or ``waitpoint_hmac_secret``, as kid
        ``k1`` on every partition; idempotent and locked, so workers starting
        together agree). Attached to a FlowFabric deployment, whose server
        seeds it, or with ``init_secrets=False``, a missing keystore is logged
        once here and each task fails (permanently, with
        :class:`~flowfabric_worker.errors.KeystoreNotInitialized`) when it
        first suspends."""
        from flowfabric_worker.client.keystore import init_secrets, keystore_ready

        try:
            ready = await keystore_ready(engine.backend)
            if not ready and self.init_secrets and engine.backend.mode == "standalone":
                outcome = await init_secrets(engine.backend, secret_hex=self._initial_secret)
                log.info("waitpoint HMAC keystore %s (kid %s)", outcome.status, outcome.kid)
                return
        except Exception as exc:
            log.warning("could not check or install the waitpoint keystore: %s", exc)
            return
        if not ready:
            log.error("the waitpoint HMAC keystore is not initialised: tasks that wait for "
                      "signals or sleep will fail; run `flowfabric-worker secrets init`")

    async def _register_schedules(self, engine: BackendEngine) -> None:
        """Upsert the schedules declared with ``@task(schedule=...)`` on this
        worker's tasks (docs/schedules.md). A bad declaration stops the start
        (InvalidInput); an unreachable server is only logged — the next
        worker start registers them."""
        from flowfabric_worker.errors import InvalidInput, PayloadError
        from flowfabric_worker.tasks.schedule_store import register_declared

        try:
            ids = await register_declared(engine.backend, self.tasks.values(),
                                          namespace=self.namespace, limits=self.limits)
        except (InvalidInput, PayloadError):
            raise
        except Exception as exc:
            log.warning("registering declared schedules failed: %s", exc)
            return
        if ids:
            log.info("schedules registered: %s", ", ".join(ids))

    async def _registration(self, engine: BackendEngine) -> None:
        """Register, then heartbeat every third of the registration TTL.
        Failures only cost visibility, never work, so they are logged."""
        ttl_ms = max(3 * self.lease_ttl_ms, 3000)
        try:
            # Lanes this worker serves become known to every scanner process
            # (a `scan` process or another worker's), even with --no-scanners.
            await engine.backend.add_lanes(self.lanes)
        except Exception as exc:
            log.warning("seeding the lane registry failed: %s", exc)
        try:
            await engine.register_worker(self.namespace, self.instance_id, self.worker_id,
                                         self.lanes, self.capabilities, ttl_ms)
        except Exception as exc:
            log.warning("worker registration failed: %s", exc)
        while True:
            await anyio.sleep(ttl_ms / 3000)
            try:
                await engine.heartbeat(self.namespace, self.instance_id)
            except Exception as exc:
                log.info("worker heartbeat failed: %s", exc)

    async def _probe_round_trips(self, engine: BackendEngine) -> None:
        """Time one ``TIME`` round trip every few seconds for
        ``ffw_redis_round_trip_seconds`` (a probe, so the hot path measures nothing)."""
        while True:
            started = time.perf_counter()
            try:
                await engine.backend.server_time_ms()
            except Exception as exc:  # an outage shows in the gap, and in the logs elsewhere
                log.debug("round-trip probe failed: %s", exc)
            else:
                self.metrics.redis_round_trip(time.perf_counter() - started)
            await anyio.sleep(ROUND_TRIP_PROBE_INTERVAL)

    async def _wake_listener(self, engine: BackendEngine) -> None:
        """Wake the claim loop when a submitter announces work on one of our
        lanes (one pub/sub connection for all of them). A lost connection is
        made again, and each (re)subscription triggers a full look, so a
        wake-up published while it was down is not left to the idle poll."""
        channels = [WAKE_CHANNEL.format(lane=lane) for lane in self.lanes]
        async for data in engine.backend.messages(*channels, subscribed=self._announce):
            # A message naming the execution lets the next round claim it
            # without reading the index first (protocol/wake.py).
            named = parse_wake(data)
            if named is not None:
                self.scheduler.offer(named)
            self._announce()

    def _announce(self) -> None:
        """Work was announced — or the wake subscription was (re)made and a
        wake-up published before it was missed: look now, with a full read."""
        self.scheduler.announced()
        self._wake.set()

    async def _scanners(self, stop: anyio.Event) -> None:
        """Embedded maintenance (spec 05 §7.3): promotion, expiry marking, flow
        completion dispatch and the flow scanners, ...
        Absent scanners module → the worker still runs (another process or a
        deployment's engine keeps the system live)."""
        try:
            from flowfabric_worker.engine.roles import run_scanners
        except ImportError:
            log.warning("scanners module not available; not running maintenance")
            return
        if self._backend is None:
            return
        await run_scanners(self._backend, stop=stop, lanes=self.lanes,
                           interval_scale=self.scanner_interval_scale,
                           disabled=self.disabled_scanners)

    async def _signals(self, tg: TaskGroup) -> None:
        """SIGTERM / SIGINT: the first one drains, a second one exits at once.

        Plain ``signal.signal`` handlers, not the loop's signal receiver: the
        interpreter runs them in the main thread even while a task body
        blocks the event loop (``time.sleep``), so the second signal works
        then too. The first one only schedules :meth:`stop` on the loop."""
        loop = asyncio.get_running_loop()
        drain_asked = False

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            nonlocal drain_asked
            if not drain_asked:
                drain_asked = True
                loop.call_soon_threadsafe(self._drain_on_signal, signum)
                return
            # The operator will not wait for the drain: leases still held
            # lapse and are reclaimed (lease expiry), as after a crash.
            # os._exit: a hung body's thread or a blocked shutdown step must
            # not delay it.
            log.warning("second signal (%s) during the drain: exiting now, %d attempts "
                        "left to lease expiry", signal.Signals(signum).name,
                        len(self._inflight))
            for stream in (sys.stderr, sys.stdout):
                stream.flush()
            os._exit(128 + signum)

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            await anyio.sleep_forever()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _drain_on_signal(self, signum: int) -> None:
        log.info("%s received: draining (a second signal exits at once)",
                 signal.Signals(signum).name)
        self.stop()

    def _thread_released(self) -> None:
        self._wake.set()

    async def _claim_loop(self, work: TaskGroup) -> None:
        backoff = self.idle_backoff
        capped = False
        while not self._stop.is_set():
            # Fresh before looking, so a wake-up during the claim is not lost.
            self._wake = anyio.Event()
            abandoned = self.executor.threads.abandoned
            if abandoned and abandoned >= self.max_abandoned_threads:
                # Each hung sync body keeps a thread we cannot stop; claiming
                # on would leak one more per hung attempt. Which kind an
                # execution is is known only once claimed, so nothing is
                # claimed until one returns (its thread wakes this loop).
                if not capped:
                    log.warning(
                        "not claiming: %d sync task bodies are still running past their "
                        "timeout or drain (limit max_abandoned_threads=%d): %s; restart "
                        "the worker to get rid of them", abandoned,
                        self.max_abandoned_threads,
                        ", ".join(self.executor.threads.abandoned_labels()))
                    capped = True
                await self._wake.wait()
                continue
            if capped:
                log.info("claiming again: %d abandoned task threads left", abandoned)
                capped = False
            if self.permits.in_use >= self.permits.size:
                # Several permits usually come back while one claim round
                # runs, so rounds serve several tasks without waiting here.
                self._at_capacity = True
                self.metrics.at_capacity()
                await self._wake.wait()
                self._at_capacity = False
                continue
            try:
                leases = await self.scheduler.claim_batch()
            except Exception as exc:
                log.warning("claim failed: %s", exc)
                await self._sleep_or_wake(1.0)
                continue
            if not leases:
                await self._sleep_or_wake(backoff.next())
                continue
            backoff.reset()
            for lease in leases:
                # Named by the execution (anyio would otherwise build the name
                # from the function's module and qualname for every task).
                work.start_soon(self._run_one, lease, name=lease.execution_id)
            if self.scheduler.window_drained:
                # The round took all the window had: an immediate round would
                # read the same partitions empty (the main cost of a lone
                # round trip). New work wakes us; else look again shortly.
                await self._sleep_or_wake(backoff.initial)

    async def _sleep_or_wake(self, delay: float) -> None:
        with anyio.move_on_after(delay):
            await self._wake.wait()

    async def _run_one(self, lease: Claimed) -> None:
        scope = anyio.CancelScope()
        self._inflight[lease.execution_id] = scope
        self._leases[lease.execution_id] = lease
        try:
            with scope:
                outcome = await self.executor.run(lease)
                self._record(lease.execution_id, outcome)
        except Exception as exc:
            log.error("task %s ended with %s", lease.execution_id, exc)
            self._record(lease.execution_id, f"error:{type(exc).__name__}")
        finally:
            self._inflight.pop(lease.execution_id, None)
            self._leases.pop(lease.execution_id, None)  # else kept forever
            self.permits.release()
            self._changed.set()
            if self._at_capacity:  # an idle loop is not woken: nothing new to claim
                self._wake.set()

    def _record(self, eid: str, outcome: str) -> None:
        if outcome == "handed_back":
            self._handed_back += 1
        else:
            self._ran += 1
        outcomes = self.outcomes
        outcomes.append((eid, outcome))
        if len(outcomes) > 2 * OUTCOMES_KEPT:
            del outcomes[:-OUTCOMES_KEPT]  # in place: amortised O(1) per attempt

    async def _hand_back(self, work: TaskGroup) -> None:
        """Grace period over: cancel what still runs and release each lease
        with ``ff_delay_execution`` to *now*, so another worker resumes the same
        attempt right away (no retry consumed, no failure recorded) instead of
        waiting for lease expiry. If that call fails the lease simply lapses
        and expiry + reclaim recover it: nothing is lost either way."""
        pending = [self._leases[eid] for eid in list(self._inflight)]
        # Taken before cancelling: a cancelled executor forgets its writer.
        writers = {lease.execution_id: self.executor.frames.get(lease.execution_id)
                   for lease in pending}
        reports = {lease.execution_id: self.executor.attempts.get(lease.execution_id)
                   for lease in pending}
        # Fenced before the lease moves: a body still running (shielded, or
        # a sync one in its thread) must fail ensure_lease from here on.
        for lease in pending:
            ctx = self.executor.contexts.get(lease.execution_id)
            if ctx is not None:
                ctx.end_attempt("handed back on drain")
        for scope in list(self._inflight.values()):
            scope.cancel()
        for lease in pending:
            try:
                # Queued frames first: after the hand-back they would be refused.
                await self.executor.flush_frames(lease, writers[lease.execution_id])
                await self.engine.hand_back(lease)
                await self.engine.publish_done(lease.execution_id)
                self._record(lease.execution_id, "handed_back")
                report = reports[lease.execution_id]
                if report is not None:
                    report.handed_back()
            except Exception as exc:
                log.warning("hand-back of %s failed (lease will expire): %s",
                            lease.execution_id, exc)
