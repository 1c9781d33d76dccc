"""The machinery of the contract error catalogue: the coded base class, the
``_code`` registration decorator, the class letters of spec 01 §7.3 and the
group classes. The codes themselves are in the sibling modules, one per
area of the catalogue."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeVar

from flowfabric_worker.errors import ContractError, ErrorClass

EngineKind = Literal[
    "not_found", "validation", "contention", "conflict", "state", "bug", "transport"
]

T = ErrorClass.TERMINAL
R = ErrorClass.RETRYABLE
C = ErrorClass.COOPERATIVE
I = ErrorClass.INFORMATIONAL  # noqa: E741 - the catalogue's own letter
B = ErrorClass.BUG
E = ErrorClass.EXPECTED
S = ErrorClass.SOFT

_KIND_CLASS: dict[str, ErrorClass] = {
    "contention": R,
    "not_found": T,
    "validation": T,
    "conflict": T,
    "bug": B,
}

CODE_CLASSES: dict[str, type[ContractError]] = {}
"""code -> class. The prefix code ``already_member_of_different_flow:`` is
stored with its trailing colon."""

_C = TypeVar("_C", bound="CodedContractError")


class CodedContractError(ContractError):
    """Base of every catalogued contract error; ``code`` is fixed per class."""

    raw_class: ErrorClass = T
    engine_kind: EngineKind = "transport"
    lua: bool = True

    def __init__(
        self,
        code: str | None = None,
        details: tuple[str, ...] = (),
        *,
        function: str = "",
        execution_id: str | None = None,
    ) -> None:
        super().__init__(
            type(self).code if code is None else code,
            tuple(details),
            function=function,
            execution_id=execution_id,
        )

    def detail(self, i: int) -> str:
        """Detail slot ``i`` or "" when absent."""
        return self.details[i] if i < len(self.details) else ""


def _code(
    code: str, raw: ErrorClass, kind: EngineKind, *, lua: bool = True
) -> Callable[[type[_C]], type[_C]]:
    def register(cls: type[_C]) -> type[_C]:
        if code in CODE_CLASSES:
            raise RuntimeError(f"contract code {code!r} registered twice")
        cls.code = code
        cls.raw_class = raw
        cls.engine_kind = kind
        cls.lua = lua
        cls.error_class = _KIND_CLASS.get(kind, raw)
        CODE_CLASSES[code] = cls
        return cls

    return register


# --- groups ------------------------------------------------------------------


class LeaseError(CodedContractError):
    """Lease and ownership refusals: the caller's fence no longer holds."""


class ClaimError(CodedContractError):
    """Claiming and scheduling refusals."""


class SuspensionError(CodedContractError):
    """Suspension and waitpoint refusals."""


class SignalError(CodedContractError):
    """Signal delivery refusals."""


class TokenError(SignalError):
    """Waitpoint HMAC token and keystore refusals (spec 01 §8)."""


class StreamError(CodedContractError):
    """Stream, replay and attempt refusals."""


class FlowError(CodedContractError):
    """Flow and dependency refusals."""


class BudgetError(CodedContractError):
    """Budget and quota refusals (reserved / Rust-side codes)."""


class AdmissionError(BudgetError):
    """Quota admission refusals (reserved codes; 0.15 answers with statuses)."""


class ValidationContractError(CodedContractError):
    """The library refused malformed input."""


class ExecutionContractError(CodedContractError):
    """Generic execution-level refusals."""
