"""Key builders for the whole key schema of spec 01 §3.

Every builder reproduces the templates exactly: the library derives some keys
itself from the tag of ``KEYS[1]``, so a differently spelled key would address
different data.
"""

from __future__ import annotations

from flowfabric_worker.protocol.ids import ExecutionId, execution_tag

__all__ = [
    "CONFIG_PARTITIONS",
    "DAG_COMPLETIONS",
    "LANES_INDEX",
    "BudgetKeys",
    "ExecKeys",
    "FlowKeys",
    "PartitionKeys",
    "QuotaKeys",
    "worker_alive",
    "worker_caps",
    "workers_index",
]

CONFIG_PARTITIONS = "ff:config:partitions"
LANES_INDEX = "ff:idx:lanes"
DAG_COMPLETIONS = "ff:dag:completions"


#: Pub/sub channels of ours (not part of 0.15's contract): a submitter or a
#: signal sender announces claimable work of a lane; a worker announces that
#: an execution reached a terminal state (or was handed back).
WAKE_CHANNEL = "ffw:wake:{lane}"
DONE_CHANNEL = "ffw:done:{eid}"


def worker_alive(namespace: str, worker_instance_id: str) -> str:
    return f"ff:worker:{namespace}:{worker_instance_id}:alive"


def worker_caps(namespace: str, worker_instance_id: str) -> str:
    return f"ff:worker:{namespace}:{worker_instance_id}:caps"


def workers_index(namespace: str) -> str:
    return f"ff:idx:{namespace}:workers"


class PartitionKeys:
    """Per-partition indexes and partition-scoped records (``fp`` family)."""

    __slots__ = ("tag",)

    def __init__(self, tag: str) -> None:
        self.tag = tag

    # lane scheduling sets
    def lane_eligible(self, lane: str) -> str:
        return f"ff:idx:{self.tag}:lane:{lane}:eligible"

    def lane_delayed(self, lane: str) -> str:
        return f"ff:idx:{self.tag}:lane:{lane}:delayed"

    def lane_active(self, lane: str) -> str:
        return f"ff:idx:{self.tag}:lane:{lane}:active"

    def lane_suspended(self, lane: str) -> str:
        return f"ff:idx:{self.tag}:lane:{lane}:suspended"

    def lane_terminal(self, lane: str) -> str:
        return f"ff:idx:{self.tag}:lane:{lane}:terminal"

    def lane_blocked(self, lane: str, reason: str) -> str:
        """``reason`` ∈ dependencies, budget, quota, route, operator."""
        return f"ff:idx:{self.tag}:lane:{lane}:blocked:{reason}"

    # partition-wide indexes
    @property
    def lease_expiry(self) -> str:
        return f"ff:idx:{self.tag}:lease_expiry"

    def worker_leases(self, worker_instance_id: str) -> str:
        return f"ff:idx:{self.tag}:worker:{worker_instance_id}:leases"

    @property
    def attempt_timeout(self) -> str:
        return f"ff:idx:{self.tag}:attempt_timeout"

    @property
    def execution_deadline(self) -> str:
        return f"ff:idx:{self.tag}:execution_deadline"

    @property
    def suspension_timeout(self) -> str:
        return f"ff:idx:{self.tag}:suspension_timeout"

    @property
    def pending_waitpoint_expiry(self) -> str:
        return f"ff:idx:{self.tag}:pending_waitpoint_expiry"

    @property
    def all_executions(self) -> str:
        return f"ff:idx:{self.tag}:all_executions"

    @property
    def flow_index(self) -> str:
        return f"ff:idx:{self.tag}:flow_index"

    @property
    def cancel_backlog(self) -> str:
        return f"ff:idx:{self.tag}:cancel_backlog"

    @property
    def pending_cancel_groups(self) -> str:
        return f"ff:idx:{self.tag}:pending_cancel_groups"

    @property
    def hmac_keystore(self) -> str:
        return f"ff:sec:{self.tag}:waitpoint_hmac"

    @property
    def signal_delivery(self) -> str:
        return f"ff:part:{self.tag}:signal_delivery"

    @property
    def lease_history_aggregate(self) -> str:
        return f"ff:part:{self.tag}:lease_history"

    @property
    def noop(self) -> str:
        return f"ff:noop:{self.tag}"

    def idempotency(self, namespace: str, key: str) -> str:
        return f"ff:idem:{self.tag}:{namespace}:{key}"

    # waitpoints and signals (they carry the execution's tag, not its id)
    def waitpoint(self, waitpoint_id: str) -> str:
        return f"ff:wp:{self.tag}:{waitpoint_id}"

    def waitpoint_signals(self, waitpoint_id: str) -> str:
        return f"ff:wp:{self.tag}:{waitpoint_id}:signals"

    def waitpoint_condition(self, waitpoint_id: str) -> str:
        return f"ff:wp:{self.tag}:{waitpoint_id}:condition"

    def signal(self, signal_id: str) -> str:
        return f"ff:signal:{self.tag}:{signal_id}"

    def signal_payload(self, signal_id: str) -> str:
        return f"ff:signal:{self.tag}:{signal_id}:payload"

    def signal_dedup(self, waitpoint_id: str, idempotency_key: str) -> str:
        return f"ff:sigdedup:{self.tag}:{waitpoint_id}:{idempotency_key}"

    def suspend_dedup(self, eid: ExecutionId, idempotency_key: str) -> str:
        return f"ff:dedup:suspend:{self.tag}:{eid}:{idempotency_key}"

    def flow(self, flow_id: str) -> FlowKeys:
        return FlowKeys(self.tag, flow_id)


class ExecKeys(PartitionKeys):
    """Every key of one execution, plus its partition's indexes."""

    __slots__ = ("eid",)

    def __init__(self, eid: ExecutionId) -> None:
        super().__init__(execution_tag(eid))
        self.eid = eid

    def _x(self, suffix: str) -> str:
        return f"ff:exec:{self.tag}:{self.eid}:{suffix}"

    @property
    def core(self) -> str:
        return self._x("core")

    @property
    def payload(self) -> str:
        return self._x("payload")

    @property
    def result(self) -> str:
        return self._x("result")

    @property
    def policy(self) -> str:
        return self._x("policy")

    @property
    def tags(self) -> str:
        return self._x("tags")

    @property
    def claim_grant(self) -> str:
        return self._x("claim_grant")

    @property
    def lease_current(self) -> str:
        return self._x("lease:current")

    @property
    def lease_history(self) -> str:
        return self._x("lease:history")

    @property
    def attempts(self) -> str:
        return self._x("attempts")

    @property
    def suspension_current(self) -> str:
        return self._x("suspension:current")

    @property
    def satisfied_set(self) -> str:
        return self._x("suspension:current:satisfied_set")

    @property
    def satisfied_signals(self) -> str:
        return self._x("suspension:current:satisfied_set:signals")

    @property
    def member_map(self) -> str:
        return self._x("suspension:current:member_map")

    @property
    def waitpoints(self) -> str:
        return self._x("waitpoints")

    @property
    def signals(self) -> str:
        return self._x("signals")

    @property
    def deps_meta(self) -> str:
        return self._x("deps:meta")

    @property
    def deps_unresolved(self) -> str:
        return self._x("deps:unresolved")

    @property
    def deps_all_edges(self) -> str:
        return self._x("deps:all_edges")

    def dep(self, edge_id: str) -> str:
        return self._x(f"dep:{edge_id}")

    def attempt(self, index: int) -> str:
        return f"ff:attempt:{self.tag}:{self.eid}:{index}"

    def attempt_usage(self, index: int) -> str:
        return f"ff:attempt:{self.tag}:{self.eid}:{index}:usage"

    def attempt_policy(self, index: int) -> str:
        return f"ff:attempt:{self.tag}:{self.eid}:{index}:policy"

    def attempt_summary(self, index: int) -> str:
        return f"ff:attempt:{self.tag}:{self.eid}:{index}:summary"

    def stream(self, index: int) -> str:
        return f"ff:stream:{self.tag}:{self.eid}:{index}"

    def stream_meta(self, index: int) -> str:
        return f"ff:stream:{self.tag}:{self.eid}:{index}:meta"

    # our own extension records (ffw library): never collide with ff:*
    @property
    def journal(self) -> str:
        return f"ffw:journal:{self.tag}:{self.eid}"


class FlowKeys:
    """Keys of one flow (on the flow's ``fp`` partition)."""

    __slots__ = ("flow_id", "tag")

    def __init__(self, tag: str, flow_id: str) -> None:
        self.tag = tag
        self.flow_id = flow_id

    def _f(self, suffix: str) -> str:
        return f"ff:flow:{self.tag}:{self.flow_id}:{suffix}"

    @property
    def core(self) -> str:
        return self._f("core")

    @property
    def members(self) -> str:
        return self._f("members")

    @property
    def tags(self) -> str:
        return self._f("tags")

    def edge(self, edge_id: str) -> str:
        return self._f(f"edge:{edge_id}")

    def outgoing(self, upstream: ExecutionId) -> str:
        return self._f(f"out:{upstream}")

    def incoming(self, downstream: ExecutionId) -> str:
        return self._f(f"in:{downstream}")

    def edge_group(self, downstream: ExecutionId) -> str:
        return self._f(f"edgegroup:{downstream}")

    @property
    def pending_cancels(self) -> str:
        return self._f("pending_cancels")

    @property
    def summary(self) -> str:
        return self._f("summary")

    def grant(self, edge_id: str) -> str:
        return self._f(f"grant:{edge_id}")


class BudgetKeys:
    """Keys of one budget (``b`` family)."""

    __slots__ = ("budget_id", "tag")

    def __init__(self, tag: str, budget_id: str) -> None:
        self.tag = tag
        self.budget_id = budget_id

    @property
    def definition(self) -> str:
        return f"ff:budget:{self.tag}:{self.budget_id}"

    @property
    def limits(self) -> str:
        return f"{self.definition}:limits"

    @property
    def usage(self) -> str:
        return f"{self.definition}:usage"

    def by_exec(self, eid: ExecutionId) -> str:
        return f"{self.definition}:by_exec:{eid}"

    @property
    def by_exec_index(self) -> str:
        return f"{self.definition}:by_exec:index"

    @property
    def resets(self) -> str:
        return f"ff:idx:{self.tag}:budget_resets"

    @property
    def policies(self) -> str:
        return f"ff:idx:{self.tag}:budget_policies"

    def usage_dedup(self, dedup_id: str) -> str:
        return f"ff:usagededup:{self.tag}:{dedup_id}"


class QuotaKeys:
    """Keys of one quota policy (``q`` family)."""

    __slots__ = ("quota_id", "tag")

    def __init__(self, tag: str, quota_id: str) -> None:
        self.tag = tag
        self.quota_id = quota_id

    @property
    def definition(self) -> str:
        return f"ff:quota:{self.tag}:{self.quota_id}"

    def window(self, dimension: str) -> str:
        return f"{self.definition}:window:{dimension}"

    @property
    def concurrency(self) -> str:
        return f"{self.definition}:concurrency"

    def admitted(self, eid: ExecutionId) -> str:
        return f"{self.definition}:admitted:{eid}"

    @property
    def admitted_set(self) -> str:
        return f"{self.definition}:admitted_set"

    @property
    def policies(self) -> str:
        return f"ff:idx:{self.tag}:quota_policies"
