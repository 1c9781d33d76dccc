"""Function-call structs for budgets (spec 04 §6) and for attaching budgets
and a quota policy to an execution.

Budget calls take the budget's partition ``tag`` (``{b:M}``, see
:func:`~flowfabric_worker.protocol.partitions.budget_tag`). The quota and
claim-time admission calls live in ``protocol.quotas`` and stay importable
from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal, cast

import msgspec

from flowfabric_worker.errors import InvalidInput, ScriptError
from flowfabric_worker.protocol.checks import check_budget_tag
from flowfabric_worker.protocol.function import FCall
from flowfabric_worker.protocol.ids import ExecutionId, parse_execution_id, validate_uuid
from flowfabric_worker.protocol.keys import BudgetKeys, ExecKeys
from flowfabric_worker.protocol.quotas import (
    CLAIM_WINDOW,
    AdmissionResult,
    CheckAdmissionAndRecord,
    CreateQuotaPolicy,
    CreateResult,
    ReleaseAdmission,
)

__all__ = [
    "CLAIM_WINDOW",
    "MAX_DIMENSIONS",
    "AdmissionResult",
    "AttachAdmission",
    "BudgetReply",
    "CheckAdmissionAndRecord",
    "CreateBudget",
    "CreateQuotaPolicy",
    "CreateResult",
    "RecordSpend",
    "ReleaseAdmission",
    "ReleaseBudget",
    "ReleaseResult",
    "ReportUsageAndCheck",
    "ResetBudget",
    "ResetResult",
]

MAX_DIMENSIONS = 64
"""0.15's typed wrappers cap a usage call at 64 dimensions (§6.1)."""


def _check_usage(deltas: Mapping[str, int]) -> None:
    if len(deltas) > MAX_DIMENSIONS:
        raise InvalidInput(f"at most {MAX_DIMENSIONS} dimensions per call")
    for dim, delta in deltas.items():
        if not dim:
            raise InvalidInput("dimension names must not be empty")
        if isinstance(delta, bool) or not isinstance(delta, int) or delta < 0:
            raise InvalidInput(f"delta for {dim!r} must be a non-negative integer")



class _BudgetCall(msgspec.Struct, frozen=True, kw_only=True):
    tag: str
    budget_id: str

    def _validate_budget(self) -> None:
        check_budget_tag(self.tag)
        validate_uuid(self.budget_id, "budget id")

    @property
    def bk(self) -> BudgetKeys:
        return BudgetKeys(self.tag, self.budget_id)


class CreateBudget(_BudgetCall, FCall[CreateResult], frozen=True, kw_only=True):
    """``ff_create_budget`` (§6.2); ``limits`` maps dimension → (hard, soft),
    0 disabling either. A replay answers ``created=False`` without comparing."""

    NAME: ClassVar[str] = "ff_create_budget"
    IDEMPOTENT: ClassVar[bool] = True
    scope_type: str
    scope_id: str
    enforcement_mode: str = "strict"
    on_hard_limit: str = "fail"
    on_soft_limit: str = "warn"
    reset_interval_ms: int = 0
    now_ms: int
    limits: dict[str, tuple[int, int]]

    def __post_init__(self) -> None:
        self._validate_budget()
        if self.reset_interval_ms < 0:
            raise InvalidInput("reset_interval_ms must be >= 0")
        if len(self.limits) > MAX_DIMENSIONS:
            raise InvalidInput(f"at most {MAX_DIMENSIONS} dimensions")
        for dim, (hard, soft) in self.limits.items():
            if not dim or hard < 0 or soft < 0:
                raise InvalidInput(f"limits for {dim!r} must be non-negative")

    def keys(self) -> list[str]:
        bk = self.bk
        return [bk.definition, bk.limits, bk.usage, bk.resets, bk.policies]

    def argv(self) -> list[str]:
        dims = sorted(self.limits)
        return [
            self.budget_id,
            self.scope_type,
            self.scope_id,
            self.enforcement_mode,
            self.on_hard_limit,
            self.on_soft_limit,
            str(self.reset_interval_ms),
            str(self.now_ms),
            str(len(dims)),
            *dims,
            *(str(self.limits[d][0]) for d in dims),
            *(str(self.limits[d][1]) for d in dims),
        ]

    def decode(self, reply: Any) -> CreateResult:
        env = self.envelope(reply)
        return CreateResult(id=env.field(0), created=env.status == "OK")


_BudgetStatus = Literal["OK", "ALREADY_APPLIED", "SOFT_BREACH", "HARD_BREACH"]


class BudgetReply(msgspec.Struct, frozen=True):
    """``status``: OK | ALREADY_APPLIED | SOFT_BREACH | HARD_BREACH; on a breach
    the dimension, its value (current for hard, new for soft) and the limit."""

    status: _BudgetStatus
    dimension: str = ""
    value: int = 0
    limit: int = 0

    @property
    def applied(self) -> bool:
        return self.status in ("OK", "SOFT_BREACH")


def _budget_reply(status: str, fields: tuple[str, ...], function: str) -> BudgetReply:
    if status in ("OK", "ALREADY_APPLIED"):
        return BudgetReply(status=cast(_BudgetStatus, status))
    if status in ("SOFT_BREACH", "HARD_BREACH"):
        return BudgetReply(
            status=cast(_BudgetStatus, status),
            dimension=fields[0] if fields else "",
            value=int(fields[1]) if len(fields) > 1 else 0,
            limit=int(fields[2]) if len(fields) > 2 else 0,
        )
    raise ScriptError(f"{function}: unknown budget status {status!r}")


class ReportUsageAndCheck(_BudgetCall, FCall[BudgetReply], frozen=True, kw_only=True):
    """``ff_report_usage_and_check`` (§6.3). Dimensions are sent sorted by name
    (as 0.15's worker does); ``dedup_id`` makes a retry ``ALREADY_APPLIED``."""

    NAME: ClassVar[str] = "ff_report_usage_and_check"
    # Safe to resend only with a dedup_id; the backend cannot know, so no.
    IDEMPOTENT: ClassVar[bool] = False
    deltas: dict[str, int]
    now_ms: int
    dedup_id: str = ""

    def __post_init__(self) -> None:
        self._validate_budget()
        _check_usage(self.deltas)

    def keys(self) -> list[str]:
        bk = self.bk
        return [bk.usage, bk.limits, bk.definition]

    def argv(self) -> list[str]:
        dims = sorted(self.deltas)
        dedup = self.bk.usage_dedup(self.dedup_id) if self.dedup_id else ""
        return [
            str(len(dims)),
            *dims,
            *(str(self.deltas[d]) for d in dims),
            str(self.now_ms),
            dedup,
        ]

    def decode(self, reply: Any) -> BudgetReply:
        env = self.envelope(reply)
        return _budget_reply(env.status, env.fields, self.NAME)


class RecordSpend(_BudgetCall, FCall[BudgetReply], frozen=True, kw_only=True):
    """``ff_record_spend`` (§6.4): like a usage report plus a per-execution
    ledger that :class:`ReleaseBudget` can reverse."""

    NAME: ClassVar[str] = "ff_record_spend"
    deltas: dict[str, int]
    now_ms: int
    dedup_id: str = ""
    eid: ExecutionId | None = None

    def __post_init__(self) -> None:
        self._validate_budget()
        _check_usage(self.deltas)
        if self.eid is not None:
            parse_execution_id(self.eid)

    def keys(self) -> list[str]:
        bk = self.bk
        ledger = bk.by_exec(self.eid) if self.eid else f"{bk.definition}:by_exec:"
        return [bk.usage, bk.limits, bk.definition, ledger, bk.by_exec_index]

    def argv(self) -> list[str]:
        dims = sorted(self.deltas)
        pairs = [x for d in dims for x in (d, str(self.deltas[d]))]
        dedup = self.bk.usage_dedup(self.dedup_id) if self.dedup_id else ""
        return [str(len(dims)), *pairs, str(self.now_ms), dedup, self.eid or ""]

    def decode(self, reply: Any) -> BudgetReply:
        env = self.envelope(reply)
        return _budget_reply(env.status, env.fields, self.NAME)


class ReleaseResult(msgspec.Struct, frozen=True):
    released: bool


class ReleaseBudget(_BudgetCall, FCall[ReleaseResult], frozen=True, kw_only=True):
    """``ff_release_budget`` (§6.5): reverse one execution's ledger."""

    NAME: ClassVar[str] = "ff_release_budget"
    IDEMPOTENT: ClassVar[bool] = True
    eid: ExecutionId

    def __post_init__(self) -> None:
        self._validate_budget()
        parse_execution_id(self.eid)

    def keys(self) -> list[str]:
        bk = self.bk
        return [bk.usage, bk.by_exec(self.eid), bk.by_exec_index]

    def argv(self) -> list[str]:
        return [self.budget_id, self.eid]

    def decode(self, reply: Any) -> ReleaseResult:
        return ReleaseResult(released=self.envelope(reply).field(0) == "released")


class ResetResult(msgspec.Struct, frozen=True):
    next_reset_at: int
    """0 when the budget does not reset periodically."""


class ResetBudget(_BudgetCall, FCall[ResetResult], frozen=True, kw_only=True):
    """``ff_reset_budget`` (§6.6). Not idempotent: every call zeroes usage."""

    NAME: ClassVar[str] = "ff_reset_budget"
    now_ms: int

    def __post_init__(self) -> None:
        self._validate_budget()

    def keys(self) -> list[str]:
        bk = self.bk
        return [bk.definition, bk.usage, bk.resets]

    def argv(self) -> list[str]:
        return [self.budget_id, str(self.now_ms)]

    def decode(self, reply: Any) -> ResetResult:
        return ResetResult(next_reset_at=int(self.envelope(reply).field(0, "0")))


# ---------------------------------------------------------------- attachment


class AttachAdmission(FCall[bool], frozen=True, kw_only=True):
    """``ffw_attach_admission`` (our extension, ``ffw`` library): write
    ``budget_ids`` / ``quota_policy_id`` on an existing exec_core — sent right
    after the create in the submit pipeline; answers ``False`` (and writes
    nothing) when the core does not exist (an idempotent duplicate)."""

    NAME: ClassVar[str] = "ffw_attach_admission"
    LIBRARY: ClassVar[str] = "ffw"
    IDEMPOTENT: ClassVar[bool] = True
    eid: ExecutionId
    budget_ids: str = ""
    quota_policy_id: str = ""

    def __post_init__(self) -> None:
        parse_execution_id(self.eid)
        for bid in (b for b in self.budget_ids.split(",") if b):
            validate_uuid(bid, "budget id")
        if self.quota_policy_id:
            validate_uuid(self.quota_policy_id, "quota id")

    def keys(self) -> list[str]:
        return [ExecKeys(self.eid).core]

    def argv(self) -> list[str]:
        return [self.budget_ids, self.quota_policy_id]

    def decode(self, reply: Any) -> bool:
        return self.envelope(reply).field(0) == "attached"
