"""Machinery of the library property tests (tests/lua/test_properties_*.py),
in four modules: this one (function discovery, census, snapshot, invariants,
allowed error diffs), ``property_world`` (the world), ``property_calls``
(``BASE_CALLS``) and ``property_mutations`` (recipes, sending, describing).

* ``registered_functions()`` reads the function names out of the Lua sources,
  so a new function without a strategy fails the coverage test.
* ``build_world()`` creates one database holding an execution in every
  interesting state (waiting, granted, leased with frames and a pending
  waitpoint, revoked, suspended, resumed, delayed, blocked, terminal), a flow
  with applied/resolved/skipped edges and a sibling-cancel group, a budget, a
  quota policy and a worker, all through the typed call structs; a
  ``Snapshot`` of it (DUMP of every key) is restored after every example
  that changed something.
* ``BASE_CALLS`` holds, per function, valid calls against that world;
  a ``Recipe`` (drawn by ``recipes()``, applied by ``apply_recipe()``) turns
  one into random ARGV/KEYS: garbage at some positions, truncated or
  extended vectors, missing or extra keys, 5 000-element inputs
  (``BIG_INPUTS``: large but well-formed tags, policies, names, dimensions).
* ``census()`` / ``index_violations()`` are the two invariants: an error
  reply (or a script error) leaves the census unchanged, and afterwards every
  exec_core and the lane indexes agree (spec 01 §3.2, spec 02 §1).

The call structs are looked up by class name through ``CALLS`` (found by
walking ``flowfabric_worker.protocol``) so moving a protocol module does not
break these tests.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import time
from importlib import resources
from typing import Any

import flowfabric_worker.protocol as protocol_pkg
from flowfabric_worker.protocol.function import FCall

LANE = "default"
WORKER = "w1"
WIID = "w1-i1"
NS = "ns"
HOUR = 3_600_000
SECRET = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

Census = dict[str, tuple[str, int, Any]]
Call = tuple[str, list[str], list[str | bytes]]


# --- the library's functions and the typed structs ---------------------------

_REGISTER = re.compile(
    r'redis\.register_function(?:\(\s*|\s*\{\s*function_name\s*=\s*)"([A-Za-z0-9_]+)"')


def registered_functions() -> dict[str, str]:
    """Function name -> library folder, from every ``redis.register_function``
    call of the Lua sources."""
    out: dict[str, str] = {}
    root = resources.files("flowfabric_worker").joinpath("lua")
    for folder in root.iterdir():
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if entry.name.endswith(".lua"):
                for name in _REGISTER.findall(entry.read_text(encoding="utf-8")):
                    out[name] = folder.name
    return out


def _discover_calls() -> dict[str, type[FCall[Any]]]:
    found: dict[str, type[FCall[Any]]] = {}
    for info in pkgutil.walk_packages(protocol_pkg.__path__, protocol_pkg.__name__ + "."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, FCall) and value.NAME:
                found[value.__name__] = value
    return found


CALLS = _discover_calls()


def make(cls_name: str, **kw: Any) -> FCall[Any]:
    """The typed call struct ``cls_name`` built from ``kw``."""
    return CALLS[cls_name](**kw)


def raw(fn: FCall[Any]) -> Call:
    return fn.NAME, list(fn.keys()), list(fn.argv())


# --- census and snapshot -----------------------------------------------------

async def census(r: Any) -> Census:
    """Every key -> (type, absolute expiry ms or -1, full contents)."""
    keys = sorted([k async for k in r.scan_iter(count=1000)])
    pipe = r.pipeline(transaction=False)
    for k in keys:
        pipe.type(k)
        pipe.execute_command("PEXPIRETIME", k)
    meta = await pipe.execute()
    pipe = r.pipeline(transaction=False)
    types = []
    for i, k in enumerate(keys):
        t = meta[2 * i]
        t = t.decode() if isinstance(t, bytes) else str(t)
        types.append(t)
        if t == "string":
            pipe.get(k)
        elif t == "hash":
            pipe.hgetall(k)
        elif t == "zset":
            pipe.zrange(k, 0, -1, withscores=True)
        elif t == "set":
            pipe.smembers(k)
        elif t == "stream":
            pipe.xrange(k)
        else:
            pipe.lrange(k, 0, -1)
    values = await pipe.execute()
    out: Census = {}
    for i, k in enumerate(keys):
        v = values[i]
        if types[i] == "set":
            v = sorted(v)
        out[k.decode()] = (types[i], int(meta[2 * i + 1]), v)
    return out


class Snapshot:
    """The world's keys as DUMP payloads, restorable over any database state."""

    def __init__(self) -> None:
        self.dumps: list[tuple[bytes, int, bytes]] = []
        self.census: Census = {}

    @classmethod
    async def take(cls, r: Any) -> Snapshot:
        s = cls()
        keys = [k async for k in r.scan_iter(count=1000)]
        pipe = r.pipeline(transaction=False)
        for k in keys:
            pipe.dump(k)
            pipe.execute_command("PEXPIRETIME", k)
        got = await pipe.execute()
        s.dumps = [(k, int(got[2 * i + 1]), got[2 * i]) for i, k in enumerate(keys)]
        s.census = await census(r)
        return s

    async def restore(self, r: Any) -> Census:
        """Put the world back; returns the census of the restored database
        (expiry times move by the few ms RESTORE's relative TTL costs)."""
        now = int(time.time() * 1000)
        pipe = r.pipeline(transaction=False)
        pipe.flushdb()
        for key, expire_at, payload in self.dumps:
            ttl = max(expire_at - now, 1) if expire_at > 0 else 0
            pipe.restore(key, ttl, payload, replace=True)
        await pipe.execute()
        return await census(r)


# --- invariant 2: indexes and records agree ----------------------------------

_SCHED = ("eligible", "delayed", "active", "suspended", "terminal", "blocked:dependencies",
          "blocked:budget", "blocked:quota", "blocked:route", "blocked:operator")
_RUNNABLE_SET = {
    "eligible_now": "eligible", "not_eligible_until_time": "delayed",
    "blocked_by_dependencies": "blocked:dependencies", "blocked_by_budget": "blocked:budget",
    "blocked_by_quota": "blocked:quota", "blocked_by_route": "blocked:route",
    "blocked_by_operator": "blocked:operator", "blocked_by_lane_state": "blocked:operator",
}
_CORE = re.compile(r"^ff:exec:(\{[^}]*\}):(.*):core$")
_LANE_IDX = re.compile(r"^ff:idx:(\{[^}]*\}):lane:(.*?):(" + "|".join(_SCHED) + ")$")
_WORKER_IDX = re.compile(r"^ff:idx:(\{[^}]*\}):worker:(.*):leases$")


def _s(v: Any) -> str:
    return v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else str(v)


def _members(c: Census, key: str) -> set[str]:
    entry = c.get(key)
    if entry is None:
        return set()
    t, _, v = entry
    if t == "zset":
        return {_s(m) for m, _ in v}
    if t == "set":
        return {_s(m) for m in v}
    return set()


def expected_set(core: dict[str, str]) -> str | None:
    """The lane scheduling zset an execution in this state belongs to."""
    phase = core.get("lifecycle_phase", "")
    if phase == "runnable":
        return _RUNNABLE_SET.get(core.get("eligibility_state", ""))
    return {"active": "active", "suspended": "suspended", "terminal": "terminal"}.get(phase)


def index_violations(c: Census) -> list[str]:
    """Disagreements between exec_core records and the indexes (spec 01 §3.2:
    one scheduling zset per execution; lease_expiry / worker leases follow
    the lease; every indexed id has a record)."""
    out: list[str] = []
    cores: dict[tuple[str, str], dict[str, str]] = {}
    for key, (t, _, v) in c.items():
        m = _CORE.match(key)
        if m and t == "hash":
            cores[(m.group(1), m.group(2))] = {_s(f): _s(x) for f, x in v.items()}
    where: dict[tuple[str, str], list[str]] = {}
    leased_by: dict[tuple[str, str], list[str]] = {}
    for key in c:
        m = _LANE_IDX.match(key)
        if m:
            tag, lane, kind = m.groups()
            for eid in _members(c, key):
                where.setdefault((tag, eid), []).append(f"{lane}:{kind}")
                if (tag, eid) not in cores:
                    out.append(f"{eid} in {key} has no exec_core")
        m = _WORKER_IDX.match(key)
        if m:
            tag, wiid = m.groups()
            for eid in _members(c, key):
                leased_by.setdefault((tag, eid), []).append(wiid)
    expiry: dict[str, set[str]] = {}
    for (tag, eid), core in cores.items():
        lane = core.get("lane_id") or "default"
        want = expected_set(core)
        got = sorted(where.get((tag, eid), []))
        if want is not None and got != [f"{lane}:{want}"]:
            out.append(f"{eid} ({core.get('lifecycle_phase')}/{core.get('eligibility_state')})"
                       f" is in {got}, expected [{lane}:{want}]")
        if tag not in expiry:
            expiry[tag] = _members(c, f"ff:idx:{tag}:lease_expiry")
        holds = core.get("lifecycle_phase") == "active" and core.get("ownership_state") in (
            "leased", "lease_expired_reclaimable")
        if holds != (eid in expiry[tag]):
            out.append(f"{eid} ({core.get('lifecycle_phase')}/{core.get('ownership_state')})"
                       f" lease_expiry membership is {eid in expiry[tag]}")
        if holds != bool(leased_by.get((tag, eid))):
            out.append(f"{eid} ({core.get('lifecycle_phase')}/{core.get('ownership_state')})"
                       f" worker lease sets: {leased_by.get((tag, eid))}")
        # lease:current outlives the expiry by a grace only (spec 02 §3.6): an
        # overdue lease not yet marked expired may have lost it legitimately.
        expires = float(core.get("lease_expires_at") or 0)
        if core.get("ownership_state") == "leased" and expires > time.time() * 1000:
            lease = c.get(f"ff:exec:{tag}:{eid}:lease:current")
            if lease is None or _s(lease[2].get(b"lease_id", b"")) != core.get("current_lease_id"):
                out.append(f"{eid} is leased but lease:current does not match")
        if core.get("lifecycle_phase") == "suspended":
            susp = c.get(f"ff:exec:{tag}:{eid}:suspension:current")
            if susp is None or _s(susp[2].get(b"closed_at", b"")) != "":
                out.append(f"{eid} is suspended without an open suspension")
    for tag, members in expiry.items():
        for eid in members:
            if (tag, eid) not in cores:
                out.append(f"{eid} in lease_expiry has no exec_core")
    return out + _flow_violations(c, cores)


_FLOW_CORE = re.compile(r"^ff:flow:(\{[^}]*\}):(.*):core$")
_FLOW_INDEX = re.compile(r"^ff:idx:(\{[^}]*\}):flow_index$")
_FLOW_MEMBERS = re.compile(r"^ff:flow:(\{[^}]*\}):(.*):members$")


def _flow_violations(c: Census, cores: dict[tuple[str, str], dict[str, str]]) -> list[str]:
    """Flow records and their indexes (spec 04 §5.1-§5.2): a flow is in its
    partition's flow_index and every id there has a record; an execution's
    flow_id names a flow whose members set holds it, and every member's
    exec_core names that flow."""
    out: list[str] = []
    flows = {(m.group(1), m.group(2)) for k in c if (m := _FLOW_CORE.match(k))}
    for tag, fid in flows:
        if fid not in _members(c, f"ff:idx:{tag}:flow_index"):
            out.append(f"flow {fid} is not in its flow_index")
    for key in c:
        if m := _FLOW_INDEX.match(key):
            for fid in _members(c, key):
                if (m.group(1), fid) not in flows:
                    out.append(f"flow_index member {fid!r} has no flow record")
        if m := _FLOW_MEMBERS.match(key):
            tag, fid = m.groups()
            for eid in _members(c, key):
                if cores.get((tag, eid), {}).get("flow_id") != fid:
                    out.append(f"member {eid!r} of flow {fid} does not name the flow")
    for (tag, eid), core in cores.items():
        fid = core.get("flow_id", "")
        if fid and eid not in _members(c, f"ff:flow:{tag}:{fid}:members"):
            out.append(f"{eid} names flow {fid!r} but is not among its members")
    return out


# --- error replies the contract lets write (spec 02 §0.1, spec 03 §2.3) -----

_HMAC_CODES = {"invalid_keys_missing_hmac", "missing_token", "invalid_token",
               "hmac_secret_not_initialized", "token_expired", "invalid_secret"}


def _without_fields(c: Census, fields: set[bytes], suffix: str = ":core") -> Census:
    out: Census = {}
    for k, (t, exp, v) in c.items():
        if t == "hash" and k.endswith(suffix):
            v = {f: x for f, x in v.items() if f not in fields}
        out[k] = (t, exp, v)
    return out


def error_diff_allowed(function: str, code: str, before: Census, after: Census) -> bool:
    """True when a refusal's writes are the ones the contract documents:
    lease_expired marks the lease expired, capability_mismatch and the token
    checks stamp one exec_core field, max_retries_exhausted (reclaim) makes
    the execution terminal, and the resume-claim drops an expired grant."""
    if code in ("lease_expired", "max_retries_exhausted"):
        return True
    if code == "capability_mismatch":
        f = {b"last_capability_mismatch_at"}
        return _without_fields(before, f) == _without_fields(after, f)
    if code in _HMAC_CODES and function in ("ff_deliver_signal",
                                            "ff_buffer_signal_for_pending_waitpoint"):
        f = {b"last_hmac_validation_failed_at"}
        return _without_fields(before, f) == _without_fields(after, f)
    if code == "claim_grant_expired" and function == "ff_claim_resumed_execution":
        return {k: v for k, v in before.items() if not k.endswith(":claim_grant")} == after
    return False
