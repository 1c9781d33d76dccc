"""Re-running a finished execution (``flowfabric-worker retry``): the
contract's replay, ``ff_replay_execution`` (spec 02 §3.20)."""

from __future__ import annotations

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol.ids import parse_execution_id
from flowfabric_worker.protocol.keys import WAKE_CHANNEL, ExecKeys
from flowfabric_worker.protocol.operator import ReplayExecution

__all__ = ["REPLAYABLE", "replay"]

#: Outcomes ``replay`` re-runs. The contract would also replay a completed
#: execution; re-running work that succeeded is a new submission, not a retry,
#: so it is refused here rather than done by a slip of the id.
REPLAYABLE = ("failed", "cancelled", "expired", "skipped")


async def replay(backend: Backend, execution_id: str) -> str:
    """Make a failed, cancelled, expired or skipped execution runnable again
    (a ``replay`` attempt; its arguments, lane and options are kept) and wake
    the lane's workers. Returns the public state it had.

    A skipped flow member goes back to waiting for its upstream edges (the
    contract resets its ``impossible`` edges); anything else becomes
    eligible at once. The contract caps replays per execution
    (``max_replay_count``, default 10)."""
    eid = parse_execution_id(execution_id)
    core = await backend.get_exec_core(eid)
    if core is None:
        raise InvalidInput(f"execution {eid} does not exist")
    state = str(core.public_state)
    if not core.is_terminal:
        raise InvalidInput(f"execution {eid} is {state}, not finished: nothing to retry")
    if state not in REPLAYABLE:
        raise InvalidInput(f"execution {eid} completed; submit it again to re-run it")
    keys = ExecKeys(eid)
    lane = core.lane_id
    if core.terminal_outcome == "skipped" and core.flow_id:
        edges = await backend.set_members(keys.deps_all_edges)
        await backend.call(ReplayExecution(
            eid=eid, lane_id=lane, edge_ids=tuple(edges),
            extra_keys=(keys.lane_blocked(lane, "dependencies"), keys.deps_meta,
                        keys.deps_unresolved, *(keys.dep(e) for e in edges))))
        return state
    await backend.call_and_send(ReplayExecution(eid=eid, lane_id=lane),
                                ["PUBLISH", WAKE_CHANNEL.format(lane=lane), "1"])
    return state
