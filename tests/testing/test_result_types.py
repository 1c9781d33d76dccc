"""Results checked on the worker against the return annotation (issue 16,
item 4): a mismatch fails the attempt with category ``result_type``, not
retried, naming the task and the annotation; on redis and memory://."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from flowfabric_worker import Retry, task
from flowfabric_worker.errors import ResultTypeError, TaskFailed
from flowfabric_worker.testing import TestEnvironment, run_inline

pytestmark = pytest.mark.anyio


class Point(msgspec.Struct):
    x: int
    y: int


RETRY = Retry(max_attempts=3, initial=0.01)


@task(name="rt.count", lane="rt", retry=RETRY)
async def count(value: Any) -> int:
    return value  # type: ignore[no-any-return]


@task(name="rt.tags", lane="rt")
def tags(as_set: bool) -> list[str]:
    return {"b", "a"} if as_set else ["b", "a"]  # type: ignore[return-value]


@task(name="rt.unique", lane="rt")
def unique(values: list[int]) -> set[int]:
    return set(values)


@task(name="rt.point", lane="rt")
async def point(raw: dict[str, Any]) -> Point:
    return raw  # type: ignore[return-value]


@task(name="rt.nothing", lane="rt")
async def nothing(value: Any) -> None:
    return value  # type: ignore[no-any-return]


@task(name="rt.untyped", lane="rt")
async def untyped(value):  # type: ignore[no-untyped-def]
    return value


TASKS = [count, tags, unique, point, nothing, untyped]


async def test_results_are_checked_on_the_worker(url: str) -> None:
    async with TestEnvironment.start(TASKS, url=url, time_skipping=False) as env:
        bad = await count.submit(env.client, "not an int")
        error = await env.assert_fails(bad, category="result_type", attempts=1, timeout=60)
        assert isinstance(error, TaskFailed)
        assert "rt.count" in str(error) and "-> int" in str(error)
        assert "'not an int'" in str(error)
        (attempt,) = await env.attempts(bad)
        assert attempt.failure_category == "result_type"

        # What does match completes as before, converted as the caller decodes it.
        assert await (await count.submit(env.client, 7)).result(timeout=60) == 7
        assert await (await point.submit(env.client, {"x": 1, "y": 2})).result(
            timeout=60) == Point(1, 2)
        await env.assert_fails(await point.submit(env.client, {"x": "one"}),
                               category="result_type", attempts=1, timeout=60)
        assert await (await nothing.submit(env.client, None)).result(timeout=60) is None
        await env.assert_fails(await nothing.submit(env.client, 3), category="result_type",
                               timeout=60)
        assert await (await untyped.submit(env.client, {"any": ["thing"]})).result(
            timeout=60) == {"any": ["thing"]}


async def test_a_returned_set_needs_a_set_annotation(url: str) -> None:
    async with TestEnvironment.start(TASKS, url=url, time_skipping=False) as env:
        error = await env.assert_fails(await tags.submit(env.client, True),
                                       category="result_type", attempts=1, timeout=60)
        assert "a set has no order" in str(error) and "list[str]" in str(error)
        assert await (await tags.submit(env.client, False)).result(timeout=60) == ["b", "a"]
        assert await (await unique.submit(env.client, [3, 1, 3])).result(timeout=60) == {1, 3}


async def test_run_inline_refuses_the_same_results() -> None:
    with pytest.raises(ResultTypeError) as caught:
        await run_inline(count, "nope")
    assert caught.value.task == "rt.count" and caught.value.annotation == "int"
    assert await run_inline(count, 5) == 5
    with pytest.raises(ResultTypeError):
        await run_inline(tags, True)


def test_unannotated_tasks_have_no_check() -> None:
    assert untyped._result_check is None
    assert count._result_check is not None
