"""The flow projector (spec 04 §4.7 item 2, spec 05 §7.2 #16): a derived
summary of each live flow's members on ``flow_summary``.

The authoritative ``public_flow_state`` on ``flow_core`` stays ``open`` or
``cancelled`` (0.15 behaviour); the summary carries the derived
``completed`` / ``failed`` / ``running`` / ``blocked`` / ``open``. Python
extension: up to :data:`SAMPLE` members are read (0.15 samples 50), so flows of
that size are summarised exactly rather than from a sample.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.engine.runner import Candidate, Scanner
from flowfabric_worker.protocol.keys import FlowKeys, PartitionKeys

__all__ = ["FLOW_PROJECTOR", "SUMMARY_STATES", "derive_summary_state", "flow_projector"]

FLOW_PROJECTOR = "flow_projector"
SAMPLE = 1000
SUMMARY_STATES = ("completed", "failed", "cancelled", "expired", "skipped", "active",
                  "suspended", "waiting", "delayed", "rate_limited", "waiting_children")
TERMINAL_STATES = frozenset({"completed", "skipped", "failed", "cancelled", "expired"})


def derive_summary_state(counts: Mapping[str, int], sampled: int) -> tuple[str, bool]:
    """0.15's derivation: ``(state, all_terminal)`` from member public states."""
    terminal = sum(counts.get(s, 0) for s in TERMINAL_STATES)
    all_terminal = sampled > 0 and terminal == sampled
    if all_terminal:
        bad = counts.get("failed", 0) + counts.get("cancelled", 0) + counts.get("expired", 0)
        return ("failed" if bad else "completed"), True
    if counts.get("active", 0):
        return "running", False
    if sum(counts.get(s, 0) for s in ("suspended", "delayed", "rate_limited",
                                       "waiting_children")):
        return "blocked", False
    return "open", False


async def project(backend: Backend, tag: str, flow_id: str, now: int) -> str | None:
    """Summarise one flow; ``None`` when there is nothing to write."""
    fk = FlowKeys(tag, flow_id)
    if await backend.flow_core(fk) is None:
        await backend.remove_from_set(PartitionKeys(tag).flow_index, flow_id)
        return None
    (total,) = await backend.set_sizes([fk.members])
    if total == 0:
        return None
    (sample,) = await backend.sample_sets([fk.members], SAMPLE)
    states = await backend.exec_fields(sample, ["public_state"])
    counts = Counter((s or "unknown") for (s,) in states)
    state, all_terminal = derive_summary_state(counts, len(sample))
    fields = {
        "total_members": str(total),
        "sampled_members": str(len(sample)),
        **{f"members_{s}": str(counts.get(s, 0)) for s in SUMMARY_STATES},
        "public_flow_state": state,
        "last_summary_update_at": str(now),
    }
    await backend.write_flow_summary(tag, flow_id, fields,
                                     settled=all_terminal and len(sample) == total)
    return state


async def _handle(backend: Backend, found: Sequence[Candidate], now: int) -> int:
    done = 0
    for c in found:
        if await project(backend, c.tag, c.member, now) is not None:
            done += 1
    return done


def flow_projector(interval: float = 15.0) -> Scanner:
    """Every flow of ``flow_index`` (walked with SSCAN), 1000 per partition a tick."""

    def indexes(pk: PartitionKeys, _lane: str | None) -> list[str]:
        return [pk.flow_index]

    return Scanner(FLOW_PROJECTOR, interval, 1000, indexes, _handle, set_read="scan")

