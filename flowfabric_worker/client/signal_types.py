"""Checking a signal before it is sent, against what the waiting task
expects (issue 16): the JSON Schema a typed wait recorded beside its
waitpoint (:mod:`flowfabric_worker.protocol.signal_types`) and the signal
names its condition matches.

The sender has only the schema, not the task's Python type, so payloads
are validated with the ``jsonschema`` library (the draft the schema
declares, 2020-12 otherwise); a validator is built once per distinct
record. A record that cannot be read or is not a valid schema is ignored
with a log line: the operator is not blocked by our own metadata, and the
task still decodes what it receives.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

import msgspec
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.errors import SignalPayloadError
from flowfabric_worker.protocol.ids import ExecutionId, execution_tag
from flowfabric_worker.protocol.keys import PartitionKeys
from flowfabric_worker.protocol.signal_types import SignalTypes, signal_types_key

__all__ = ["SignalCheck", "check_payload", "expectation", "is_waited_for", "waited_names"]

log = logging.getLogger("flowfabric_worker.signals")

#: Problems named in a refusal's message (all of them are on the exception).
_SHOWN = 3


class SignalCheck(msgspec.Struct, frozen=True, kw_only=True):
    """What :meth:`Client.validate_signal_payload` found, nothing sent.

    ``waited_for`` is False when the waitpoint's wait does not match
    ``name`` (sent, it would be recorded and resume nothing: status
    ``unmatched``), None when that cannot be told (a composite condition,
    or a pending waitpoint whose wait has not said its names yet).
    ``payload_type`` / ``schema`` describe the payload the wait expects
    (empty / None for an untyped wait: any JSON is sent as it is)."""

    execution_id: str
    waitpoint_id: str
    name: str
    waited_for: bool | None
    expected_names: list[str] | None = None
    payload_type: str = ""
    schema: dict[str, Any] | None = None


@lru_cache(maxsize=256)
def _compiled(raw: str) -> tuple[SignalTypes, Validator] | None:
    try:
        types = msgspec.json.decode(raw, type=SignalTypes)
        cls = validator_for(types.schema, default=Draft202012Validator)
        cls.check_schema(types.schema)
        return types, cls(types.schema)
    except (msgspec.DecodeError, msgspec.ValidationError, SchemaError) as exc:
        log.warning("unusable signal types record (%s): payloads are not checked", exc)
        return None


async def expectation(backend: Backend, eid: ExecutionId, waitpoint_id: str
                      ) -> tuple[SignalTypes, Validator] | None:
    """The record of the typed wait on ``waitpoint_id`` and its validator,
    or None (an untyped wait, or one made by another SDK)."""
    ((raw,),) = await backend.hash_fields_many([signal_types_key(eid)], [waitpoint_id])
    return _compiled(raw) if raw else None


async def waited_names(backend: Backend, eid: ExecutionId, waitpoint_id: str
                       ) -> list[str] | None:
    """The signal names the resume condition of an active waitpoint matches
    (``[]``: any name), None when it is composite or not there."""
    cond = PartitionKeys(execution_tag(eid)).waitpoint_condition(waitpoint_id)
    ((total, composite),) = await backend.hash_fields_many(
        [cond], ["total_matchers", "composite"])
    if composite == "1" or not total.isdigit():
        return None
    (names,) = await backend.hash_fields_many(
        [cond], [f"matcher:{i}:name" for i in range(int(total))])
    return [] if "" in names else sorted(set(names))


def is_waited_for(names: list[str] | None, name: str) -> bool | None:
    """Whether a wait for ``names`` matches signal ``name`` (None: unknown)."""
    if names is None:
        return None
    return not names or name in names


def check_payload(found: tuple[SignalTypes, Validator], eid: str, name: str,
                  plain: Any) -> None:
    """Raise :class:`SignalPayloadError` unless JSON value ``plain`` (None: no
    payload) matches the recorded schema; nothing is sent then."""
    types, validator = found
    errors = sorted(validator.iter_errors(plain), key=lambda e: e.json_path)
    if not errors:
        return
    problems = tuple((e.json_path, e.message) for e in errors)
    shown = "; ".join(f"{path}: {message}" for path, message in problems[:_SHOWN])
    more = f" (and {len(problems) - _SHOWN} more)" if len(problems) > _SHOWN else ""
    raise SignalPayloadError(
        f"signal {name!r} refused, nothing sent: execution {eid} waits for a "
        f"{types.type} payload, and this one does not match at {shown}{more}",
        execution_id=eid, signal_name=name, problems=problems)
