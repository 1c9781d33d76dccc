"""``TestEnvironment``: an embedded backend, a client and an in-process
worker for the tasks under test, with a virtual clock that skips ahead.

Example::

    async with TestEnvironment.start(tasks=[deploy]) as env:
        run = await deploy.submit(env.client, "api")
        await env.wait_suspended(run)            # waiting for "approve", 24 h timeout
        assert await run.result() == "not approved in time"   # a day passes at once

See docs/testing.md for what the virtual clock covers.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import anyio

from flowfabric_worker.backend.connection import is_memory_url, open_redis
from flowfabric_worker.client.client import Client
from flowfabric_worker.client.run_handle import RunHandle
from flowfabric_worker.client.signal_sender import SignalOutcome
from flowfabric_worker.errors import (
    ConfigurationError,
    ExecutionError,
    InvalidInput,
    ResultTimeout,
)
from flowfabric_worker.protocol.journal import JournalEntry, JournalRead
from flowfabric_worker.protocol.records import Attempt
from flowfabric_worker.protocol.streams import Frame
from flowfabric_worker.tasks.clock import set_wall_clock
from flowfabric_worker.tasks.spec import TaskLike
from flowfabric_worker.testing import clock as virtual
from flowfabric_worker.testing.env_client import EnvClient
from flowfabric_worker.testing.skipper import TimeSkipper
from flowfabric_worker.worker.worker import Worker

__all__ = ["TestEnvironment"]

R = TypeVar("R")

#: The process-wide client wall clock is one: one time-skipping environment
#: at a time per process.
_skipping_env: list[TestEnvironment] = []


class TestEnvironment:
    """A backend, a client (:attr:`client`) and a worker running ``tasks``
    in this process; made by :meth:`start`."""

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(self, client: EnvClient, worker: Worker,
                 clock: virtual.VirtualClock | None, skipper: TimeSkipper | None) -> None:
        #: Submit, signal, cancel through it. Its handles' ``result()`` lets
        #: virtual time pass.
        self.client: Client = client
        self.worker = worker
        #: The virtual clock (None without time skipping).
        self.clock = clock
        self.skipper = skipper

    @property
    def time_skipping(self) -> bool:
        return self.clock is not None

    @classmethod
    @asynccontextmanager
    async def start(
        cls, tasks: Iterable[TaskLike] = (), *, time_skipping: bool = True,
        url: str | None = None, lanes: Sequence[str] | None = None, concurrency: int = 16,
        namespace: str = "default", **worker_options: Any,
    ) -> AsyncIterator[TestEnvironment]:
        """Start an environment; ``async with`` it.

        ``url`` defaults to a fresh ``memory://`` server; a ``redis://`` URL
        runs the same test against a real server (its data is used as it is:
        give it a database of its own), where the server keeps its own clock
        (``time_skipping`` must be False there). ``lanes`` default to the
        tasks' lanes; ``worker_options`` go to the :class:`Worker`."""
        url = url or f"memory://ffw-test-{uuid.uuid4().hex}"
        tasks = list(tasks)
        if time_skipping and not is_memory_url(url):
            raise ConfigurationError(
                "time skipping needs the embedded memory:// backend: a real server "
                f"keeps its own clock ({url.split('://')[0]}://: use time_skipping=False)")
        if time_skipping and _skipping_env:
            raise ConfigurationError(
                "another time-skipping TestEnvironment is open in this process: "
                "the client's wall clock is one per process")
        served = list(lanes or sorted({t.lane for t in tasks}) or ["default"])
        clock = virtual.VirtualClock() if time_skipping else None
        server = None
        if clock is not None:
            probe = open_redis(url)
            server = probe.connection_pool.connection_kwargs["server"]
            await probe.aclose()
            virtual.attach(server, clock)
        previous_wall = set_wall_clock(clock.time) if clock is not None else None
        try:
            client = await EnvClient.open(url, namespace=namespace, init_secrets=True)
            assert isinstance(client, EnvClient)  # Client.open builds its cls
            try:
                options: dict[str, Any] = {
                    "lease_ttl": 30.0, "grace_period": 1.0, "scanner_interval_scale": 0.05,
                    "loop_watchdog": 0.0, **worker_options}
                worker = Worker(client, tasks, lanes=served, concurrency=concurrency,
                                **options)
                skipper = (TimeSkipper(client.backend, clock, served)
                           if clock is not None else None)
                client.skipper = skipper
                env = cls(client, worker, clock, skipper)
                if clock is not None:
                    _skipping_env.append(env)
                try:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(worker.run)
                        if skipper is not None:
                            tg.start_soon(skipper.run)
                        try:
                            yield env
                        finally:
                            worker.stop()
                            if skipper is not None:
                                tg.cancel_scope.cancel()
                finally:
                    if env in _skipping_env:
                        _skipping_env.remove(env)
            finally:
                with anyio.CancelScope(shield=True):
                    await client.close()
        finally:
            if previous_wall is not None:
                set_wall_clock(previous_wall)
            if server is not None:
                virtual.detach(server)

    # --- time ----------------------------------------------------------------

    def now(self) -> datetime:
        """The environment's time (virtual with time skipping), in UTC."""
        seconds = self.clock.time() if self.clock is not None else datetime.now(UTC).timestamp()
        return datetime.fromtimestamp(seconds, UTC)

    async def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass. With time skipping they pass at once, timer
        by timer (each delay, retry, timeout in them fires in order, and what
        it starts runs before the clock moves on); without, in real time."""
        if not seconds >= 0:
            raise InvalidInput(f"sleep needs seconds >= 0, not {seconds!r}")
        if self.skipper is None:
            await anyio.sleep(seconds)
            return
        await self.skipper.sleep(seconds)

    # --- executions ------------------------------------------------------------

    def _handle(self, run: RunHandle[R] | str) -> RunHandle[R]:
        handle: RunHandle[R] = self.client.run(run) if isinstance(run, str) else run
        return handle

    async def result(self, run: RunHandle[R], timeout: float | None = 60.0) -> R:  # noqa: ASYNC109
        """``run.result(timeout)`` with time skipping unlocked, for any handle
        (a flow member's too). ``timeout`` is real seconds."""
        if self.skipper is None:
            return await run.result(timeout)
        async with self.skipper.unlocked():
            return await run.result(timeout)

    async def signal(self, run: RunHandle[Any] | str, name: str, payload: Any = None,
                     **options: Any) -> SignalOutcome:
        """Send signal ``name`` to the run (``client.signal`` options apply;
        ``source`` defaults to ``"test"``)."""
        options.setdefault("source", "test")
        return await self.client.signal(self._handle(run).id, name, payload, **options)

    async def wait_suspended(self, run: RunHandle[Any] | str, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Wait (real ``timeout`` seconds) until the run is suspended, e.g.
        waiting for a signal. Time is not skipped meanwhile, so the wait it
        entered cannot time out before the test answers it."""
        await self._handle(run).wait_for("suspended", timeout=timeout)

    async def frames(self, run: RunHandle[Any] | str, attempt: int | None = None) -> list[Frame]:
        """The frames stored so far in an attempt's stream (default: the current one)."""
        handle = self._handle(run)
        return [f async for f in handle.frames(attempt=attempt, follow=False)]

    async def journal(self, run: RunHandle[Any] | str) -> list[JournalEntry]:
        """The run's step journal: steps, received signals, spawned children,
        sleeps, in order."""
        entries = await self.client.backend.call(JournalRead(eid=self._handle(run).id))
        return list(entries)

    async def attempts(self, run: RunHandle[Any] | str) -> list[Attempt]:
        """Every attempt of the run, in order (``failure_category``,
        ``attempt_state``, ``retry_reason``...)."""
        return await self.client.backend.list_attempts(self._handle(run).id)

    # --- assertions ------------------------------------------------------------

    async def assert_attempts(self, run: RunHandle[Any] | str, count: int) -> list[Attempt]:
        """Assert the run made exactly ``count`` attempts; returns them."""
        attempts = await self.attempts(run)
        if len(attempts) != count:
            states = [(a.attempt_state, a.failure_category) for a in attempts]
            raise AssertionError(f"expected {count} attempts, found {len(attempts)}: {states}")
        return attempts

    async def assert_fails(self, run: RunHandle[Any] | str, *, category: str | None = None,
                           attempts: int | None = None,
                           timeout: float | None = 60.0) -> ExecutionError:  # noqa: ASYNC109
        """Wait for the run's end (skipping time) and assert it ended without
        a result (failed, cancelled, expired or skipped) — with failure
        ``category`` and after
        ``attempts`` attempts when given (categories: ``handler_error``,
        ``handler_panic``, ``timeout``, ``transient``... see
        docs/failures-and-retries.md). Returns the error ``result()`` raised."""
        handle = self._handle(run)
        try:
            value = await self.result(handle, timeout)
        except ResultTimeout:
            raise
        except ExecutionError as exc:
            if category is not None and exc.category != category:
                raise AssertionError(
                    f"expected failure category {category!r}, got {exc.category!r} "
                    f"({exc})") from exc
            if attempts is not None:
                await self.assert_attempts(handle, attempts)
            return exc
        raise AssertionError(f"expected {handle.id} to fail, it completed with {value!r}")
