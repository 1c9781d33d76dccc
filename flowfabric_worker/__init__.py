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

from flowfabric_worker.authoring.decorators import TaskDefinition, flow, task
from flowfabric_worker.client.batch import BatchItemInvalid, BatchSubmitError
from flowfabric_worker.client.client import Client
from flowfabric_worker.client.flow_builder import FlowBuilder
from flowfabric_worker.client.flow_graph import FlowNode, Join, all_of, any_of, quorum
from flowfabric_worker.client.flow_handle import FlowCancelResult, FlowHandle, FlowState
from flowfabric_worker.client.run_handle import RunHandle
from flowfabric_worker.client.schedule_handle import ScheduleHandle, ScheduleInfo
from flowfabric_worker.client.signal_sender import SignalOutcome, WaitpointInfo
from flowfabric_worker.context.task_context import TaskContext
from flowfabric_worker.context.waits import Signal, Waitpoint
from flowfabric_worker.errors import (
    AmbiguousWaitpoint,
    BudgetExceeded,
    ChildFailed,
    ConfigurationError,
    ContractError,
    DurabilityNotConfirmed,
    DurabilityUnavailable,
    FlowFabricError,
    InvalidInput,
    KeystoreError,
    KeystoreInconsistent,
    KeystoreNotInitialized,
    KidInUse,
    LeaseLost,
    NonDeterminismError,
    NoWaitpoint,
    PayloadError,
    PayloadTooLarge,
    Permanent,
    ResultTimeout,
    ResultTypeError,
    SignalPayloadError,
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
    UnmatchedSignalWarning,
)
from flowfabric_worker.protocol.errors import (
    HmacSecretNotInitialized,
    InvalidToken,
    TargetNotSignalable,
    TokenExpired,
    TokenMismatch,
    WaitpointClosed,
)
from flowfabric_worker.settings import Limits, Settings
from flowfabric_worker.tasks.budgets import (
    Budget,
    BudgetInfo,
    Quota,
    QuotaInfo,
    UsageReport,
)
from flowfabric_worker.tasks.flow_control import Debounce, Limit, Rate
from flowfabric_worker.tasks.retry import Retry
from flowfabric_worker.tasks.schedule_specs import Cron, DeclaredSchedule, Every, ScheduleTick

if TYPE_CHECKING:
    from flowfabric_worker.worker.worker import Worker

__version__ = "0.1.0"

__all__ = [
    "AmbiguousWaitpoint",
    "BatchItemInvalid",
    "BatchSubmitError",
    "Budget",
    "BudgetExceeded",
    "BudgetInfo",
    "ChildFailed",
    "Client",
    "ConfigurationError",
    "ContractError",
    "Cron",
    "Debounce",
    "DeclaredSchedule",
    "DurabilityNotConfirmed",
    "DurabilityUnavailable",
    "Every",
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
    "LeaseLost",
    "Limit",
    "Limits",
    "NoWaitpoint",
    "NonDeterminismError",
    "PayloadError",
    "PayloadTooLarge",
    "Permanent",
    "Quota",
    "QuotaInfo",
    "Rate",
    "ResultTimeout",
    "ResultTypeError",
    "Retry",
    "RunHandle",
    "ScheduleHandle",
    "ScheduleInfo",
    "ScheduleTick",
    "Settings",
    "Signal",
    "SignalOutcome",
    "SignalPayloadError",
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
    "UnmatchedSignalWarning",
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
        from flowfabric_worker.worker.worker import Worker

        return Worker
    raise AttributeError(f"module 'flowfabric_worker' has no attribute {name!r}")
