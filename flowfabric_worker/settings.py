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


class Settings(BaseModel):
    """Connection and worker settings (see docs/configuration.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = "redis://localhost:6379/0"
    mode: Literal["standalone", "attached"] = "standalone"
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
    log_level: str = "INFO"
    grace_period: float = Field(default=30.0, ge=0)
    #: Hex secret ``secrets init`` / ``secrets rotate`` install (the
    #: counterpart of 0.15's ``FF_WAITPOINT_HMAC_SECRET``); default: random.
    #: A ``SecretStr``: never shown by ``repr`` or in validation errors.
    waitpoint_hmac_secret: SecretStr | None = None

    @field_validator("lanes", "capabilities", "disabled_scanners", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"unknown log level {value!r}")
        return value

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None,
             environ: Mapping[str, str] | None = None) -> Settings:
        """Defaults < ``FLOWFABRIC_*`` environment < ``overrides`` (None values ignored)."""
        env = os.environ if environ is None else environ
        data: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is not None and raw != "":
                data[name] = raw
        for name, value in (overrides or {}).items():
            if value is None or (name in _LIST_FIELDS and value == []):
                continue
            data[name] = value
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigurationError(f"invalid settings: {exc}") from exc
