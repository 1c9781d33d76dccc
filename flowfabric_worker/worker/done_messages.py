"""The done message a worker publishes after a terminal (or hand-back) call.

``ffw:done:<eid>`` wakes the execution's result waiters
(:mod:`flowfabric_worker.client.result_listener`). Both commands below are
sent in the terminal call's pipeline, after the call, so a woken waiter that
reads sees the new state.
"""

from __future__ import annotations

from flowfabric_worker.client.result_listener import CARRIED_MAX, CARRIED_PREFIX
from flowfabric_worker.protocol.keys import DONE_CHANNEL, ExecKeys

__all__ = ["PUBLISH_DONE", "completed_command", "done_command"]

#: The ffw function the complete call's pipeline ends with (lua/ffw/45_done.lua).
#: It reads the state the call left, atomically, so the message can never
#: contradict a read: a completion puts its stored result in the message
#: (when small) and the waiter skips its read; a refused call (lease lost,
#: cancelled meanwhile, a replay of our own landed call) publishes what is
#: actually stored, or the bare id. KEYS: core, result; ARGV: channel, cap,
#: prefix, eid.
PUBLISH_DONE = "ffw_publish_done"


def done_command(eid: str) -> tuple[str, str, str]:
    """The bare done message (after a failure or a hand-back: a refused call
    only costs the waiter a look)."""
    return ("PUBLISH", DONE_CHANNEL.format(eid=eid), eid)


def completed_command(eid: str) -> tuple[str | int | bytes, ...]:
    """The complete call's done message: :data:`PUBLISH_DONE` (the result
    rides along when the call left it stored and small)."""
    k = ExecKeys(eid)
    return ("FCALL", PUBLISH_DONE, 2, k.core, k.result,
            DONE_CHANNEL.format(eid=eid), CARRIED_MAX, CARRIED_PREFIX, eid)
