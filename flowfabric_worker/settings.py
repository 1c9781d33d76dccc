"""One typed settings object for the CLI and embedders.

Every field can come from a ``FLOWFABRIC_<FIELD>`` environment variable
(e.g. ``FLOWFABRIC_URL``, ``FLOWFABRIC_LANES=a,b``); explicit values (CLI
flags) win over the environment, which wins over the defaults.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from flowfabric_worker.errors import ConfigurationError

ENV_PREFIX = "FLOWFABRIC_"
_LIST_FIELDS = {"lanes", "capabilities", "disabled_scanners"}
#: The ``durability`` values (parsed by ``backend.durability.Durability``).
DURABILITY_PATTERN = r"^(fast|strict|replicas:[1-9][0-9]{0,2})$"

MiB = 1 << 20


class Limits(BaseModel):
    """Bounds on what a client sends and a worker writes (docs/configuration.md
    "Limits"). Checked client-side before the first write: an input over a
    bound raises :class:`~flowfabric_worker.errors.PayloadError` (payloads,
    results) or :class:`~flowfabric_worker.errors.InvalidInput` (tags, keys,
    delays) and nothing reaches Redis.

    Redis stores each payload and result as one string on a single-threaded
    server: a multi-megabyte value stalls every other client while it is
    copied, replicated and (for results) read by each waiter. Large data
    belongs in object storage, with a reference in the payload.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Encoded arguments of one execution (client submit, flow members,
    #: ``ctx.child``). 1 MiB: Temporal warns at 512 KiB and refuses 2 MiB,
    #: SQS / Step Functions stop at 256 KiB.
    max_payload_bytes: int = Field(default=MiB, ge=1)
    #: Encoded result of one execution; a larger one fails the attempt
    #: permanently instead of being written. Same bound as payloads: a result
    #: becomes the next member's payload on a data-passing edge.
    max_result_bytes: int = Field(default=MiB, ge=1)
    #: Encoded payload of one signal.
    max_signal_payload_bytes: int = Field(default=MiB, ge=1)
    #: Tags of one execution (the task's plus the call's; the SDK's own
    #: ``ffw.*`` bookkeeping tags are not counted).
    max_tags: int = Field(default=64, ge=0)
    #: UTF-8 bytes of one tag key / one tag value.
    max_tag_key_bytes: int = Field(default=128, ge=1)
    max_tag_value_bytes: int = Field(default=1024, ge=0)
    #: UTF-8 bytes of an idempotency key (it becomes part of a Redis key name).
    max_idempotency_key_bytes: int = Field(default=256, ge=1)
    #: Seconds a submission may be delayed (365 days).
    max_delay: float = Field(default=365 * 86400.0, ge=0, allow_inf_nan=False)
    #: Nesting depth of a JSON payload, result or signal payload (a scalar
    #: is depth 0, ``[1]`` depth 1). 64 keeps well inside the 128 that
    #: serde_json (FlowFabric's server, other SDKs) decodes by default, and far
    #: from Python's recursion limit.
    max_depth: int = Field(default=64, ge=1, le=512)

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None) -> Limits:
        """Defaults < ``FLOWFABRIC_<FIELD>`` environment (e.g.
        ``FLOWFABRIC_MAX_PAYLOAD_BYTES``)."""
        return Settings.load(environ=environ).limits


class Settings(BaseModel):
    """Connection and worker settings (see docs/configuration.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = "redis://localhost:6379/0"
    mode: Literal["standalone", "attached"] = "standalone"
    #: When a submission or a terminal call is acknowledged: ``fast`` (once
    #: applied), ``strict`` (once the AOF fsynced it: WAITAOF) or
    #: ``replicas:N`` (once N replicas have it: WAIT). docs/operations.md.
    durability: str = Field(default="fast", pattern=DURABILITY_PATTERN)
    namespace: str = "default"
    lanes: list[str] = Field(default_factory=list)
    concurrency: int = Field(default=16, ge=1)
    capabilities: list[str] = Field(default_factory=list)
    lease_ttl: float = Field(default=30.0, gt=0)
    scanners: bool = True
    #: Scanner / engine-role names not to run (e.g. ``completion_dispatch``).
    disabled_scanners: list[str] = Field(default_factory=list)
    #: Multiplies every scanner's default interval (tests use a small one).
    scanner_interval_scale: float = Field(default=1.0, gt=0)
    worker_id: str | None = None
    #: A level, optionally with per-logger ones: ``DEBUG,redis=DEBUG``
    #: (docs/observability.md; libraries stay at WARNING unless named).
    log_level: str = "INFO"
    #: ``text`` or ``json`` (one JSON object per line, for log shippers).
    log_format: Literal["text", "json"] = "text"
    #: Serve Prometheus ``/metrics`` on this port (None: metrics off).
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    grace_period: float = Field(default=30.0, ge=0)
    #: Worker processes ``run`` starts (> 1: a supervisor and N children,
    #: docs/operations.md "Running several processes"); 1: this process works.
    processes: int = Field(default=1, ge=1)
    #: Index each attempt of a task with ``timeout=`` for the server-side
    #: attempt-timeout scanner (False: 0.15 behaviour, no index).
    attempt_timeouts: bool = True
    #: Seconds the event loop may stay blocked before the watchdog logs the
    #: blocking stack (0: no watchdog).
    loop_watchdog: float = Field(default=1.0, ge=0)
    #: Hung sync task threads tolerated before the worker stops claiming
    #: (None: the concurrency).
    max_abandoned_threads: int | None = Field(default=None, ge=0)
    #: Fail a kind this worker has no task for after N claims (standalone
    #: only); None: hand it back for another worker, always.
    fail_unknown_after: int | None = Field(default=None, ge=1)
    #: Hex secret ``secrets init`` / ``secrets rotate`` install (the
    #: counterpart of 0.15's ``FF_WAITPOINT_HMAC_SECRET``); default: random.
    #: A ``SecretStr``: never shown by ``repr`` or in validation errors.
    waitpoint_hmac_secret: SecretStr | None = None
    #: Input and result bounds; each field from ``FLOWFABRIC_<FIELD>``.
    limits: Limits = Field(default_factory=Limits)

    @field_validator("lanes", "capabilities", "disabled_scanners", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        parts = []
        for part in (p.strip() for p in value.split(",") if p.strip()):
            name, eq, level = part.rpartition("=")
            level = level.strip().upper()
            if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
                raise ValueError(f"unknown log level {level!r}")
            parts.append(f"{name.strip()}={level}" if eq else level)
        return ",".join(parts) or "INFO"

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None,
             environ: Mapping[str, str] | None = None) -> Settings:
        """Defaults < ``FLOWFABRIC_*`` environment < ``overrides`` (None values ignored)."""
        env = os.environ if environ is None else environ
        data: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is not None and raw != "" and name != "limits":
                data[name] = raw
        # The limits are flat in the environment (FLOWFABRIC_MAX_PAYLOAD_BYTES),
        # nested here so they travel as one object to the client and worker.
        limits: dict[str, Any] = {}
        for name in Limits.model_fields:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is not None and raw != "":
                limits[name] = raw
        for name, value in (overrides or {}).items():
            if value is None or (name in _LIST_FIELDS and value == []):
                continue
            if name == "limits":
                given = value.model_dump(exclude_unset=True) if isinstance(value, Limits) \
                    else dict(value)
                limits.update(given)
                continue
            data[name] = value
        if limits:
            data["limits"] = limits
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigurationError(f"invalid settings: {exc}") from exc
