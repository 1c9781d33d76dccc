"""run_inline and FakeContext: a task body called directly, no backend."""

from __future__ import annotations

import pytest
from toolkit_tasks import Decision, add, approve, nap, talk

from flowfabric_worker.errors import PayloadError
from flowfabric_worker.testing import FakeContext, run_inline

pytestmark = pytest.mark.anyio


async def test_a_scripted_signal_resumes_the_body() -> None:
    ctx = FakeContext(signals={"approve": Decision(approved=True)})
    assert await run_inline(approve, "api", ctx=ctx) == "api: deployed api.tar.gz"
    assert ctx.steps == [("build", "api.tar.gz")]
    assert ctx.waited == [(["approve"], 24 * 3600)]


async def test_no_signal_takes_the_timeout_path() -> None:
    assert await run_inline(approve, "api") == "api: nobody approved, fell back"


async def test_a_payload_a_client_could_not_send_is_refused() -> None:
    ctx = FakeContext(signals={"approve": {"approved": "maybe?"}})
    with pytest.raises(PayloadError):
        await run_inline(approve, "api", ctx=ctx)


async def test_sleeps_steps_frames_are_recorded_and_steps_can_be_mocked() -> None:
    ctx = FakeContext(step_results={"build": "cached.tar.gz"})
    ctx.signals["approve"] = {"approved": True}
    assert await run_inline(approve, "x", ctx=ctx) == "x: deployed cached.tar.gz"
    nap_ctx = FakeContext()
    assert await run_inline(nap, 2, ctx=nap_ctx) == "rested"
    assert nap_ctx.slept == [7200.0]
    talk_ctx = FakeContext()
    assert await run_inline(talk, ["a", "b"], ctx=talk_ctx) == 2
    assert talk_ctx.frames == ["a ", "b "]


async def test_arguments_go_through_the_wire_as_a_submission_does() -> None:
    assert await run_inline(add, 2, 3) == 5                  # a sync body, in a thread
    with pytest.raises(PayloadError):
        await run_inline(add, 2, "three")
    assert await run_inline(add, 2, 3, wire=False) == 5
