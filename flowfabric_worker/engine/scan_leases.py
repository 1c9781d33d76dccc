"""Partition ranges shared among the live scanner processes (issue 18 item 7).

Every process that runs scanners registers as a member and holds a fair
share of the partition ranges — ``ceil(ranges / live members)`` — each
through a lease (its token and an expiry) that only its holder renews. Its
scanners then walk only the ranges it holds, so N processes scan each
partition once per interval, not N times, and the ranges spread across
them.

One ``EVAL`` per keeper cycle (every third of the TTL) does all of it
atomically: drop members whose heartbeat expired, refresh our own, renew
the ranges we hold (releasing those beyond our share, so a newcomer gets
them), take free ranges up to our share. A member that dies (SIGKILL, a
blocked loop) stops renewing: its membership and its leases expire at the
same moment (both are written with the same expiry in the same script), and
the survivors' next cycle, a third of a TTL later at most, counts one member
less and takes the freed ranges. A range is therefore unscanned for at most
about ``ttl + ttl/3`` after its holder died, and for at most ``ttl/3`` while
ranges move to a newcomer.

Members and leases are fields of one hash per scanner set (a cycle costs a
handful of commands whatever the number of ranges), in the hash slot
``{ffw:scan}``: the script is one slot on a cluster too. Processes running
different scanner sets (a ``scan`` process with ``--disable-scanner``, say)
must not split ranges between them (one would leave unscanned what it
disabled): the hash is named by a digest of the scanner names, so only
processes running the same set share.

Scanning twice is harmless (every scanner function re-checks its condition),
so the lease is a cost measure, not a correctness one: a holder paused past
its TTL may scan a range another process has taken until its next cycle.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Sequence

import anyio

from flowfabric_worker.backend.backend import Backend

__all__ = ["LEASE_TTL", "RangeLeases", "lease_group"]

log = logging.getLogger("flowfabric_worker.scanners")

#: Default TTL of a range lease and of a membership, in seconds: a crashed
#: holder's ranges are taken over within about 4/3 of it.
LEASE_TTL = 6.0

_SLOT = "{ffw:scan}"

# One hash per scanner set holds the members and the range leases, so a
# keeper cycle is a handful of commands whatever the number of ranges:
#   m:<token> -> heartbeat expiry (server ms)
#   r:<range> -> "<token> <expiry ms>" (expired: free)
# KEYS[1] the hash. ARGV: token, ttl_ms, leave ("1": release everything and
# deregister), then the range names in this member's order of preference.
# Returns the positions (1-based, among the ranges) held after the call.
_KEEP = """
local h, token, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local all = redis.call('HGETALL', h)
local live, owner, gone = 0, {}, {}
local me = 'm:' .. token
for i = 1, #all, 2 do
  local f, v = all[i], all[i + 1]
  if string.sub(f, 1, 2) == 'm:' then
    if tonumber(v) <= now then gone[#gone + 1] = f elseif f ~= me then live = live + 1 end
  else
    local sp = string.find(v, ' ', 1, true)
    if sp and tonumber(string.sub(v, sp + 1)) > now then owner[f] = string.sub(v, 1, sp - 1) end
  end
end
local out, put = {}, {}
if ARGV[3] == '1' then
  gone[#gone + 1] = me
  for f, tok in pairs(owner) do if tok == token then gone[#gone + 1] = f end end
else
  local share = math.ceil((#ARGV - 3) / (live + 1))
  local until_ms = tostring(now + ttl)
  put = {me, until_ms}
  local free = {}
  for i = 4, #ARGV do
    local f = 'r:' .. ARGV[i]
    if owner[f] == token then
      if #out < share then
        out[#out + 1] = i - 3
        put[#put + 1] = f
        put[#put + 1] = token .. ' ' .. until_ms
      else
        gone[#gone + 1] = f
      end
    elseif owner[f] == nil then
      free[#free + 1] = i
    end
  end
  for _, i in ipairs(free) do
    if #out >= share then break end
    out[#out + 1] = i - 3
    put[#put + 1] = 'r:' .. ARGV[i]
    put[#put + 1] = token .. ' ' .. until_ms
  end
end
if #gone > 0 then redis.call('HDEL', h, unpack(gone)) end
if #put > 0 then
  redis.call('HSET', h, unpack(put))
  redis.call('PEXPIRE', h, 2 * ttl)
end
return out
"""


def lease_group(scanner_names: Sequence[str]) -> str:
    """The key scope of a scanner set: processes share ranges only with
    processes running exactly the same scanners."""
    digest = hashlib.sha1(",".join(sorted(set(scanner_names))).encode()).hexdigest()
    return digest[:12]


class RangeLeases:
    """This process's share of ``ranges`` (names such as ``fp:0-31``)."""

    def __init__(self, backend: Backend, ranges: Sequence[str], *, group: str,
                 ttl: float = LEASE_TTL, token: str | None = None) -> None:
        self.backend = backend
        self.ttl = max(ttl, 0.3)
        self.token = token or uuid.uuid4().hex
        # Each member prefers a different first range: takes spread at once
        # instead of every member racing for range 0.
        names = list(dict.fromkeys(ranges))
        start = int(hashlib.sha1(self.token.encode()).hexdigest(), 16) % max(len(names), 1)
        self.ranges = names[start:] + names[:start]
        self.key = f"ffw:scan:{_SLOT}:{group}"
        self.held: frozenset[str] = frozenset()
        #: Local monotonic time after which the held leases may have expired
        #: (no successful renewal since): nothing counts as held past it.
        self._valid_until = 0.0
        #: Set (and replaced) whenever a keeper cycle gains a range, so the
        #: scanners can look at it at once rather than at their next tick.
        self.gained = anyio.Event()

    def holds(self, name: str) -> bool:
        return name in self.held and time.monotonic() < self._valid_until

    async def keep(self) -> frozenset[str]:
        """One keeper cycle: heartbeat, renew, release beyond the share, take."""
        sent = time.monotonic()
        (reply,) = await self.backend.read_many([[
            "EVAL", _KEEP, 1, self.key, self.token, int(self.ttl * 1000), "0", *self.ranges]])
        held = frozenset(self.ranges[int(i) - 1] for i in reply)
        if held - self.held:
            log.debug("scan ranges taken: %s", ", ".join(sorted(held - self.held)))
            self.gained.set()
            self.gained = anyio.Event()
        self.held = held
        # Measured from before the send: the server set the TTL later.
        self._valid_until = sent + self.ttl
        return held

    async def leave(self) -> None:
        """Hand every range back at once (a clean stop): the others take them
        at their next cycle instead of after the TTL."""
        self.held = frozenset()
        self._valid_until = 0.0
        await self.backend.read_many([[
            "EVAL", _KEEP, 1, self.key, self.token, int(self.ttl * 1000), "1", *self.ranges]])

    async def run(self, stop: anyio.Event) -> None:
        """Keep the share every third of the TTL until ``stop``, then leave."""
        try:
            while not stop.is_set():
                try:
                    await self.keep()
                except Exception as exc:
                    # Redis away: the ranges lapse locally with the TTL
                    # (holds() checks), as they do on the server.
                    log.warning("scan range leases not renewed: %s", exc)
                with anyio.move_on_after(self.ttl / 3):
                    await stop.wait()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                try:
                    await self.leave()
                except Exception as exc:
                    log.info("scan range leases not released (they expire): %s", exc)
