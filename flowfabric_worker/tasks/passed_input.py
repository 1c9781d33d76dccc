"""A flow member whose argument is an upstream member's result.

The builder (``flow.add(task, after=[a], input_from=a)``) creates the member
with a placeholder payload and the tag :data:`INPUT_TAG`, and marks the edge
from ``a`` with a ``data_passing_ref``: when that edge is satisfied the
library copies ``a``'s result over the member's payload (spec 04 §4.3). The
worker then hands that value to the task as its one argument.
"""

from __future__ import annotations

from typing import Any

from flowfabric_worker.errors import PayloadError
from flowfabric_worker.tasks import codec
from flowfabric_worker.tasks.spec import TaskLike

__all__ = ["INPUT_MARK", "INPUT_TAG", "decode_passed_input", "placeholder"]

#: Execution tag of such a member: the upstream's execution id.
INPUT_TAG = "ffw.input_from"
#: The placeholder payload's key: still there means nothing was passed in.
INPUT_MARK = "ffw_input_from"


def placeholder(upstream: str) -> bytes:
    """The payload a member is created with, until the upstream's result
    replaces it."""
    return codec.dumps({INPUT_MARK: upstream})


def decode_passed_input(task: TaskLike, payload: bytes, upstream: str
                        ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)`` for ``task``: the upstream's result as its one
    argument, typed by the parameter's annotation. A placeholder still in
    place (the member ran without that upstream completing, e.g. an
    ``any_of`` satisfied by another one) is a :class:`PayloadError`."""
    value = codec.loads(payload) if payload else None
    if isinstance(value, dict) and INPUT_MARK in value:
        raise PayloadError(
            f"task {task.name}: its input is the result of {upstream}, which did not "
            "complete before this member ran (another upstream satisfied its join)")
    decode = getattr(task, "decode_input", None)
    if not callable(decode):
        return (value,), {}
    result: tuple[tuple[Any, ...], dict[str, Any]] = decode(value)
    return result
