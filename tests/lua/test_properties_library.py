"""Property tests over every function of both Lua libraries (issue 12, hole 6),
on both backends.

For each function registered in lua/ (found by reading the sources, so a new
function without a strategy fails ``test_every_function_has_a_strategy``),
hypothesis draws valid calls against a world holding an execution in every
state (property_support.build_world) and mutates them: garbage ARGV values
(empty, huge, non-numeric, NaN text, invalid or 5 000-element JSON), cut or
extended ARGV vectors, missing or extra KEYS. Two invariants:

1. a refusal ``[0, code, ...]`` or a script error wrote nothing: the key
   census is unchanged (except the writes the contract documents for a few
   refusals, property_support.error_diff_allowed);
2. afterwards the exec_core records and the indexes agree
   (property_support.index_violations).

Examples per function: ``FFW_PROPERTY_EXAMPLES`` (default 12), derandomized so
CI runs are repeatable (``FFW_PROPERTY_RANDOM=1`` draws fresh ones).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, Phase, given, settings
from property_calls import (
    BASE_CALLS,
)
from property_mutations import (
    BIG_INPUTS,
    Recipe,
    apply_recipe,
    census_diff,
    describe,
    fcall,
    recipes,
)
from property_support import (
    Census,
    Snapshot,
    census,
    error_diff_allowed,
    index_violations,
    registered_functions,
)
from property_world import (
    World,
    build_world,
)

from flowfabric_worker.backend.backend import Backend

pytestmark = pytest.mark.anyio

FUNCTIONS = registered_functions()

PROPERTY_SETTINGS = settings(
    max_examples=int(os.environ.get("FFW_PROPERTY_EXAMPLES", "12")),
    deadline=None,
    # Repeatable by default; FFW_PROPERTY_RANDOM=1 explores new examples.
    derandomize=not os.environ.get("FFW_PROPERTY_RANDOM"),
    database=None,
    # No shrinking: the failure message names the exact call (describe()),
    # and shrinking replays a census-heavy test hundreds of times.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[
        HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
        HealthCheck.data_too_large, HealthCheck.large_base_example,
    ],
)


@dataclass
class Lab:
    """The world on one backend, restored to its snapshot whenever an
    example changed it."""

    backend: Backend
    world: World
    snapshot: Snapshot
    current: Census
    dirty: bool = True

    @property
    def r(self) -> Any:
        return self.backend.redis

    async def pristine(self) -> Census:
        if self.dirty:
            self.current = await self.snapshot.restore(self.r)
            self.dirty = False
        return self.current


@pytest.fixture(scope="module", params=["redis", "memory"])
async def lab(request: pytest.FixtureRequest) -> AsyncIterator[Lab]:
    if request.param == "redis":
        url: str = request.getfixturevalue("redis_server_url")
        client = redis.Redis.from_url(url)
        client.flushall()
        client.close()
    else:
        url = f"memory://props-{uuid.uuid4().hex}"
    backend = await Backend.open(url)
    try:
        world = await build_world(backend)
        snapshot = await Snapshot.take(backend.redis)
        yield Lab(backend, world, snapshot, snapshot.census)
    finally:
        await backend.close()


def test_every_function_has_a_strategy() -> None:
    assert len(FUNCTIONS) > 60
    assert set(FUNCTIONS) == set(BASE_CALLS), (
        f"no strategy: {sorted(set(FUNCTIONS) - set(BASE_CALLS))}; "
        f"stale: {sorted(set(BASE_CALLS) - set(FUNCTIONS))}")


async def test_world_is_consistent(lab: Lab) -> None:
    before = await lab.pristine()
    assert index_violations(before) == []
    # Every base call is accepted by its function in this world (so the
    # mutations start from calls that reach the write paths).
    refused = []
    for function, builders in sorted(BASE_CALLS.items()):
        for build in builders:
            built = build(lab.world)
            call = built if isinstance(built, tuple) else (
                built.NAME, list(built.keys()), list(built.argv()))
            await lab.pristine()
            outcome, detail = await fcall(lab.r, call)
            lab.dirty = True
            if outcome != "ok":
                refused.append(f"{function}: {outcome} {detail}")
    assert refused == []


@pytest.mark.parametrize("function", sorted(BIG_INPUTS))
async def test_large_valid_inputs_work(lab: Lab, function: str) -> None:
    recipe = Recipe(variant=0, mutate=False, big=True, replace=(), argv_shape="keep",
                    argv_cut=0, argv_extra=(), keys_shape="keep", keys_cut=0, keys_extra=0)
    await lab.pristine()
    outcome, reply = await fcall(lab.r, apply_recipe(recipe, lab.world, function))
    lab.dirty = True
    assert outcome == "ok", reply
    assert index_violations(await census(lab.r)) == []


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
@PROPERTY_SETTINGS
@given(recipe=recipes())
async def test_refusals_write_nothing_and_indexes_agree(
    lab: Lab, function: str, recipe: Recipe
) -> None:
    call = apply_recipe(recipe, lab.world, function)
    before = await lab.pristine()
    outcome, detail = await fcall(lab.r, call)
    after = await census(lab.r)
    if after != before:
        lab.dirty = True
    if outcome != "ok" and not (
        outcome == "refused" and error_diff_allowed(function, detail, before, after)
    ):
        assert after == before, (
            f"{outcome} {detail!r} after writing {census_diff(before, after)}\n"
            f"{describe(call)}")
    bad = index_violations(after)
    assert bad == [], f"{outcome} {str(detail)[:200]!r}: {bad}\n{describe(call)}"
