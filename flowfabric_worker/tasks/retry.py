"""Retry policies: how a failing task is retried (backoff, limits, which
exceptions count)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from flowfabric_worker.errors import InvalidInput, Permanent, Transient

if TYPE_CHECKING:
    pass


Backoff = Literal["exponential", "linear", "fixed"]


@dataclass(frozen=True)
class Retry:
    """How a failing task is retried.

    ``max_attempts`` counts every attempt including the first, so the default
    of 1 means "never retry". Delays are computed here (the 0.15 library knows
    only exponential/fixed and ignores jitter) and sent as a fixed delay.
    """

    max_attempts: int = 1
    backoff: Backoff = "exponential"
    initial: float = 1.0
    maximum: float = 60.0
    multiplier: float = 2.0
    jitter: float = 0.0
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    give_up_on: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise InvalidInput("Retry.max_attempts must be >= 1")
        if self.backoff not in ("exponential", "linear", "fixed"):
            raise InvalidInput(
                f"Retry.backoff must be exponential, linear or fixed, not {self.backoff!r}"
            )
        if self.initial < 0 or self.maximum < 0 or self.multiplier <= 0:
            raise InvalidInput("Retry delays must be >= 0 and multiplier > 0")
        if not 0.0 <= self.jitter <= 1.0:
            raise InvalidInput("Retry.jitter is a fraction between 0 and 1")

    @property
    def max_retries(self) -> int:
        return self.max_attempts - 1

    def should_retry(self, exc: BaseException) -> bool:
        """Whether this exception class may be retried at all (ignores the count)."""
        if isinstance(exc, Permanent):
            return False
        if isinstance(exc, Transient):
            return True
        if self.give_up_on and isinstance(exc, self.give_up_on):
            return False
        return isinstance(exc, self.retry_on)

    def delay_for(self, retry_count: int) -> float:
        """Seconds to wait before retry number ``retry_count + 1`` (0-based count)."""
        if self.backoff == "fixed":
            base = self.initial
        elif self.backoff == "linear":
            base = self.initial * (retry_count + 1)
        else:
            base = self.initial * self.multiplier ** retry_count
        base = min(base, self.maximum)
        if self.jitter:
            base *= 1.0 + random.uniform(-self.jitter, self.jitter)
        return max(0.0, base)

    def fail_policy_json(self, retry_count: int) -> str:
        """The ``retry_policy`` JSON for ff_fail_execution; "" means no retry."""
        if retry_count >= self.max_retries:
            return ""
        delay_ms = round(self.delay_for(retry_count) * 1000)
        return json.dumps(
            {"max_retries": self.max_retries, "backoff": {"type": "fixed", "delay_ms": delay_ms}},
            separators=(",", ":"),
        )

    def policy_dict(self) -> dict[str, Any]:
        """The stored §6.2 form (informational; the worker sends fail_policy_json)."""
        backoff: dict[str, Any]
        if self.backoff == "fixed":
            backoff = {"type": "fixed", "delay_ms": int(self.initial * 1000)}
        else:
            backoff = {
                "type": "exponential",
                "initial_delay_ms": int(self.initial * 1000),
                "max_delay_ms": int(self.maximum * 1000),
                "multiplier": self.multiplier if self.backoff == "exponential" else 1.0,
                "jitter": self.jitter > 0,
            }
        return {"max_retries": self.max_retries, "backoff": backoff, "retryable_categories": []}
