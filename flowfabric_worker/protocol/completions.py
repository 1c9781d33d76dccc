"""The ``ff:dag:completions`` message (spec 05 §8.3), decoded."""

from __future__ import annotations

import json
from dataclasses import dataclass

from flowfabric_worker.protocol.ids import ExecutionId, parse_execution_id

__all__ = [
    "Completion",
    "parse_completion",
]


@dataclass(frozen=True, slots=True)
class Completion:
    """One ``ff:dag:completions`` message."""

    execution_id: ExecutionId
    flow_id: str
    outcome: str


def parse_completion(data: bytes | str) -> Completion | None:
    """Decode a message; anything malformed is ``None`` (ignored, spec 05 §8.2)."""
    try:
        obj = json.loads(data)
        eid = parse_execution_id(str(obj["execution_id"]))
        flow_id, outcome = str(obj["flow_id"]), str(obj.get("outcome", ""))
    except Exception:
        return None
    if not flow_id:
        return None
    return Completion(eid, flow_id, outcome)
