"""Completion dispatch (spec 05 §8.2–8.3): subscribe to ``ff:dag:completions``
and run the cascade of each terminal flow member.

Every process running engine roles subscribes. To keep N processes from doing
the same cascade N times, the first one to take a short ``SET NX`` claim on
the (member, outcome) pair runs it; the others drop the message. A claimant
that dies mid-cascade leaves the rest to the dependency reconciler, exactly as
a lost pub/sub message would (pub/sub is at-most-once anyway).
"""

from __future__ import annotations

import logging

import anyio

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.engine.flows.cascade import cascade
from flowfabric_worker.protocol.completions import Completion, parse_completion
from flowfabric_worker.protocol.ids import execution_tag
from flowfabric_worker.protocol.keys import DAG_COMPLETIONS

__all__ = [
    "CLAIM_TTL_MS",
    "COMPLETION_DISPATCH",
    "MAX_INFLIGHT",
    "CompletionDispatcher",
    "log",
]


log = logging.getLogger("flowfabric_worker.flows")


#: The role's name, usable in ``disabled=[...]`` like a scanner name.
COMPLETION_DISPATCH = "completion_dispatch"


#: How long one process owns the cascade of one completion.
CLAIM_TTL_MS = 10_000


#: Cascades running at once in one process (spec 05 §8.2 buffers 1024
#: messages; here the subscriber waits when this many are in flight).
MAX_INFLIGHT = 64


class CompletionDispatcher:
    """The subscriber loop: one pub/sub connection, one detached cascade per
    message (no head-of-line blocking), resubscribe after 1 s on failure."""

    def __init__(self, backend: Backend, *, claim: bool = True) -> None:
        self.backend = backend
        self.claim = claim
        self.dispatched = 0
        self._limit = anyio.Semaphore(MAX_INFLIGHT)

    async def run(self, stop: anyio.Event) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._subscribe, tg)
            await stop.wait()
            tg.cancel_scope.cancel()

    async def _subscribe(self, tg: anyio.abc.TaskGroup) -> None:
        async for data in self.backend.messages(DAG_COMPLETIONS):
            done = parse_completion(data)
            if done is not None:
                await self._limit.acquire()
                tg.start_soon(self._dispatch, done)

    async def _dispatch(self, done: Completion) -> None:
        try:
            if self.claim:
                key = f"ffw:dagclaim:{execution_tag(done.execution_id)}:" \
                      f"{done.execution_id}:{done.outcome}"
                if not await self.backend.claim_once(key, CLAIM_TTL_MS):
                    return
            await cascade(self.backend, done.execution_id, done.flow_id)
            self.dispatched += 1
        except Exception as exc:  # left to the dependency reconciler
            log.warning("cascade of %s failed: %s", done.execution_id, exc)
        finally:
            self._limit.release()
