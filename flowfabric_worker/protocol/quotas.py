"""Function-call structs for quota policies and claim-time admission
(spec 04 §7).

Quota calls take the quota's partition ``tag`` (``{q:K}``, see
:func:`~flowfabric_worker.protocol.partitions.quota_tag`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import msgspec

from flowfabric_worker.errors import InvalidInput, ScriptError
from flowfabric_worker.protocol.checks import check_quota_tag
from flowfabric_worker.protocol.function import FCall, as_str
from flowfabric_worker.protocol.ids import ExecutionId, parse_execution_id, validate_uuid
from flowfabric_worker.protocol.keys import QuotaKeys

__all__ = [
    "CLAIM_WINDOW",
    "AdmissionResult",
    "CheckAdmissionAndRecord",
    "CreateQuotaPolicy",
    "CreateResult",
    "QuotaRecount",
    "ReleaseAdmission",
]

CLAIM_WINDOW = "default"
"""The window dimension the claim path uses (§3.4, §7.5); keep it for interop."""

class CreateResult(msgspec.Struct, frozen=True):
    """What a create answers: ``ff_create_quota_policy`` here, and
    ``ff_create_budget`` (``protocol.budgets``), which shares it."""

    id: str
    created: bool



class _QuotaCall(msgspec.Struct, frozen=True, kw_only=True):
    tag: str
    quota_id: str

    def _validate_quota(self) -> None:
        check_quota_tag(self.tag)
        validate_uuid(self.quota_id, "quota id")

    @property
    def qk(self) -> QuotaKeys:
        return QuotaKeys(self.tag, self.quota_id)


class CreateQuotaPolicy(_QuotaCall, FCall[CreateResult], frozen=True, kw_only=True):
    """``ff_create_quota_policy`` (§7.2)."""

    NAME: ClassVar[str] = "ff_create_quota_policy"
    IDEMPOTENT: ClassVar[bool] = True
    window_seconds: int
    max_requests_per_window: int
    max_concurrent: int
    now_ms: int

    def __post_init__(self) -> None:
        self._validate_quota()
        for name in ("window_seconds", "max_requests_per_window", "max_concurrent"):
            if getattr(self, name) < 0:
                raise InvalidInput(f"{name} must be >= 0")

    def keys(self) -> list[str]:
        qk = self.qk
        return [
            qk.definition,
            qk.window("requests_per_window"),
            qk.concurrency,
            qk.admitted_set,
            qk.policies,
        ]

    def argv(self) -> list[str]:
        return [
            self.quota_id,
            str(self.window_seconds),
            str(self.max_requests_per_window),
            str(self.max_concurrent),
            str(self.now_ms),
        ]

    def decode(self, reply: Any) -> CreateResult:
        env = self.envelope(reply)
        return CreateResult(id=env.field(0), created=env.status == "OK")


class AdmissionResult(msgspec.Struct, frozen=True):
    """``status``: ADMITTED | ALREADY_ADMITTED | RATE_EXCEEDED |
    CONCURRENCY_EXCEEDED; ``retry_after_ms`` only for RATE_EXCEEDED."""

    status: Literal["ADMITTED", "ALREADY_ADMITTED", "RATE_EXCEEDED", "CONCURRENCY_EXCEEDED"]
    retry_after_ms: int = 0

    @property
    def admitted(self) -> bool:
        return self.status in ("ADMITTED", "ALREADY_ADMITTED")


class CheckAdmissionAndRecord(_QuotaCall, FCall[AdmissionResult], frozen=True, kw_only=True):
    """``ff_check_admission_and_record`` (§7.3). Its reply has no leading
    integer: ``["ADMITTED"]``, ``["RATE_EXCEEDED", retry]``..."""

    NAME: ClassVar[str] = "ff_check_admission_and_record"
    eid: ExecutionId
    now_ms: int
    window_seconds: int
    rate_limit: int
    concurrency_cap: int
    jitter_ms: int = 0
    window: str = CLAIM_WINDOW

    def __post_init__(self) -> None:
        self._validate_quota()
        parse_execution_id(self.eid)
        for name in ("window_seconds", "rate_limit", "concurrency_cap", "jitter_ms"):
            if getattr(self, name) < 0:
                raise InvalidInput(f"{name} must be >= 0")

    def keys(self) -> list[str]:
        qk = self.qk
        return [
            qk.window(self.window),
            qk.concurrency,
            qk.definition,
            qk.admitted(self.eid),
            qk.admitted_set,
        ]

    def argv(self) -> list[str]:
        return [
            str(self.now_ms),
            str(self.window_seconds),
            str(self.rate_limit),
            str(self.concurrency_cap),
            self.eid,
            str(self.jitter_ms),
        ]

    def decode(self, reply: Any) -> AdmissionResult:
        if isinstance(reply, list | tuple) and reply and reply[0] == 0:
            self.envelope(reply)  # raises the mapped refusal (invalid_input)
        if not isinstance(reply, list | tuple) or not reply:
            raise ScriptError(f"{self.NAME}: malformed reply {reply!r}")
        status = as_str(reply[0])
        if status == "RATE_EXCEEDED":
            retry = int(as_str(reply[1])) if len(reply) > 1 else 0
            return AdmissionResult(status="RATE_EXCEEDED", retry_after_ms=retry)
        if status in ("ADMITTED", "ALREADY_ADMITTED", "CONCURRENCY_EXCEEDED"):
            return AdmissionResult(status=status)  # type: ignore[arg-type]
        raise ScriptError(f"{self.NAME}: unknown admission reply {reply!r}")


class ReleaseAdmission(_QuotaCall, FCall[None], frozen=True, kw_only=True):
    """``ff_release_admission`` (§7.4): undo an admission after a failed grant."""

    NAME: ClassVar[str] = "ff_release_admission"
    IDEMPOTENT: ClassVar[bool] = True
    eid: ExecutionId

    def __post_init__(self) -> None:
        self._validate_quota()
        parse_execution_id(self.eid)

    def keys(self) -> list[str]:
        qk = self.qk
        return [qk.admitted(self.eid), qk.admitted_set, qk.concurrency]

    def argv(self) -> list[str]:
        return [self.eid]

    def decode(self, reply: Any) -> None:
        self.envelope(reply)



class QuotaRecount(_QuotaCall, FCall[bool], frozen=True, kw_only=True):
    """``ffw_quota_recount`` (our library; the quota reconciler, spec 05
    §7.2 #14, as one atomic step): trim both windows to ``cutoff_ms``, drop
    admitted ids whose guard key is gone, rewrite a drifted concurrency
    counter. ``True`` when something was fixed."""

    NAME: ClassVar[str] = "ffw_quota_recount"
    LIBRARY: ClassVar[str] = "ffw"
    IDEMPOTENT: ClassVar[bool] = True
    cutoff_ms: int

    def __post_init__(self) -> None:
        self._validate_quota()

    def keys(self) -> list[str]:
        qk = self.qk
        return [qk.admitted_set, qk.concurrency, qk.window("requests_per_window"),
                qk.window(CLAIM_WINDOW)]

    def argv(self) -> list[str]:
        return [str(self.cutoff_ms)]

    def decode(self, reply: Any) -> bool:
        return self.envelope(reply).field(0) == "fixed"
