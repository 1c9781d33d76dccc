"""Contract error codes (spec 01 §7.3) of flows and dependency edges."""

from __future__ import annotations

from flowfabric_worker.protocol.errors.base import (
    FlowError,
    I,
    R,
    T,
    ValidationContractError,
    _code,
)

__all__ = [
    "AlreadyMemberOfDifferentFlow",
    "CycleDetected",
    "DependencyAlreadyExists",
    "DepsNotSatisfied",
    "ExecutionAlreadyInFlow",
    "ExecutionNotInFlow",
    "FlowAlreadyTerminal",
    "FlowNotFound",
    "InvalidArgs",
    "InvalidDependency",
    "InvariantViolation",
    "NotBlockedByDeps",
    "NotRunnable",
    "SelfReferencingEdge",
    "StaleGraphRevision",
    "Terminal",
]


@_code("flow_not_found", T, "not_found")
class FlowNotFound(FlowError):
    """The flow record is missing."""


@_code("execution_not_in_flow", T, "state")
class ExecutionNotInFlow(FlowError):
    """Staging: the upstream or downstream is not a member of the flow."""


@_code("execution_already_in_flow", T, "conflict")
class ExecutionAlreadyInFlow(FlowError):
    """The execution belongs to another flow."""


@_code("already_member_of_different_flow:", T, "conflict")
class AlreadyMemberOfDifferentFlow(ExecutionAlreadyInFlow):
    """Add-member: the execution already belongs to ``flow_id`` (carried inside
    the code string after the colon)."""

    @property
    def flow_id(self) -> str:
        return self.code.split(":", 1)[1] if ":" in self.code else ""


@_code("flow_already_terminal", T, "state")
class FlowAlreadyTerminal(FlowError):
    """The flow is cancelled, completed or failed."""


@_code("stale_graph_revision", R, "contention")
class StaleGraphRevision(FlowError):
    """Re-read the graph revision and retry."""


@_code("dependency_already_exists", T, "conflict")
class DependencyAlreadyExists(FlowError):
    """Staging: an edge with this id exists already."""


@_code("self_referencing_edge", T, "conflict")
class SelfReferencingEdge(FlowError):
    """Staging: upstream equals downstream."""


@_code("cycle_detected", T, "conflict")
class CycleDetected(FlowError):
    """Staging: the edge would close a cycle."""


@_code("invalid_dependency", T, "validation")
class InvalidDependency(FlowError):
    """Resolving: the child holds no dependency record for that edge."""


@_code("deps_not_satisfied", I, "state")
class DepsNotSatisfied(FlowError):
    """Promote-blocked: dependencies still unresolved."""

    @property
    def unsatisfied(self) -> int:
        return int(self.detail(0) or 0)

    @property
    def unresolved(self) -> int:
        return int(self.detail(1) or 0)


@_code("not_blocked_by_deps", I, "state")
class NotBlockedByDeps(FlowError):
    """Promote-blocked: not in ``blocked_by_dependencies``."""


@_code("not_runnable", T, "state")
class NotRunnable(FlowError):
    """Promote-blocked: the phase is not ``runnable``."""


@_code("terminal", T, "state")
class Terminal(FlowError):
    """Promote-blocked: ``terminal_outcome`` is set."""


@_code("invariant_violation", T, "bug")
class InvariantViolation(FlowError):
    """Resolving: edge-group counters exceed the group size (a bug)."""


@_code("invalid_args", T, "validation")
class InvalidArgs(FlowError, ValidationContractError):
    """Sibling-cancel drain/reconcile got an empty flow or downstream id."""
