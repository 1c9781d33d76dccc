"""Pub/sub for the layers above: one subscription loop, written once.

The worker's wake-ups, the flow completion dispatcher and
``client.flow_handle.completions`` all listen to channels the same way;
:meth:`Subscriptions.messages` is that loop.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio

log = logging.getLogger("flowfabric_worker.backend")


class Subscriptions:
    """Mixed into :class:`~flowfabric_worker.backend.backend.Backend`."""

    redis: Any

    async def messages(self, *channels: str, retry_delay: float = 1.0,
                       subscribed: Callable[[], None] | None = None
                       ) -> AsyncIterator[Any]:
        """The data of each message published on ``channels``, for as long as
        the caller iterates (on its own pool connection).

        Best effort, as pub/sub is: when the connection is lost the channels
        are subscribed again after ``retry_delay`` seconds, and what was
        published in between is missed — callers keep a poll for that, and
        ``subscribed`` (called once each (re)subscription is sent) lets them
        look at once instead of waiting for it.
        """
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(*channels)
                if subscribed is not None:
                    subscribed()
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True,
                                                   timeout=1.0)
                    if msg is not None and msg.get("type") == "message":
                        yield msg["data"]
            except Exception as exc:
                log.info("subscription to %s lost (%s); subscribing again",
                         ", ".join(channels), exc)
            finally:
                with anyio.CancelScope(shield=True):
                    try:
                        await pubsub.aclose()
                    except Exception:
                        pass
            await anyio.sleep(retry_delay)
