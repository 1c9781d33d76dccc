"""Client-side input checks shared by the function-call structs (spec 02
§9: inputs the reference library crashes on never reach Redis)."""

from __future__ import annotations

import json
import re
from typing import Any

from flowfabric_worker.errors import InvalidInput
from flowfabric_worker.protocol.ids import parse_execution_id

OPERATOR_OVERRIDE = "operator_override"


MAX_PRIORITY = 9000


_CANON_INT = re.compile(r"^(0|-?[1-9][0-9]*)$")


def check_eid(eid: str) -> None:
    parse_execution_id(eid)


def check_int(value: int | None, what: str, *, minimum: int | None = None) -> None:
    """Integers only (bools are not integers on the wire)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{what} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise InvalidInput(f"{what} must be >= {minimum}, got {value}")


def wire_int(value: int | None, what: str, *, minimum: int = 0) -> str:
    """An optional integer argument as ARGV text (``""`` for None), checked:
    integers only (not bools), at least ``minimum``."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInput(f"{what} must be an integer >= {minimum}")
    return str(value)


_BUDGET_TAG = re.compile(r"^\{b:(0|[1-9][0-9]{0,4})\}$")
_QUOTA_TAG = re.compile(r"^\{q:(0|[1-9][0-9]{0,4})\}$")


def check_budget_tag(tag: str) -> None:
    """A budget partition tag, ``{b:M}``."""
    if not _BUDGET_TAG.match(tag):
        raise InvalidInput(f"budget partition tag malformed: {tag!r}")


def check_quota_tag(tag: str) -> None:
    """A quota partition tag, ``{q:K}``."""
    if not _QUOTA_TAG.match(tag):
        raise InvalidInput(f"quota partition tag malformed: {tag!r}")


def check_json_object(text: str, what: str, *, allow_empty: bool = True) -> dict[str, Any]:
    """``text`` must be a JSON object (the library crashes on anything else)."""
    if text == "" and allow_empty:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    return value


def check_fence(lease_id: str, lease_epoch: str, attempt_id: str, source: str) -> None:
    """Partial triples are refused; an empty triple needs the operator override."""
    given = [v != "" for v in (lease_id, lease_epoch, attempt_id)]
    if any(given) and not all(given):
        raise InvalidInput("fence triple must be given whole (lease_id, lease_epoch, attempt_id)")
    if not any(given) and source != OPERATOR_OVERRIDE:
        raise InvalidInput("fence triple required unless source is operator_override")
    if lease_epoch and not _CANON_INT.match(lease_epoch):
        raise InvalidInput(f"lease_epoch must be canonical decimal, got {lease_epoch!r}")


def opt(value: int | None) -> str:
    return "" if value is None else str(value)


def epoch_text(value: int | str) -> str:
    text = str(value)
    if text and not _CANON_INT.match(text):
        raise InvalidInput(f"lease epoch must be canonical decimal, got {text!r}")
    return text
