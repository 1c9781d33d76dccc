"""The signal methods of :class:`~flowfabric_worker.client.client.Client`
(which inherits them): sending a signal, checking one without sending it,
listing an execution's open waitpoints. The work is done by
``client.signal_sender``."""

from __future__ import annotations

from typing import Any

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.client.signal_sender import (
    SignalOutcome,
    WaitpointInfo,
    check_signal,
    open_waitpoints,
    send_signal,
)
from flowfabric_worker.client.signal_types import SignalCheck
from flowfabric_worker.settings import Limits

__all__ = ["SignalMethods"]


class SignalMethods:
    """``Client.signal``, ``validate_signal_payload``, ``pending_waitpoints``."""

    backend: Backend
    limits: Limits

    async def signal(
        self,
        execution_id: str,
        name: str,
        payload: Any = None,
        *,
        idempotency_key: str | None = None,
        source: str = "client",
        source_type: str = "external_api",
        category: str = "callback",
        correlation_id: str = "",
        waitpoint: str | None = None,
        token: str | None = None,
    ) -> SignalOutcome:
        """Send signal ``name`` with a JSON ``payload`` to a waiting execution.

        The target is the execution's open waitpoint: the suspension's primary
        one, else the only pending one; name another with ``waitpoint=`` (id or
        key). Its token is read from the waitpoint record, or (for a bridge
        relaying an outside caller) compared in constant time with ``token``
        (:class:`TokenMismatch` on a difference). A pending waitpoint (task
        still running) gets the signal buffered; an active one evaluates it and
        may resume the execution. The same ``idempotency_key`` on the same
        waitpoint records the signal once (``status == "duplicate"`` after).
        ``source`` (identity) and ``source_type`` are stored with the signal.

        Raises :class:`NoWaitpoint` (nothing waits), :class:`UnknownWaitpoint`,
        :class:`AmbiguousWaitpoint`, and the library's typed refusals:
        :class:`InvalidToken`, :class:`TokenExpired` (the token's kid left its
        rotation grace), :class:`HmacSecretNotInitialized` (no keystore),
        :class:`WaitpointClosed`, :class:`TargetNotSignalable`,
        :class:`SignalLimitExceeded`.

        When the task waits with ``payload_type=``, the payload is checked
        against the JSON Schema it recorded first: :class:`SignalPayloadError`
        (naming the field), nothing written. A name the wait does not wait for
        is sent but comes back ``status == "unmatched"`` with an
        :class:`UnmatchedSignalWarning` (docs/signals.md).
        """
        return await send_signal(
            self.backend, execution_id, name, payload, idempotency_key=idempotency_key,
            source=source, source_type=source_type, category=category,
            correlation_id=correlation_id, waitpoint=waitpoint, token=token,
            limits=self.limits)

    async def validate_signal_payload(self, execution_id: str, name: str, payload: Any = None,
                                      *, waitpoint: str | None = None) -> SignalCheck:
        """Check a signal as :meth:`signal` would, without sending it: raises
        what :meth:`signal` raises before writing (:class:`SignalPayloadError`,
        :class:`NoWaitpoint`...); returns what the wait expects (a
        :class:`SignalCheck`: ``waited_for``, ``payload_type``, ``schema``)."""
        return await check_signal(self.backend, execution_id, name, payload,
                                  waitpoint=waitpoint, limits=self.limits)

    async def pending_waitpoints(self, execution_id: str) -> list[WaitpointInfo]:
        """The execution's open waitpoints (``pending`` and ``active``), the
        suspension's primary first. Tokens print redacted."""
        return await open_waitpoints(self.backend, execution_id)
