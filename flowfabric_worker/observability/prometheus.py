"""The Prometheus recorder and its ``/metrics`` endpoint (``prometheus_client``).

Names: FlowFabric 0.15's ``ff_*`` metrics where they measure the same thing,
with its labels, so its operator dashboard shows Python workers beside Rust
ones; ours beside them with the ``ffw_`` prefix. The list, with what each
counts, is in docs/observability.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import start_http_server

__all__ = ["PrometheusRecorder", "QueueDepthGauges", "serve"]

#: Seconds: sub-millisecond steps for claim and Redis latencies.
_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: Seconds: task bodies, from a millisecond to an hour.
_RUN = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        300.0, 900.0, 3600.0)
#: Seconds: scanner passes.
_SCAN = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

#: Outcomes of ``ff_attempt_outcome_total`` an interruption maps to (the rest
#: are not attempt outcomes in 0.15's sense and only have ffw_ counters).
_INTERRUPTED_OUTCOME: Mapping[str, str] = {"cancelled": "cancelled"}


class PrometheusRecorder:
    """Records into ``registry`` (default: prometheus_client's global one,
    which :func:`serve` exposes). One per process and registry."""

    enabled = True

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = REGISTRY if registry is None else registry
        self.registry = r
        # FlowFabric 0.15 names and labels.
        self.attempt_outcome = Counter(
            "ff_attempt_outcome", "Attempts ended, by lane and outcome "
            "(ok, error, timeout, cancelled, retry)", ["lane", "outcome"], registry=r)
        self.claim_from_grant = Histogram(
            "ff_claim_from_grant_duration_seconds", "Seconds from sending the grant and "
            "claim (one pipeline) to the attempt starting on this worker", ["lane"],
            buckets=_FAST, registry=r)
        self.lease_renewals = Counter(
            "ff_lease_renewal", "Lease renewals, by outcome (ok, err)", ["outcome"],
            registry=r)
        self.worker_at_capacity = Counter(
            "ff_worker_at_capacity", "Times the claim loop found every slot busy", registry=r)
        self.budget_hits = Counter(
            "ff_budget_hit", "Claims refused at a budget's hard limit, by dimension",
            ["dimension"], registry=r)
        self.quota_hits = Counter(
            "ff_quota_hit", "Claims refused by a quota, by reason (rate, concurrency)",
            ["reason"], registry=r)
        self.scanner_duration = Histogram(
            "ff_scanner_cycle_duration_seconds", "Seconds per maintenance scanner pass",
            ["scanner"], buckets=_SCAN, registry=r)
        self.scanner_cycles = Counter(
            "ff_scanner_cycle", "Maintenance scanner passes", ["scanner"], registry=r)
        # Ours.
        self.claimed = Counter(
            "ffw_executions_claimed", "Attempts started on this worker, by task, lane and "
            "attempt type (initial, retry, reclaim, resumed...)",
            ["task", "lane", "attempt_type"], registry=r)
        self.completed = Counter(
            "ffw_executions_completed", "Executions completed, by task", ["task"], registry=r)
        self.failed = Counter(
            "ffw_executions_failed", "Executions failed for good, by task and category",
            ["task", "category"], registry=r)
        self.retried = Counter(
            "ffw_executions_retried", "Failed attempts with a retry scheduled, by task and "
            "category", ["task", "category"], registry=r)
        self.reclaimed = Counter(
            "ffw_executions_reclaimed", "Attempts started on a lease another worker lost",
            ["task"], registry=r)
        self.interrupted = Counter(
            "ffw_attempts_interrupted", "Attempts ended without a terminal call, by task "
            "and how (suspended, handed_back, lease_lost, cancelled)", ["task", "how"],
            registry=r)
        self.run_duration = Histogram(
            "ffw_run_duration_seconds", "Seconds from an attempt's start to its terminal "
            "call, by task", ["task"], buckets=_RUN, registry=r)
        self.claim_to_start = Histogram(
            "ffw_claim_to_start_seconds", "Seconds from sending the claim to the task body "
            "starting, by task", ["task"], buckets=_FAST, registry=r)
        self.in_flight = Gauge("ffw_worker_in_flight", "Attempts running on this worker",
                               registry=r)
        self.free_slots = Gauge("ffw_worker_free_slots", "Free concurrency slots of this "
                                "worker", registry=r)
        self.round_trip = Histogram(
            "ffw_redis_round_trip_seconds", "Seconds per probed round trip to the server",
            buckets=_FAST, registry=r)
        self._started: dict[tuple[str, str, str], tuple[Any, Any, Any]] = {}
        self._finished: dict[tuple[str, str, str, str], tuple[Any, Any, Any]] = {}

    def attempt_started(self, task: str, lane: str, attempt_type: str,
                        claim_latency: float) -> None:
        key = (task, lane, attempt_type)
        children = self._started.get(key)
        if children is None:
            # Resolved once per label set: .labels() is most of a sample's cost.
            children = self._started[key] = (
                self.claimed.labels(task, lane, attempt_type),
                self.claim_from_grant.labels(lane), self.claim_to_start.labels(task))
        claimed, from_grant, to_start = children
        claimed.inc()
        if attempt_type == "reclaim":
            self.reclaimed.labels(task).inc()
        from_grant.observe(claim_latency)
        to_start.observe(claim_latency)

    def attempt_finished(self, task: str, lane: str, outcome: str, category: str,
                         duration: float) -> None:
        key = (task, lane, outcome, category)
        children = self._finished.get(key)
        if children is None:
            counter = (self.completed.labels(task) if outcome == "ok"
                       else self.retried.labels(task, category) if outcome == "retry"
                       else self.failed.labels(task, category))
            children = self._finished[key] = (
                self.attempt_outcome.labels(lane, outcome), self.run_duration.labels(task),
                counter)
        by_outcome, run_duration, counter = children
        by_outcome.inc()
        run_duration.observe(duration)
        counter.inc()

    def attempt_interrupted(self, task: str, lane: str, how: str) -> None:
        self.interrupted.labels(task, how).inc()
        outcome = _INTERRUPTED_OUTCOME.get(how)
        if outcome is not None:
            self.attempt_outcome.labels(lane, outcome).inc()

    def lease_renewal(self, ok: bool) -> None:
        self.lease_renewals.labels("ok" if ok else "err").inc()

    def at_capacity(self) -> None:
        self.worker_at_capacity.inc()

    def budget_hit(self, dimension: str) -> None:
        self.budget_hits.labels(dimension).inc()

    def quota_hit(self, reason: str) -> None:
        self.quota_hits.labels(reason).inc()

    def scanner_cycle(self, scanner: str, seconds: float) -> None:
        self.scanner_cycles.labels(scanner).inc()
        self.scanner_duration.labels(scanner).observe(seconds)

    def redis_round_trip(self, seconds: float) -> None:
        self.round_trip.observe(seconds)

    def bind_slots(self, in_flight: Callable[[], float], free: Callable[[], float]) -> None:
        self.in_flight.set_function(in_flight)
        self.free_slots.set_function(free)


class QueueDepthGauges:
    """``ffw_queue_depth{lane,state}`` and ``ff_cancel_backlog_depth``, set
    from the server's indexes by whoever reads them (``flowfabric-worker
    metrics``, ``scan --metrics-port``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = REGISTRY if registry is None else registry
        self.depth = Gauge("ffw_queue_depth", "Executions in a lane's index, by lane and "
                           "state (eligible, delayed, active, suspended, blocked, terminal)",
                           ["lane", "state"], registry=r)
        self.cancel_backlog = Gauge("ff_cancel_backlog_depth",
                                    "Flow members waiting for their cancel to be dispatched",
                                    registry=r)
        self._seen: set[tuple[str, str]] = set()

    def update(self, depths: Mapping[tuple[str, str], int], cancel_backlog: int) -> None:
        """Set every ``(lane, state)`` of ``depths``; one seen before and now
        absent (a lane gone from the registry) is dropped."""
        for key in self._seen - set(depths):
            self.depth.remove(*key)
        for (lane, state), n in depths.items():
            self.depth.labels(lane, state).set(n)
        self._seen = set(depths)
        self.cancel_backlog.set(cancel_backlog)


def serve(port: int, addr: str = "0.0.0.0",
          registry: CollectorRegistry | None = None) -> int:
    """Serve ``/metrics`` on ``addr:port`` from a daemon thread
    (prometheus_client's own HTTP server); returns the bound port (``port=0``:
    any free one)."""
    server, _thread = start_http_server(port, addr=addr,
                                        registry=REGISTRY if registry is None else registry)
    return int(server.server_port)
