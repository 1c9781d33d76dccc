"""Engine roles for flows, run by every standalone worker (unless
``--no-scanners``) and by ``flowfabric-worker scan``; all of them are safe to
run in several processes at once.

* :mod:`.completion` — completion dispatch: ``ff:dag:completions`` subscriber
  running the cascade of :mod:`.cascade` (spec 05 §8).
* :mod:`.reconciler` — ``dependency_reconciler``, its pull safety net.
* :mod:`.cancel` — flow-cancel member dispatch + acks, ``cancel_reconciler``.
* :mod:`.siblings` — ``edge_cancel_dispatcher`` / ``edge_cancel_reconciler``.
* :mod:`.projector` — ``flow_projector`` (derived flow summary).
"""

from __future__ import annotations

from flowfabric_worker.engine.flows.cancel import cancel_members, cancel_reconciler
from flowfabric_worker.engine.flows.cascade import CascadeReport, cascade
from flowfabric_worker.engine.flows.completion import COMPLETION_DISPATCH, CompletionDispatcher
from flowfabric_worker.engine.flows.projector import flow_projector
from flowfabric_worker.engine.flows.reconciler import dependency_reconciler
from flowfabric_worker.engine.flows.siblings import edge_cancel_dispatcher, edge_cancel_reconciler
from flowfabric_worker.engine.runner import Scanner

__all__ = [
    "COMPLETION_DISPATCH",
    "CascadeReport",
    "CompletionDispatcher",
    "cancel_members",
    "cascade",
    "flow_scanners",
]


def flow_scanners() -> list[Scanner]:
    """The flow scanners with 0.15's default intervals (spec 05 §7.2)."""
    return [
        dependency_reconciler(15.0),
        cancel_reconciler(15.0),
        edge_cancel_dispatcher(1.0),
        edge_cancel_reconciler(10.0),
        flow_projector(15.0),
    ]
