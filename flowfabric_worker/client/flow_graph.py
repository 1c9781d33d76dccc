"""The parts of a static flow (DAG): nodes, edges and the join policies of
an edge group."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol.budgets import AttachAdmission
from flowfabric_worker.protocol.ids import ExecutionId
from flowfabric_worker.protocol.lifecycle import CreateExecution
from flowfabric_worker.tasks.spec import TaskSpec

if TYPE_CHECKING:
    pass

__all__ = [
    "FlowEdge",
    "FlowNode",
    "Join",
    "R",
    "all_of",
    "any_of",
    "quorum",
]


R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Join:
    """How a member's upstream edges combine (spec 04 §4.4). Build one with
    :func:`all_of`, :func:`any_of` or :func:`quorum`."""

    variant: Literal["all_of", "any_of", "quorum"] = "all_of"
    k: int = 0
    on_satisfied: Literal["", "cancel_remaining", "let_run"] = ""

    @property
    def needed(self) -> int:
        return {"all_of": 0, "any_of": 1}.get(self.variant, self.k)


def all_of() -> Join:
    """Run once every upstream succeeded; skipped as soon as one did not (default)."""
    return Join()


def any_of(*, cancel_remaining: bool = False) -> Join:
    """Run once one upstream succeeded; skipped when all of them failed.
    ``cancel_remaining`` cancels the upstreams still running once decided."""
    return Join("any_of", 0, "cancel_remaining" if cancel_remaining else "let_run")


def quorum(n: int, *, cancel_remaining: bool = False) -> Join:
    """Run once ``n`` upstreams succeeded; skipped once that became impossible."""
    if not isinstance(n, int) or n < 1:
        raise InvalidInput("quorum(n) needs n >= 1")
    return Join("quorum", n, "cancel_remaining" if cancel_remaining else "let_run")


@dataclass(frozen=True, eq=False)
class FlowNode(Generic[R]):
    """A member of a flow being built; pass it in ``after=[...]`` of later
    members and to :meth:`FlowHandle.run` once submitted."""

    id: ExecutionId
    name: str
    task: TaskSpec[Any, R] | None
    after: tuple[FlowNode[Any], ...]
    join: Join
    create: CreateExecution = field(repr=False)
    admission: AttachAdmission | None = field(default=None, repr=False)
    #: The upstream whose result is this member's argument (``input_from``).
    input_from: FlowNode[Any] | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class FlowEdge:
    """One dependency edge as stored (``state`` from the child's dep record)."""

    edge_id: str
    upstream: ExecutionId
    downstream: ExecutionId
    state: str
