"""Checked by mypy --strict in test_task_types.py, never run.

Each ``assert_type`` must hold; each ``# type: ignore[code]`` must silence
exactly the error it names (an ignore with no error to silence is itself an
error under --strict: warn_unused_ignores)."""

from __future__ import annotations

from typing import assert_type

from pydantic import BaseModel

from flowfabric_worker import Client, RunHandle, TaskContext, flow, task
from flowfabric_worker.authoring.decorators import TaskDefinition
from flowfabric_worker.context.children import ChildHandle
from flowfabric_worker.testing import FakeContext, TestEnvironment, run_inline


class Order(BaseModel):
    id: int
    amount: float


@task(lane="payments", timeout=30)
async def charge(order: Order, note: str = "") -> str:
    return f"charged {order.id}{note}"


@task(lane="payments")
async def refund(ctx: TaskContext, order: Order) -> float:
    return order.amount


@task
def add(a: int, b: int) -> int:
    return a + b


@task(name="sync.with.ctx")
def label(ctx: TaskContext, n: int) -> list[str]:
    return [str(n)]


@flow(lane="flows")
async def fan(ctx: TaskContext, orders: list[Order]) -> list[str]:
    return await ctx.gather(*(charge.child(o) for o in orders))


# The context is not among the parameters; the result is the awaited type.
charge_def: TaskDefinition[[Order, str], str] = charge
refund_def: TaskDefinition[[Order], float] = refund
add_def: TaskDefinition[[int, int], int] = add
label_def: TaskDefinition[[int], list[str]] = label
wrong_def: TaskDefinition[[Order], str] = refund  # type: ignore[assignment]


async def submit_calls(client: Client, env: TestEnvironment) -> None:
    run = await charge.submit(client, Order(id=1, amount=2.0))
    assert_type(run, RunHandle[str])
    assert_type(await run.result(), str)
    assert_type(await refund.submit(client, Order(id=1, amount=2.0)), RunHandle[float])
    assert_type(await (await add.submit(client, 1, 2)).result(), int)
    assert_type(await (await label.submit(client, 3)).result(), list[str])
    assert_type(await env.result(await fan.submit(client, [])), list[str])

    await charge.submit(client, Order(id=1, amount=2.0), note="x")
    await charge.submit(client, Order(id=1, amount=2.0), delay=5.0)       # options: untyped args
    await charge.submit(client, Order(id=1, amount=2.0), priority=3, tags={"a": "b"})

    await charge.submit(client, "wrong type")  # type: ignore[call-overload]
    await add.submit(client, 1, "2")  # type: ignore[call-overload]
    await add.submit(client, 1)  # type: ignore[call-overload]
    await refund.submit(client, Order(id=1, amount=2.0), extra=1)  # type: ignore[call-overload]
    await charge.submit(client, Order(id=1, amount=2.0), delay="soon")  # type: ignore[call-overload]


async def children(ctx: TaskContext) -> None:
    assert_type(charge.child(Order(id=1, amount=2.0)), ChildHandle[str])
    charge.child(42)  # type: ignore[arg-type]


async def inline() -> None:
    assert_type(await run_inline(refund, Order(id=1, amount=2.0), ctx=FakeContext()), float)
    assert_type(await run_inline(add, 1, 2), int)
