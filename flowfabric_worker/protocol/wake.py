"""What a lane's wake channel (``ffw:wake:<lane>``) carries.

A plain wake-up (``"1"``: flows, signals, promotions, batches, older SDKs)
only says "look": the worker reads the lane's eligible index. A single
submission with no budget or quota attached announces *which* execution it
created (issue 18, round trip): a woken worker with a free slot then sends
grant + claim for it straight away, with its pre-read in the same round
trip, instead of reading candidates first. The message is only a hint — the
grant re-checks everything, and a worker that loses the race (or cannot run
the kind) falls back to reading the index as for a plain wake-up.

Executions with budgets or a quota never get a direct wake: admission
(spec 04 §7.5) runs before the grant, which needs the pre-read first.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DIRECT_PREFIX", "PLAIN_WAKE", "DirectWake", "direct_wake", "parse_wake"]

#: The payload of a plain wake-up.
PLAIN_WAKE = "1"

#: Starts a direct wake; never the start of a plain one.
DIRECT_PREFIX = "ffw:claim:"


@dataclass(frozen=True, slots=True)
class DirectWake:
    """A freshly created execution a woken worker may claim directly."""

    eid: str
    lane: str
    kind: str


def direct_wake(eid: str, lane: str, kind: str) -> str:
    """The message announcing ``eid`` (of ``lane``, task ``kind``).

    Execution ids and lanes never hold a newline; the kind goes last, so it
    may hold anything."""
    return f"{DIRECT_PREFIX}{eid}\n{lane}\n{kind}"


def parse_wake(data: object) -> DirectWake | None:
    """The execution a wake message names; ``None`` for a plain wake-up (or
    anything unrecognised: the worker then just looks)."""
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            text = bytes(data).decode()
        except UnicodeDecodeError:
            return None
    elif isinstance(data, str):
        text = data
    else:
        return None
    if not text.startswith(DIRECT_PREFIX):
        return None
    parts = text[len(DIRECT_PREFIX):].split("\n", 2)
    if len(parts) != 3 or not parts[0] or not parts[1]:
        return None
    return DirectWake(parts[0], parts[1], parts[2])
