"""Queue depth per lane and state, read from the server's indexes.

What ``flowfabric-worker metrics`` (and ``scan --metrics-port``) export as
``ffw_queue_depth{lane,state}`` and ``ff_cancel_backlog_depth``, so a
dashboard shows the backlog without any worker running. One pipeline of
``ZCARD`` per read: every lane index of every execution partition (a lane's
solo executions share one partition, flow members are spread over all), and
each partition's cancel backlog. No key is scanned.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import anyio

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.protocol.keys import LANES_INDEX, PartitionKeys
from flowfabric_worker.protocol.partitions import tag as partition_tag

__all__ = ["BLOCK_REASONS", "STATES", "QueueDepths", "export_queue_depths", "read_queue_depths"]

log = logging.getLogger("flowfabric_worker.queue_depth")

#: Reasons of the ``blocked:<reason>`` lane indexes (protocol/keys.py).
BLOCK_REASONS = ("dependencies", "budget", "quota", "route", "operator")
#: The ``state`` label values: one per lane index.
STATES = ("eligible", "delayed", "active", "suspended", "terminal",
          *(f"blocked_{r}" for r in BLOCK_REASONS))


def _index(pk: PartitionKeys, lane: str, state: str) -> str:
    if state.startswith("blocked_"):
        return pk.lane_blocked(lane, state.removeprefix("blocked_"))
    return str(getattr(pk, f"lane_{state}")(lane))


@dataclass(frozen=True)
class QueueDepths:
    """Executions per ``(lane, state)``, and flows whose member cancels wait
    in a cancel backlog."""

    depths: dict[tuple[str, str], int]
    cancel_backlog: int


async def read_queue_depths(backend: Backend, lanes: Sequence[str] | None = None) -> QueueDepths:
    """Count every lane index (``lanes``, else the lane registry)."""
    names = sorted(set(lanes) if lanes else set(await backend.lane_members(LANES_INDEX)))
    parts = [PartitionKeys(partition_tag("fp", i))
             for i in range(backend.partitions.num_flow_partitions)]
    where = [(lane, state) for lane in names for state in STATES]
    commands = [["ZCARD", _index(pk, lane, state)] for pk in parts for lane, state in where]
    commands += [["ZCARD", pk.cancel_backlog] for pk in parts]
    replies = await backend.read_many(commands)
    depths = dict.fromkeys(where, 0)
    for n, reply in enumerate(replies[:len(commands) - len(parts)]):
        depths[where[n % len(where)]] += int(reply or 0)
    backlog = sum(int(r or 0) for r in replies[len(commands) - len(parts):])
    return QueueDepths(depths, backlog)


async def export_queue_depths(backend: Backend, sink: Callable[[QueueDepths], None], *,
                              interval: float = 15.0, lanes: Sequence[str] | None = None,
                              stop: anyio.Event | None = None) -> None:
    """Read the depths every ``interval`` seconds into ``sink`` until
    ``stop``; a failed read is logged and retried at the next interval."""
    stop = stop or anyio.Event()
    while not stop.is_set():
        try:
            sink(await read_queue_depths(backend, lanes))
        except Exception as exc:
            log.warning("reading queue depths failed: %s", exc)
        with anyio.move_on_after(interval):
            await stop.wait()
