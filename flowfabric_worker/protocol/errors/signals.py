"""Contract error codes (spec 01 §7.3) of signal delivery."""

from __future__ import annotations

from flowfabric_worker.protocol.errors.base import I, R, SignalError, T, _code

__all__ = [
    "DuplicateSignal",
    "PayloadTooLarge",
    "SignalLimitExceeded",
    "TargetNotSignalable",
    "WaitpointClosed",
    "WaitpointPendingUseBufferScript",
]


@_code("waitpoint_closed", I, "state")
class WaitpointClosed(SignalError):
    """The signal came too late."""


@_code("waitpoint_pending_use_buffer_script", R, "contention")
class WaitpointPendingUseBufferScript(SignalError):
    """The waitpoint is still pending: use the buffer function."""


@_code("target_not_signalable", T, "state")
class TargetNotSignalable(SignalError):
    """The execution is terminal or the waitpoint not active."""


@_code("signal_limit_exceeded", T, "validation")
class SignalLimitExceeded(SignalError):
    """The per-execution signal cap is reached."""


@_code("duplicate_signal", I, "state", lua=False)
class DuplicateSignal(SignalError):
    """Reserved; 0.15 reports duplicates with the ``DUPLICATE`` status."""


@_code("payload_too_large", T, "validation", lua=False)
class PayloadTooLarge(SignalError):
    """Reserved; 0.15 has no payload size check."""
