"""The @task decorator, typed payload codecs and the stored policy."""

from __future__ import annotations

import dataclasses
import json

import msgspec
import pydantic
import pytest

from flowfabric_worker import TaskDefinition
from flowfabric_worker.authoring.decorators import task
from flowfabric_worker.context.task_context import TaskContext
from flowfabric_worker.errors import InvalidInput, PayloadError
from flowfabric_worker.tasks.retry import Retry


@dataclasses.dataclass
class Point:
    x: int
    y: int


class User(pydantic.BaseModel):
    name: str
    age: int


class Item(msgspec.Struct):
    sku: str
    qty: int = 1


@task
async def bare(a: int, b: str = "x") -> str:
    return f"{a}{b}"


@task(name="custom.name", lane="gpu", capabilities=["cuda", "a", "cuda"], priority=5,
      timeout=2.5, deadline=60, tags={"team": "ml"}, retry=Retry(max_attempts=3))
def configured(ctx: TaskContext, p: Point, u: User, items: list[Item]) -> User:
    return u


def test_bare_decorator_defaults() -> None:
    assert isinstance(bare, TaskDefinition)
    assert bare.name == f"{__name__}.bare"
    assert bare.lane == "default" and bare.is_async and not bare.wants_context
    assert bare.retry == Retry()


def test_options_and_context_detection() -> None:
    assert configured.name == "custom.name"
    assert configured.lane == "gpu" and configured.priority == 5
    assert configured.capabilities == frozenset({"cuda", "a"})
    assert configured.wants_context and not configured.is_async
    assert configured.tags == {"team": "ml"}


def test_call_runs_function_directly() -> None:
    u = User(name="a", age=1)
    ctx = TaskContext(
        execution_id="e", attempt_index=0, attempt_type="initial", lane="gpu", tags={}
    )
    assert configured(ctx, Point(1, 2), u, []) is u


def test_typed_round_trip_pydantic_msgspec_dataclass() -> None:
    payload = configured.encode_args(Point(1, 2), User(name="ann", age=3), items=[Item("s", 2)])
    assert json.loads(payload) == {
        # keyword arguments that can be positional are normalised by the binding
        "args": [{"x": 1, "y": 2}, {"name": "ann", "age": 3}, [{"sku": "s", "qty": 2}]],
        "kwargs": {},
    }
    args, kwargs = configured.decode_args(payload)
    assert args == (Point(1, 2), User(name="ann", age=3), [Item("s", 2)])
    assert kwargs == {}


def test_plain_json_values_and_defaults() -> None:
    args, kwargs = bare.decode_args(bare.encode_args(7))
    assert args == (7,) and kwargs == {}


def test_client_side_validation_errors() -> None:
    with pytest.raises(PayloadError, match="argument 'a'"):
        bare.encode_args("not an int")
    with pytest.raises(PayloadError, match="missing"):
        bare.encode_args()
    with pytest.raises(PayloadError, match="age"):
        configured.encode_args(Point(1, 2), {"name": "x", "age": "old"}, [])


def test_worker_side_decode_errors_are_readable() -> None:
    with pytest.raises(PayloadError, match="malformed JSON"):
        bare.decode_args(b"{nope")
    with pytest.raises(PayloadError, match="JSON object"):
        bare.decode_args(b"[1]")
    with pytest.raises(PayloadError, match="argument 'a'"):
        bare.decode_args(b'{"args":["x"],"kwargs":{}}')


def test_result_codec_is_typed() -> None:
    data = configured.encode_result(User(name="r", age=9))
    assert configured.decode_result(data) == User(name="r", age=9)
    assert bare.decode_result(bare.encode_result("hi")) == "hi"
    with pytest.raises(PayloadError):
        bare.decode_result(b"5")


def test_policy_json() -> None:
    policy = json.loads(configured.policy_json())
    assert policy["priority"] == 5
    assert policy["routing_requirements"] == {"required_capabilities": ["a", "cuda"]}
    assert policy["timeout_policy"]["attempt_timeout_ms"] == 2500
    assert policy["timeout_policy"]["execution_deadline_ms"] == 60000
    assert policy["retry_policy"]["max_retries"] == 2
    assert "retry_policy" not in json.loads(bare.policy_json())


def test_invalid_options_refused() -> None:
    with pytest.raises(InvalidInput):
        task(lane="")(lambda: None)
    with pytest.raises(InvalidInput):
        task(timeout=0)(lambda: None)
    with pytest.raises(InvalidInput, match="priority"):
        task(priority=9001)(lambda: None)


def test_decoding_plan_matches_a_signature_bind() -> None:
    """The per-task decoding plan (issue 18) answers what binding the payload
    to the signature answers: positional payloads skip the bind, anything
    else still goes through it."""
    import inspect

    def check(spec: TaskDefinition[..., object], payload: bytes) -> None:
        data = json.loads(payload)
        try:
            bound = spec._signature.bind(*data["args"], **data["kwargs"])
            expected: object = spec._check(bound)
        except (TypeError, PayloadError) as exc:
            expected = type(exc)
        try:
            got: object = spec.decode_args(payload)
        except PayloadError:
            got = PayloadError
        assert got == expected or (expected is TypeError and got is PayloadError), payload

    @task
    def kinds(a: int, /, b: Point, c: str = "c", *, d: int = 4) -> None: ...

    @task
    def variadic(a: int, *rest: int, **kw: str) -> None: ...

    @task
    def required_kw(a: int, *, k: int) -> None: ...

    @task
    def untyped(a, b=None):  # type: ignore[no-untyped-def]
        ...

    for spec, payloads in (
        (kinds, ['[1, {"x": 1, "y": 2}]', '[1, {"x": 1, "y": 2}, "z"]', '[1]', '[]',
                 '[1, {"x": 1, "y": 2}, "z", 5]', '["no", {"x": 1, "y": 2}]',
                 '[1, {"x": "no", "y": 2}]']),
        (variadic, ['[1]', '[1, 2, 3]', '[1, "x"]']),
        (required_kw, ['[1]']),
        (untyped, ['[1]', '[[1], {"a": 2}]', '[]', '[1, 2, 3]']),
    ):
        for args in payloads:
            check(spec, f'{{"args": {args}, "kwargs": {{}}}}'.encode())
    check(kinds, b'{"args": [1, {"x": 1, "y": 2}], "kwargs": {"d": "7"}}')
    check(kinds, b'{"args": [1], "kwargs": {"b": {"x": 1, "y": 2}, "d": 7}}')
    check(required_kw, b'{"args": [1], "kwargs": {"k": 2}}')
    check(variadic, b'{"args": [1, 2], "kwargs": {"x": "y"}}')
    # Typed positionals are converted, as through the bind.
    assert kinds.decode_args(kinds.encode_args(1, Point(1, 2))) == ((1, Point(1, 2)), {})
    assert inspect.signature(kinds.fn)  # the function itself is untouched


def test_plain_results_encode_as_through_the_codec() -> None:
    import enum

    class Size(enum.IntEnum):
        BIG = 2

    @task  # unannotated: any result is stored (results are checked: test_result_types.py)
    async def anything():  # type: ignore[no-untyped-def]
        return None

    for value in (None, True, 0, -5, "hé", "", 2**70, Size.BIG):
        assert anything.encode_result(value) == json.dumps(
            int(value) if isinstance(value, enum.Enum) else value,
            ensure_ascii=False, separators=(",", ":")).encode()
    with pytest.raises(PayloadError, match="lone surrogate"):
        bare.encode_result("\ud800")
