"""The error code of our step journal (``ffw`` library)."""

from __future__ import annotations

from flowfabric_worker.protocol.errors.base import CodedContractError, T, _code

__all__ = [
    "NondeterministicStep",
]


@_code("nondeterministic_step", T, "state")
class NondeterministicStep(CodedContractError):
    """``ffw_journal_append``: the step recorded at this index has another
    name or kind (details: index, recorded name, recorded kind) — the task
    code changed between runs or is not deterministic."""

    @property
    def index(self) -> int:
        return int(self.detail(0) or 0)

    @property
    def recorded_name(self) -> str:
        return self.detail(1)

    @property
    def recorded_kind(self) -> str:
        return self.detail(2)
