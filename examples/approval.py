"""A deploy that waits for a reviewer's approval, with a timeout.

``deploy`` builds a release (a durable step: it runs once even though the
function runs again after the wait), then asks for approval and suspends.
While it waits it holds no worker slot: the worker below has concurrency 1,
and a second deploy runs in that slot meanwhile. A reviewer approves the
first deploy with ``client.signal``; nobody answers the second one, whose
wait times out and resumes it (``on_timeout="auto_resume"``), so it takes
its "not approved in time" path.

Runs self-contained on ``memory://`` with an in-process worker::

    python examples/approval.py            # or: ... redis://localhost:6379
    FLOWFABRIC_URL=redis+cluster://127.0.0.1:7000 python examples/approval.py
"""

from __future__ import annotations

import os
import sys

import anyio
import msgspec

from flowfabric_worker import Client, Permanent, SignalTimeout, TaskContext, task
from flowfabric_worker.worker.worker import Worker

#: Side effects of the steps, to show that a resumed run does not redo them.
BUILDS: list[str] = []


class Decision(msgspec.Struct):
    approved: bool
    note: str = ""


def build_release(service: str, version: str) -> str:
    BUILDS.append(f"{service}:{version}")
    return f"{service}-{version}.tar.gz"


@task(name="examples.deploy", lane="deploys")
async def deploy(ctx: TaskContext, service: str, version: str, wait_s: float) -> str:
    artifact = await ctx.step("build", build_release, service, version)
    await ctx.stream(f"{service}: built {artifact}, waiting for approval\n")
    try:
        decision = await ctx.wait_for_signal(
            ["approve", "reject"], timeout=wait_s, on_timeout="auto_resume",
            payload_type=Decision)
    except SignalTimeout:
        return f"{service} {version}: not approved in time, nothing deployed"
    if decision.name == "reject" or not decision.payload.approved:
        raise Permanent(f"{service} {version} rejected: {decision.payload.note}")
    return f"{service} {version}: deployed {artifact} ({decision.payload.note})"


async def main(url: str = "memory://") -> int:
    async with Client.connect(url, init_secrets=True) as client:
        worker = Worker(client, tasks=[deploy], lanes=["deploys"], concurrency=1,
                        lease_ttl=5, grace_period=1, scanner_interval_scale=0.05)
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            with anyio.fail_after(60):
                api = await deploy.submit(client, "api", "1.4.0", 30.0)
                await api.wait_for("suspended", timeout=20)
                print("api: suspended, slot released")
                # The only slot is free again: the second deploy runs now.
                web = await deploy.submit(client, "web", "2.0.1", 1.0)
                await web.wait_for("suspended", timeout=20)
                print("web: suspended too (nobody will answer)")
                sent = await client.signal(api.id, "approve",
                                           Decision(approved=True, note="lgtm from ana"),
                                           source="ana@example.com")
                print(f"signal to api: {sent.status}")
                api_result = await api.result(timeout=20)
                web_result = await web.result(timeout=20)
            worker.stop()
    print(api_result)
    print(web_result)
    print(f"builds: {BUILDS}")
    ok = (api_result == "api 1.4.0: deployed api-1.4.0.tar.gz (lgtm from ana)"
          and web_result == "web 2.0.1: not approved in time, nothing deployed"
          and sorted(BUILDS) == ["api:1.4.0", "web:2.0.1"])
    print("ok" if ok else "UNEXPECTED OUTPUT")
    return 0 if ok else 1


if __name__ == "__main__":
    # The server: the first argument, else FLOWFABRIC_URL, else memory://.
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("FLOWFABRIC_URL", "memory://")
    sys.exit(anyio.run(main, url))
