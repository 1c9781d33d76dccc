"""The exception hierarchy of flowfabric_worker.

Everything the SDK raises derives from :class:`FlowFabricError`. Three
families sit under it:

* errors the caller made before anything reached Redis (:class:`InvalidInput`,
  :class:`ConfigurationError`);
* errors of the connection and the function library (:class:`TransportError`,
  :class:`ScriptError`, :class:`LibraryError`);
* refusals by the function library, one class per contract error code
  (:class:`ContractError` and its subclasses in
  :mod:`flowfabric_worker.protocol.errors`).

Task authors raise :class:`Permanent` or :class:`Transient` to choose how a
failure is retried; callers of ``run.result()`` get :class:`TaskFailed` and
its relatives.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorClass(StrEnum):
    """How a caller should react to an error (spec 01 §7.3 engine-level class)."""

    TERMINAL = "terminal"
    RETRYABLE = "retryable"
    COOPERATIVE = "cooperative"
    INFORMATIONAL = "informational"
    BUG = "bug"
    EXPECTED = "expected"
    SOFT = "soft"


class FlowFabricError(Exception):
    """Root of every error raised by flowfabric_worker."""

    error_class: ErrorClass = ErrorClass.TERMINAL

    @property
    def retryable(self) -> bool:
        return self.error_class is ErrorClass.RETRYABLE


class ConfigurationError(FlowFabricError):
    """The SDK, worker or deployment is configured in a way that cannot work."""


class InvalidInput(FlowFabricError, ValueError):
    """An argument was refused before anything was sent (bad id, lane, token, ...)."""


class TransportError(FlowFabricError):
    """The connection to Redis failed.

    ``sent`` tells whether the command may have reached the server: a failure
    before sending is always safe to retry, a lost reply only for calls the
    contract makes idempotent.
    """

    error_class = ErrorClass.RETRYABLE

    def __init__(self, message: str, *, sent: bool = False) -> None:
        super().__init__(message)
        self.sent = sent


class ScriptError(FlowFabricError):
    """The function library answered with a Redis error reply (a Lua crash),
    not with a contract envelope."""


class LibraryError(ConfigurationError):
    """The function library is missing, of the wrong version, or failed to load."""


class ContractError(FlowFabricError):
    """A refusal ``[0, code, details...]`` from the function library.

    Each contract code maps to exactly one subclass (see
    :mod:`flowfabric_worker.protocol.errors`); codes this SDK does not know map
    to :class:`UnknownContractError`.
    """

    code: str = ""

    def __init__(
        self,
        code: str,
        details: tuple[str, ...] = (),
        *,
        function: str = "",
        execution_id: str | None = None,
    ) -> None:
        self.code = code
        self.details = details
        self.function = function
        self.execution_id = execution_id
        where = f" in {function}" if function else ""
        who = f" (execution {execution_id})" if execution_id else ""
        extra = f": {', '.join(details)}" if details else ""
        super().__init__(f"{code}{where}{who}{extra}")


class UnknownContractError(ContractError):
    """A contract code this SDK has no class for; ``code`` and ``details`` are kept."""


# --- raised by task code to choose a failure class -------------------------


class TaskError(FlowFabricError):
    """Base of the exceptions task code raises to control failure handling."""


class Permanent(TaskError):
    """Fail the execution without retrying, whatever the retry policy says."""


class Transient(TaskError):
    """Fail this attempt and retry according to the task's retry policy."""


# --- durable execution (steps, signals, sleeps) -----------------------------


class NonDeterminismError(FlowFabricError):
    """A replay of a task took another path than the run that journaled it:
    the step (or wait) at journal position ``index`` is ``name`` now but was
    ``recorded`` before. The task code changed while executions were in
    flight, or it depends on something outside its journal (time, random,
    unjournaled I/O). The execution fails permanently (no retry), even if
    the task code catches this exception.
    """

    def __init__(self, execution_id: str, index: int, name: str, recorded: str) -> None:
        self.execution_id = execution_id
        self.index = index
        self.name = name
        self.recorded = recorded
        super().__init__(
            f"non-deterministic replay of {execution_id} at journal position {index}: "
            f"the task now runs {name!r} where the journal recorded {recorded!r}"
        )


class SignalTimeout(FlowFabricError, TimeoutError):
    """``ctx.wait_for_signal(..., on_timeout="auto_resume")`` ended without
    the awaited signal(s): the timeout passed (``reason == "timeout"``) or an
    operator resumed the execution by hand (``reason == "operator_resume"``).
    ``signals`` holds whatever had arrived before (for ``all``/count waits).
    Catch it to take a default path; uncaught it fails the execution without
    retry (a replay would see the same recorded timeout).
    """

    def __init__(self, message: str, *, reason: str = "timeout",
                 signals: tuple[object, ...] = ()) -> None:
        super().__init__(message)
        self.reason = reason
        self.signals = signals


# --- raised to callers waiting on an execution -----------------------------


class ExecutionError(FlowFabricError):
    """An execution ended in a way that produced no result."""

    def __init__(self, message: str, *, execution_id: str, reason: str = "",
                 category: str = "") -> None:
        super().__init__(message)
        self.execution_id = execution_id
        self.reason = reason
        self.category = category


class TaskFailed(ExecutionError):
    """The execution ended ``failed``; ``reason`` and ``category`` say why."""


class TaskCancelled(ExecutionError):
    """The execution was cancelled."""


class TaskExpired(ExecutionError):
    """The execution ran past its deadline (or a suspension expired it)."""


class TaskSkipped(ExecutionError):
    """The execution was skipped because an upstream dependency failed."""


class ResultTimeout(FlowFabricError, TimeoutError):
    """``run.result(timeout=...)`` gave up before the execution finished."""


class PayloadError(FlowFabricError):
    """A payload or result does not match the declared type, or cannot be
    encoded as JSON (nested deeper than ``Limits.max_depth``, a lone surrogate
    in a string, a NaN or infinite float)."""


class PayloadTooLarge(PayloadError, InvalidInput):
    """An encoded payload, result or signal payload is over its bound in
    :class:`~flowfabric_worker.settings.Limits`; ``size`` and ``limit`` are in
    bytes. Also an :class:`InvalidInput`, which oversize signal payloads and
    frames raised before."""

    def __init__(self, message: str, *, size: int, limit: int) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


class ResultTypeError(PayloadError):
    """A task returned a value its return annotation does not allow (checked
    on the worker, failure category ``result_type``, never retried): the
    message names the task, the annotation and what was wrong."""

    def __init__(self, message: str, *, task: str, annotation: str) -> None:
        super().__init__(message)
        self.task = task
        self.annotation = annotation


class SignalPayloadError(PayloadError, InvalidInput):
    """A signal payload does not match the JSON Schema the waiting task
    recorded for it (``wait_for_signal(..., payload_type=...)``); refused
    before anything is written. ``problems`` lists ``(path, message)``
    pairs, ``path`` in JSON-path form (``$.ok``)."""

    def __init__(self, message: str, *, execution_id: str, signal_name: str,
                 problems: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.execution_id = execution_id
        self.signal_name = signal_name
        self.problems = problems


class UnknownTask(FlowFabricError):
    """No task with that name is registered."""


class StateNotReached(FlowFabricError):
    """``run.wait_for(...)``: the execution ended in a state that can never turn
    into one of the awaited states; ``state`` is where it ended."""

    def __init__(self, message: str, *, execution_id: str, state: str) -> None:
        super().__init__(message)
        self.execution_id = execution_id
        self.state = state


# --- signals and the waitpoint keystore --------------------------------------


class NoWaitpoint(FlowFabricError):
    """The execution has no open (pending or active) waitpoint to signal.

    ``state`` is the execution's public state when it was looked at (e.g.
    ``active`` before the task reached its wait, ``completed`` after).
    """

    def __init__(self, message: str, *, execution_id: str, state: str = "") -> None:
        super().__init__(message)
        self.execution_id = execution_id
        self.state = state


class UnknownWaitpoint(NoWaitpoint):
    """The named waitpoint does not exist, is closed, or belongs to another
    execution (the same answer for all three, so nothing is revealed)."""


class AmbiguousWaitpoint(InvalidInput):
    """Several waitpoints are open; name one with ``waitpoint=``."""


class UnmatchedSignalWarning(UserWarning):
    """A signal was sent under a name the waiting task does not wait for: it
    is recorded on the waitpoint but resumes nothing (status ``unmatched``)."""


class KeystoreError(ConfigurationError):
    """The waitpoint HMAC keystore (spec 01 §8.3) is not in a usable state."""


class KeystoreNotInitialized(KeystoreError):
    """Some or all partitions have no signing kid: run ``flowfabric-worker secrets init``."""


class KeystoreInconsistent(KeystoreError):
    """Partitions disagree on the current kid (an interrupted rotation); running
    ``flowfabric-worker secrets init`` completes it."""


class KidInUse(KeystoreError):
    """Rotation to a kid the keystore already knows (current, previous, or still
    stored). Re-using a kid silently kills its tokens later (spec 03 §5.6)."""


class ChildFailed(ExecutionError):
    """A child awaited with ``ctx.child`` / ``ctx.gather`` ended without a
    result: ``state`` is ``failed``, ``cancelled``, ``expired`` or
    ``skipped``; ``execution_id`` is the child's. Uncaught in the parent, it
    fails the parent like any other exception (retried per its policy)."""

    def __init__(self, message: str, *, execution_id: str, state: str,
                 reason: str = "", category: str = "") -> None:
        super().__init__(message, execution_id=execution_id, reason=reason, category=category)
        self.state = state


# --- budgets -------------------------------------------------------------------


class BudgetExceeded(Permanent):
    """A usage report would take a budget past a hard limit
    (``ctx.report_usage`` got ``HARD_BREACH``): nothing of that report was
    counted against the budget. Uncaught, it fails the execution without
    retry, category ``budget_hard_breach``.

    ``used`` is the usage before the report, ``limit`` the hard limit and
    ``requested`` the delta that did not fit. (Not the reserved contract code
    ``budget_exceeded`` of :mod:`flowfabric_worker.protocol.errors`, which no
    0.15 function emits.)
    """

    def __init__(self, message: str, *, budget_id: str, dimension: str, used: int,
                 limit: int, requested: int = 0) -> None:
        super().__init__(message)
        self.budget_id = budget_id
        self.dimension = dimension
        self.used = used
        self.limit = limit
        self.requested = requested


class LeaseLost(FlowFabricError):
    """This worker's claim on an execution is gone (stale, revoked or expired).

    Raised by :meth:`TaskContext.ensure_lease` and by a terminal call made
    after the lease was lost; it never means the outcome was recorded.
    """

    def __init__(self, execution_id: str, reason: str) -> None:
        self.execution_id = execution_id
        self.reason = reason
        super().__init__(f"lease lost for {execution_id}: {reason}")


# --- durability (docs/operations.md, "Durability") ---------------------------


class DurabilityUnavailable(ConfigurationError):
    """``durability`` asks for a guarantee this server cannot give: ``strict``
    on ``memory://``, on a server without ``WAITAOF`` (Redis/Valkey < 7.2)
    or without ``appendonly yes``; ``replicas:N`` with fewer than N replicas
    connected. Raised when connecting, before anything is acknowledged."""


class DurabilityNotConfirmed(TransportError):
    """The write was applied, but the server did not confirm it durable
    (fsynced to the AOF, or received by the replicas) within the timeout.

    Like a lost reply (``sent`` is True): the write may or may not survive a
    crash. A terminal call is retried (a resend is answered idempotently);
    a submission can be resent with the same ``idempotency_key``."""

    def __init__(self, message: str) -> None:
        super().__init__(message, sent=True)
