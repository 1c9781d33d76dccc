"""flowfabric_worker — durable tasks on Redis/Valkey speaking the FlowFabric 0.15
function contract.

Typical use::

    from flowfabric_worker import Client, Retry, task

    @task(retry=Retry(max_attempts=3))
    async def add(a: int, b: int) -> int:
        return a + b

    async with Client.connect("redis://localhost") as client:
        run = await add.submit(client, 1, 2)
        print(await run.result(timeout=10))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .budgets import Budget, BudgetInfo, Limit, Quota, QuotaInfo, UsageReport
from .client import Client, RunHandle
from .errors import (
    AmbiguousWaitpoint,
    BudgetExceeded,
    ChildFailed,
    ConfigurationError,
    ContractError,
    FlowFabricError,
    InvalidInput,
    KeystoreError,
    KeystoreInconsistent,
    KeystoreNotInitialized,
    KidInUse,
    NonDeterminismError,
    NoWaitpoint,
    PayloadError,
    Permanent,
    ResultTimeout,
    SignalTimeout,
    StateNotReached,
    TaskCancelled,
    TaskExpired,
    TaskFailed,
    TaskSkipped,
    Transient,
    TransportError,
    UnknownTask,
    UnknownWaitpoint,
)
from .flows import (
    FlowBuilder,
    FlowCancelResult,
    FlowHandle,
    FlowNode,
    FlowState,
    Join,
    all_of,
    any_of,
    flow,
    quorum,
)
from .protocol.errors import (
    HmacSecretNotInitialized,
    InvalidToken,
    TargetNotSignalable,
    TokenExpired,
    TokenMismatch,
    WaitpointClosed,
)
from .runtime.context import TaskContext
from .runtime.signals import Signal, Waitpoint
from .settings import Settings
from .signals import SignalOutcome, WaitpointInfo
from .task import Retry, TaskDefinition, task

if TYPE_CHECKING:
    from .runtime.worker import Worker

__version__ = "0.1.0"

__all__ = [
    "AmbiguousWaitpoint",
    "Budget",
    "BudgetExceeded",
    "BudgetInfo",
    "ChildFailed",
    "Client",
    "ConfigurationError",
    "ContractError",
    "FlowBuilder",
    "FlowCancelResult",
    "FlowFabricError",
    "FlowHandle",
    "FlowNode",
    "FlowState",
    "HmacSecretNotInitialized",
    "InvalidInput",
    "InvalidToken",
    "Join",
    "KeystoreError",
    "KeystoreInconsistent",
    "KeystoreNotInitialized",
    "KidInUse",
    "Limit",
    "NoWaitpoint",
    "NonDeterminismError",
    "PayloadError",
    "Permanent",
    "Quota",
    "QuotaInfo",
    "ResultTimeout",
    "Retry",
    "RunHandle",
    "Settings",
    "Signal",
    "SignalOutcome",
    "SignalTimeout",
    "StateNotReached",
    "TargetNotSignalable",
    "TaskCancelled",
    "TaskContext",
    "TaskDefinition",
    "TaskExpired",
    "TaskFailed",
    "TaskSkipped",
    "TokenExpired",
    "TokenMismatch",
    "Transient",
    "TransportError",
    "UnknownTask",
    "UnknownWaitpoint",
    "UsageReport",
    "Waitpoint",
    "WaitpointClosed",
    "WaitpointInfo",
    "Worker",
    "all_of",
    "any_of",
    "flow",
    "quorum",
    "task",
]


def __getattr__(name: str) -> Any:
    # The worker pulls in the whole runtime; import it only when asked for.
    if name == "Worker":
        from .runtime.worker import Worker

        return Worker
    raise AttributeError(f"module 'flowfabric_worker' has no attribute {name!r}")
