"""Machinery of the library property tests (tests/lua/test_properties_*.py).

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
import json
import pkgutil
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import hypothesis.strategies as st
import redis.exceptions

import flowfabric_worker.protocol as protocol_pkg
from flowfabric_worker.backend.backend import Backend
from flowfabric_worker.protocol import conditions as C
from flowfabric_worker.protocol.function import FCall
from flowfabric_worker.protocol.ids import mint_execution_id, new_uuid
from flowfabric_worker.protocol.keys import ExecKeys
from flowfabric_worker.protocol.partitions import budget_tag, flow_tag, quota_tag
from flowfabric_worker.protocol.signals import WaitpointBinding
from flowfabric_worker.protocol.streams import StreamMode

LANE = "default"
WORKER = "w1"
WIID = "w1-i1"
NS = "ns"
HOUR = 3_600_000
SECRET = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

Census = dict[str, tuple[str, int, Any]]
Call = tuple[str, list[str], list[str | bytes]]


# --- the library's functions and the typed structs ---------------------------

_REGISTER = re.compile(r'redis\.register_function\(\s*"([A-Za-z0-9_]+)"')


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


# --- the world -----------------------------------------------------------------

@dataclass
class World:
    """Ids of the entities ``build_world`` created (see the module docstring)."""

    now: int = 0
    eids: dict[str, str] = field(default_factory=dict)
    claims: dict[str, Any] = field(default_factory=dict)
    misc: dict[str, Any] = field(default_factory=dict)

    def tag(self) -> str:
        return ExecKeys(self.eids["waiting"]).tag


def _now() -> int:
    return int(time.time() * 1000)


async def create_execution(b: Backend, eid: str | None = None, **kw: Any) -> str:
    eid = eid or mint_execution_id(lane_id=LANE)
    kw.setdefault("lane_id", LANE)
    await b.call(make("CreateExecution", eid=eid, namespace=NS, execution_kind="k", **kw))
    return eid


async def claim_execution(b: Backend, eid: str, wiid: str = WIID) -> Any:
    await b.call(make("IssueClaimGrant", eid=eid, lane_id=LANE, worker_id=WORKER,
                      worker_instance_id=wiid, grant_ttl_ms=HOUR))
    return await b.call(make("ClaimExecution", eid=eid, lane_id=LANE, worker_id=WORKER,
                             worker_instance_id=wiid, lease_id=new_uuid(),
                             attempt_id=new_uuid(), lease_ttl_ms=HOUR))


async def suspend_execution(b: Backend, eid: str, c: Any, timeout_at: int | None) -> Any:
    """Suspend claim ``c`` of ``eid`` on a fresh waitpoint awaiting "go" and "more"."""
    wp_id = new_uuid()
    return await b.call(make(
        "SuspendExecution", eid=eid, attempt_index=c.attempt_index, attempt_id=c.attempt_id,
        lease_id=c.lease_id, lease_epoch=c.lease_epoch, worker_instance_id=WIID, lane=LANE,
        suspension_id=new_uuid(), waitpoint_id=wp_id, waitpoint_key=f"wpk:{wp_id}",
        timeout_at=timeout_at, resume_condition_json=C.signal_set(["go", "more"], mode="all"),
        resume_policy_json=C.resume_policy_json()))


async def build_world(b: Backend) -> World:
    w = World(now=_now())
    e = w.eids
    e["waiting"] = await create_execution(b, priority=5)
    await b.redis.hset(ExecKeys(e["waiting"]).hmac_keystore,
                       mapping={"current_kid": "k1", "secret:k1": SECRET})
    e["granted"] = await create_execution(b)
    await b.call(make("IssueClaimGrant", eid=e["granted"], lane_id=LANE, worker_id=WORKER,
                      worker_instance_id=WIID, grant_ttl_ms=HOUR))
    e["tagged"] = await create_execution(b, tags_json=json.dumps({"a": "1"}),
                                policy_json=json.dumps({"max_replay_count": 3}))

    e["active"] = await create_execution(b)
    c = w.claims["active"] = await claim_execution(b, e["active"])
    await b.call(make("AppendFrame", eid=e["active"], attempt_index=c.attempt_index,
                      lease_id=c.lease_id, lease_epoch=c.lease_epoch, frame_type="stdout",
                      payload=b"hello"))
    await b.call(make("AppendFrame", eid=e["active"], attempt_index=c.attempt_index,
                      lease_id=c.lease_id, lease_epoch=c.lease_epoch, frame_type="event",
                      payload=b'{"k": 1}', mode=StreamMode.SUMMARY))
    await b.call(make("JournalAppend", eid=e["active"], lease_id=c.lease_id,
                      lease_epoch=c.lease_epoch, step_index=0, step_name="s0", result=b"r"))
    pwp = new_uuid()
    w.misc["pending"] = await b.call(make(
        "CreatePendingWaitpoint", eid=e["active"], attempt_index=c.attempt_index,
        waitpoint_id=pwp, waitpoint_key=f"wpk:{pwp}", expires_at=w.now + HOUR))

    # Leased with no frame yet: appends create its stream_meta.
    e["leased"] = await create_execution(b)
    w.claims["leased"] = await claim_execution(b, e["leased"], wiid="w1-i4")

    e["revoked"] = await create_execution(b)
    w.claims["revoked"] = await claim_execution(b, e["revoked"], wiid="w1-i2")
    await b.call(make("RevokeLease", eid=e["revoked"], worker_instance_id="w1-i2"))
    e["reclaimable"] = await create_execution(b)
    w.claims["reclaimable"] = await claim_execution(b, e["reclaimable"], wiid="w1-i3")
    await b.call(make("RevokeLease", eid=e["reclaimable"], worker_instance_id="w1-i3"))
    await b.call(make("IssueReclaimGrant", eid=e["reclaimable"], lane_id=LANE, worker_id="w2",
                      worker_instance_id="w2-i1", grant_ttl_ms=HOUR))

    e["suspended"] = await create_execution(b)
    c = w.claims["suspended"] = await claim_execution(b, e["suspended"])
    w.misc["susp"] = await suspend_execution(b, e["suspended"], c, timeout_at=w.now + HOUR)
    e["due"] = await create_execution(b)
    c = w.claims["due"] = await claim_execution(b, e["due"])
    w.misc["due_susp"] = await suspend_execution(b, e["due"], c, timeout_at=w.now - 1000)

    e["resumed"] = await create_execution(b)
    c = w.claims["resumed"] = await claim_execution(b, e["resumed"])
    r = await suspend_execution(b, e["resumed"], c, timeout_at=None)
    await b.call(make("ResumeExecution", eid=e["resumed"], lane=LANE,
                      current_waitpoint_id=r.primary.waitpoint_id))
    await b.call(make("IssueClaimGrant", eid=e["resumed"], lane_id=LANE, worker_id=WORKER,
                      worker_instance_id=WIID, grant_ttl_ms=HOUR))

    e["delayed"] = await create_execution(b, delay_until=w.now + HOUR)
    e["terminal"] = await create_execution(b)
    c = w.claims["terminal"] = await claim_execution(b, e["terminal"])
    await b.call(make("CompleteExecution", eid=e["terminal"], lane_id=LANE,
                      attempt_index=c.attempt_index, worker_instance_id=WIID,
                      lease_id=c.lease_id, lease_epoch=c.lease_epoch,
                      attempt_id=c.attempt_id, result_payload=b"done"))
    e["blocked"] = await create_execution(b)
    await b.call(make("BlockExecutionForAdmission", eid=e["blocked"], lane_id=LANE,
                      blocking_reason="waiting_for_budget", now_ms=w.now))
    e["parked"] = await create_execution(b)
    c = w.claims["parked"] = await claim_execution(b, e["parked"])
    await b.call(make("MoveToWaitingChildren", eid=e["parked"], lane_id=LANE,
                      attempt_index=c.attempt_index, worker_instance_id=WIID,
                      lease_id=c.lease_id, lease_epoch=c.lease_epoch,
                      attempt_id=c.attempt_id))

    await _build_flow(b, w)
    await _build_budgets(b, w)
    await b.call(make("RegisterWorker", namespace=NS, instance_id=WIID, worker_id=WORKER,
                      lanes=(LANE,), ttl_ms=HOUR, now_ms=w.now))
    return w


async def _build_flow(b: Backend, w: World) -> None:
    fid = w.misc["flow"] = new_uuid()
    tag = w.misc["ftag"] = flow_tag(fid, b.partitions)
    e = w.eids
    await b.call(make("CreateFlow", tag=tag, flow_id=fid, namespace=NS))
    rev = 0

    async def member(name: str) -> str:
        nonlocal rev
        eid = e[name] = mint_execution_id(flow_id=fid, config=b.partitions)
        await create_execution(b, eid)
        await b.call(make("AddExecutionToFlow", tag=tag, flow_id=fid, eid=eid))
        rev += 1
        return eid

    async def edge(up: str, down: str, apply: bool = True) -> str:
        nonlocal rev
        edge_id = new_uuid()
        r = await b.call(make("StageDependencyEdge", tag=tag, flow_id=fid, edge_id=edge_id,
                              upstream=up, downstream=down, expected_graph_revision=rev,
                              now_ms=w.now))
        rev = r.graph_revision
        if apply:
            await b.call(make("ApplyDependencyToChild", eid=down, lane=LANE, flow_id=fid,
                              edge_id=edge_id, upstream=up, graph_revision=rev, now_ms=w.now))
        return edge_id

    a, child, loose = await member("f_up"), await member("f_child"), await member("f_loose")
    skipped, fan = await member("f_skipped"), await member("f_fan")
    w.misc["e_child"] = await edge(a, child)
    w.misc["e_staged"] = await edge(a, loose, apply=False)
    e_skip = w.misc["e_skipped"] = await edge(a, skipped)
    await b.call(make("ResolveDependency", eid=skipped, lane=LANE, flow_id=fid, edge_id=e_skip,
                      upstream=a, upstream_outcome="failed", now_ms=w.now))
    await b.call(make("SetEdgeGroupPolicy", tag=tag, flow_id=fid, downstream=fan,
                      policy_variant="any_of", on_satisfied="cancel_remaining", now_ms=w.now))
    e_fan = await edge(a, fan)
    await edge(loose, fan)
    await b.call(make("ResolveDependency", eid=fan, lane=LANE, flow_id=fid, edge_id=e_fan,
                      upstream=a, upstream_outcome="success", now_ms=w.now))
    w.misc["rev"] = rev
    e["f_outsider"] = mint_execution_id(flow_id=fid, config=b.partitions)
    await create_execution(b, e["f_outsider"])
    # A second, cancelled flow: pending member cancels and a backlog entry.
    gone = w.misc["flow2"] = new_uuid()
    tag2 = w.misc["ftag2"] = flow_tag(gone, b.partitions)
    await b.call(make("CreateFlow", tag=tag2, flow_id=gone, namespace=NS))
    e["f2_member"] = mint_execution_id(flow_id=gone, config=b.partitions)
    await create_execution(b, e["f2_member"])
    await b.call(make("AddExecutionToFlow", tag=tag2, flow_id=gone, eid=e["f2_member"]))
    await b.call(make("CancelFlow", tag=tag2, flow_id=gone, policy="cancel_all"))


async def _build_budgets(b: Backend, w: World) -> None:
    bid = w.misc["budget"] = new_uuid()
    btag = w.misc["btag"] = budget_tag(bid, b.partitions)
    await b.call(make("CreateBudget", tag=btag, budget_id=bid, scope_type="flow",
                      scope_id="f", reset_interval_ms=HOUR, now_ms=w.now,
                      limits={"tokens": (1000, 800), "calls": (50, 40)}))
    await b.call(make("RecordSpend", tag=btag, budget_id=bid, deltas={"tokens": 5},
                      now_ms=w.now, eid=w.eids["waiting"]))
    qid = w.misc["quota"] = new_uuid()
    qtag = w.misc["qtag"] = quota_tag(qid, b.partitions)
    await b.call(make("CreateQuotaPolicy", tag=qtag, quota_id=qid, window_seconds=60,
                      max_requests_per_window=100, max_concurrent=10, now_ms=w.now))
    await b.call(make("CheckAdmissionAndRecord", tag=qtag, quota_id=qid, eid=w.eids["waiting"],
                      now_ms=w.now, window_seconds=3600, rate_limit=100, concurrency_cap=10))


# --- valid base calls per function ---------------------------------------------

def _fence(w: World, name: str) -> dict[str, Any]:
    c = w.claims[name]
    return dict(eid=w.eids[name], lane_id=LANE, attempt_index=c.attempt_index,
                worker_instance_id=WIID, lease_id=c.lease_id, lease_epoch=c.lease_epoch,
                attempt_id=c.attempt_id)


def _lease(w: World, name: str) -> dict[str, Any]:
    c = w.claims[name]
    return dict(eid=w.eids[name], attempt_index=c.attempt_index, lease_id=c.lease_id,
                lease_epoch=c.lease_epoch)


def _signal(w: World, cls: str, name: str, grant: Any, **kw: Any) -> FCall[Any]:
    return make(cls, eid=w.eids[name], signal_id=new_uuid(), waitpoint_id=grant.waitpoint_id,
                signal_name="go", token=grant.token, idempotency_key="ik", **kw)


Builder = Callable[[World], "FCall[Any] | Call"]

BASE_CALLS: dict[str, list[Builder]] = {
    "ff_create_execution": [
        lambda w: make("CreateExecution", eid=mint_execution_id(lane_id=LANE), lane_id=LANE,
                       namespace=NS, tags_json='{"t": "v"}', idempotency_key="idem",
                       dedup_ttl_ms=HOUR, execution_deadline_at=w.now + HOUR,
                       policy_json=json.dumps({"routing_requirements": {
                           "required_capabilities": ["gpu"]}})),
        lambda w: make("CreateExecution", eid=mint_execution_id(lane_id=LANE), lane_id=LANE,
                       delay_until=w.now + HOUR, input_payload=b"in"),
    ],
    "ff_issue_claim_grant": [
        lambda w: make("IssueClaimGrant", eid=w.eids["waiting"], lane_id=LANE, worker_id=WORKER,
                       worker_instance_id=WIID, grant_ttl_ms=HOUR)],
    "ff_claim_execution": [
        lambda w: make("ClaimExecution", eid=w.eids["granted"], lane_id=LANE, worker_id=WORKER,
                       worker_instance_id=WIID, lease_id=new_uuid(), attempt_id=new_uuid(),
                       lease_ttl_ms=HOUR, attempt_policy_json='{"a": 1}',
                       attempt_timeout_ms=HOUR, execution_deadline_at=w.now + HOUR)],
    "ff_issue_grant_and_claim": [
        lambda w: make("IssueGrantAndClaim", eid=w.eids["waiting"], lane_id=LANE,
                       lease_id=new_uuid(), attempt_id=new_uuid(), lease_ttl_ms=HOUR,
                       attempt_timeout_ms=HOUR),
        lambda w: make("IssueGrantAndClaim", eid=w.eids["parked"], lane_id=LANE,
                       lease_id=new_uuid(), attempt_id=new_uuid(), lease_ttl_ms=HOUR)],
    "ff_renew_lease": [
        lambda w: make("RenewLease", eid=w.eids["active"],
                       attempt_index=w.claims["active"].attempt_index,
                       attempt_id=w.claims["active"].attempt_id,
                       lease_id=w.claims["active"].lease_id,
                       lease_epoch=w.claims["active"].lease_epoch, lease_ttl_ms=HOUR)],
    "ff_update_progress": [
        lambda w: make("UpdateProgress", eid=w.eids["active"],
                       lease_id=w.claims["active"].lease_id,
                       lease_epoch=w.claims["active"].lease_epoch, progress_pct="50",
                       progress_message="half")],
    "ff_complete_execution": [
        lambda w: make("CompleteExecution", result_payload=b"ok", **_fence(w, "active"))],
    "ff_fail_execution": [
        lambda w: make("FailExecution", failure_reason="boom",
                       retry_policy_json='{"max_retries": 2, "backoff": {"type": "fixed"}}',
                       **_fence(w, "active")),
        lambda w: make("FailExecution", failure_reason="boom", retry_policy_json=json.dumps(
                           {"max_retries": 2, "backoff": {"type": "exponential",
                                                          "initial_delay_ms": 10}}),
                       **_fence(w, "active")),
        lambda w: make("FailExecution", failure_reason="boom", **_fence(w, "active"))],
    "ff_cancel_execution": [
        lambda w: make("CancelExecution", eid=w.eids["active"], lane_id=LANE, reason="r",
                       source="operator_override", attempt_index=0, worker_instance_id=WIID),
        lambda w: make("CancelExecution", eid=w.eids["suspended"], lane_id=LANE, reason="r",
                       attempt_index=0,
                       waitpoint_id=w.misc["susp"].primary.waitpoint_id),
        lambda w: make("CancelExecution", eid=w.eids["waiting"], lane_id=LANE, reason="r")],
    "ff_delay_execution": [
        lambda w: make("DelayExecution", delay_until=w.now + HOUR, **_fence(w, "active"))],
    "ff_move_to_waiting_children": [
        lambda w: make("MoveToWaitingChildren", **_fence(w, "active"))],
    "ff_promote_delayed": [
        lambda w: make("PromoteDelayed", eid=w.eids["delayed"], lane_id=LANE,
                       now_ms=w.now + 2 * HOUR)],
    "ff_mark_lease_expired_if_due": [
        lambda w: make("MarkLeaseExpiredIfDue", eid=w.eids["active"])],
    "ff_revoke_lease": [
        lambda w: make("RevokeLease", eid=w.eids["active"], worker_instance_id=WIID,
                       revoke_reason="ops")],
    "ff_issue_reclaim_grant": [
        lambda w: make("IssueReclaimGrant", eid=w.eids["revoked"], lane_id=LANE, worker_id="w2",
                       worker_instance_id="w2-i1", grant_ttl_ms=HOUR)],
    "ff_reclaim_execution": [
        lambda w: make("ReclaimExecution", eid=w.eids["reclaimable"], lane_id=LANE,
                       worker_id="w2", worker_instance_id="w2-i1", lease_id=new_uuid(),
                       attempt_id=new_uuid(), lease_ttl_ms=HOUR,
                       old_attempt_index=w.claims["reclaimable"].attempt_index)],
    "ff_expire_execution": [
        lambda w: make("ExpireExecution", eid=w.eids["active"], lane_id=LANE,
                       attempt_index=0, worker_instance_id=WIID),
        lambda w: make("ExpireExecution", eid=w.eids["suspended"], lane_id=LANE),
        lambda w: make("ExpireExecution", eid=w.eids["delayed"], lane_id=LANE)],
    "ff_change_priority": [
        lambda w: make("ChangePriority", eid=w.eids["waiting"], lane_id=LANE, new_priority=7)],
    "ff_replay_execution": [
        lambda w: make("ReplayExecution", eid=w.eids["terminal"], lane_id=LANE, now_ms=w.now),
        lambda w: make("ReplayFlowMember", eid=w.eids["f_skipped"], lane=LANE,
                       inbound_edge_ids=(w.misc["e_skipped"],), now_ms=w.now)],
    "ff_set_execution_tags": [
        lambda w: make("SetExecutionTags", eid=w.eids["tagged"],
                       tags={"app.owner": "me", "app.team": "x"})],
    "ff_block_execution_for_admission": [
        lambda w: make("BlockExecutionForAdmission", eid=w.eids["waiting"], lane_id=LANE,
                       blocking_reason="waiting_for_quota", now_ms=w.now)],
    "ff_unblock_execution": [
        lambda w: make("UnblockExecution", eid=w.eids["blocked"], lane_id=LANE,
                       source="budget", now_ms=w.now)],
    "ff_register_worker": [
        lambda w: make("RegisterWorker", namespace=NS, instance_id="w9-i1", worker_id="w9",
                       lanes=(LANE,), capabilities=("gpu",), ttl_ms=HOUR, now_ms=w.now)],
    "ff_heartbeat_worker": [
        lambda w: make("HeartbeatWorker", namespace=NS, instance_id=WIID, now_ms=w.now)],
    "ff_version": [lambda w: make("Version")],
    "ff_create_pending_waitpoint": [
        lambda w: make("CreatePendingWaitpoint", eid=w.eids["active"],
                       attempt_index=w.claims["active"].attempt_index, waitpoint_id=new_uuid(),
                       waitpoint_key="wpk:new", expires_at=w.now + HOUR)],
    "ff_close_waitpoint": [
        lambda w: make("CloseWaitpoint", eid=w.eids["active"],
                       waitpoint_id=w.misc["pending"].waitpoint_id)],
    "ff_suspend_execution": [
        lambda w: make(
            "SuspendExecution", **_lease(w, "active"), attempt_id=w.claims["active"].attempt_id,
            worker_instance_id=WIID, lane=LANE, suspension_id=new_uuid(),
            waitpoint_id=new_uuid(), waitpoint_key="wpk:primary", timeout_at=w.now + HOUR,
            resume_condition_json=C.signal_set(["go"]), resume_policy_json=C.resume_policy_json(),
            idempotency_key="ik", dedup_ttl_ms=HOUR,
            extra_waitpoints=(WaitpointBinding(new_uuid(), "wpk:x"),)),
        lambda w: make(
            "SuspendExecution", **_lease(w, "active"), attempt_id=w.claims["active"].attempt_id,
            worker_instance_id=WIID, lane=LANE, suspension_id=new_uuid(),
            waitpoint_id=w.misc["pending"].waitpoint_id, waitpoint_key="",
            resume_condition_json=C.signal_set(["go"]), resume_policy_json=C.resume_policy_json(),
            use_pending_waitpoint=True)],
    "ff_deliver_signal": [
        lambda w: _signal(w, "DeliverSignal", "suspended", w.misc["susp"].primary, lane=LANE),
        lambda w: _signal(w, "DeliverSignal", "due", w.misc["due_susp"].primary, lane=LANE,
                          resume_delay_ms=500)],
    "ff_buffer_signal_for_pending_waitpoint": [
        lambda w: _signal(w, "BufferSignal", "active", w.misc["pending"])],
    "ff_resume_execution": [
        lambda w: make("ResumeExecution", eid=w.eids["suspended"], lane=LANE,
                       current_waitpoint_id=w.misc["susp"].primary.waitpoint_id,
                       resume_delay_ms=1000)],
    "ff_expire_suspension": [
        lambda w: make("ExpireSuspension", eid=w.eids["due"], lane=LANE,
                       current_waitpoint_id=w.misc["due_susp"].primary.waitpoint_id,
                       current_attempt_index=w.claims["due"].attempt_index)],
    "ff_claim_resumed_execution": [
        lambda w: make("ClaimResumedExecution", eid=w.eids["resumed"], worker_id=WORKER,
                       worker_instance_id=WIID, lane=LANE, lease_id=new_uuid(),
                       lease_ttl_ms=HOUR, attempt_index=w.claims["resumed"].attempt_index,
                       remaining_attempt_timeout_ms=HOUR)],
    "ff_rotate_waitpoint_hmac_secret": [
        lambda w: make("RotateHmacSecret", tag=w.tag(), new_kid="k2", new_secret_hex="ab" * 32)],
    "ff_list_waitpoint_hmac_kids": [lambda w: make("ListHmacKids", tag=w.tag())],
    "ff_append_frame": [
        lambda w: make("AppendFrame", **_lease(w, "active"), frame_type="stdout",
                       payload=b"more"),
        lambda w: make("AppendFrame", **_lease(w, "active"), frame_type="event",
                       payload=b'{"x": {"y": 2}}', mode=StreamMode.SUMMARY),
        lambda w: make("AppendFrame", **_lease(w, "active"), frame_type="tick",
                       payload=b"t", mode=StreamMode.BEST_EFFORT, ttl_ms=60_000),
        lambda w: make("AppendFrame", **_lease(w, "leased"), frame_type="event",
                       payload=b'{"first": 1}', mode=StreamMode.SUMMARY)],
    "ff_read_attempt_stream": [
        lambda w: make("ReadAttemptStream", eid=w.eids["active"],
                       attempt_index=w.claims["active"].attempt_index)],
    "ff_read_summary": [
        lambda w: make("ReadSummary", eid=w.eids["active"],
                       attempt_index=w.claims["active"].attempt_index)],
    "ffw_append_frames": [
        lambda w: make("AppendFrames", **_lease(w, "active"), frames=(
            ("stdout", b"a", "durable", "", ""), ("event", b'{"z": 1}', "summary", "c", ""),
            ("tick", b"t", "best_effort", "", "")), ttl_ms=60_000),
        lambda w: make("AppendFrames", **_lease(w, "leased"), frames=(
            ("event", b'{"z": 1}', "summary", "", ""),))],
    "ffw_journal_append": [
        lambda w: make("JournalAppend", eid=w.eids["active"],
                       lease_id=w.claims["active"].lease_id,
                       lease_epoch=w.claims["active"].lease_epoch, step_index=1,
                       step_name="s1", result=b"r1")],
    "ffw_journal_read": [lambda w: make("JournalRead", eid=w.eids["active"])],
    "ffw_attach_admission": [
        lambda w: make("AttachAdmission", eid=w.eids["waiting"], budget_ids=w.misc["budget"],
                       quota_policy_id=w.misc["quota"])],
    "ffw_version": [lambda w: ("ffw_version", [], [])],
    # Flows (spec 04 §5).
    "ff_create_flow": [
        lambda w: make("CreateFlow", tag=w.misc["ftag"], flow_id=new_uuid(), namespace=NS)],
    "ff_add_execution_to_flow": [
        lambda w: make("AddExecutionToFlow", tag=w.misc["ftag"], flow_id=w.misc["flow"],
                       eid=w.eids["f_outsider"])],
    "ff_set_flow_tags": [
        lambda w: make("SetFlowTags", tag=w.misc["ftag"], flow_id=w.misc["flow"],
                       tags={"app.k": "v"})],
    "ff_evaluate_flow_eligibility": [
        lambda w: make("EvaluateFlowEligibility", eid=w.eids["f_child"])],
    "ff_promote_blocked_to_eligible": [
        lambda w: make("PromoteBlockedToEligible", eid=w.eids["parked"], lane=LANE,
                       now_ms=w.now)],
    "ff_stage_dependency_edge": [
        lambda w: make("StageDependencyEdge", tag=w.misc["ftag"], flow_id=w.misc["flow"],
                       edge_id=new_uuid(), upstream=w.eids["f_child"],
                       downstream=w.eids["f_loose"], expected_graph_revision=w.misc["rev"],
                       now_ms=w.now)],
    "ff_set_edge_group_policy": [
        lambda w: make("SetEdgeGroupPolicy", tag=w.misc["ftag"], flow_id=w.misc["flow"],
                       downstream=w.eids["f_loose"], policy_variant="quorum",
                       on_satisfied="let_run", k=1, now_ms=w.now)],
    "ff_apply_dependency_to_child": [
        lambda w: make("ApplyDependencyToChild", eid=w.eids["f_loose"], lane=LANE,
                       flow_id=w.misc["flow"], edge_id=w.misc["e_staged"],
                       upstream=w.eids["f_up"], graph_revision=w.misc["rev"], now_ms=w.now)],
    "ff_resolve_dependency": [
        lambda w: make("ResolveDependency", eid=w.eids["f_child"], lane=LANE,
                       flow_id=w.misc["flow"], edge_id=w.misc["e_child"],
                       upstream=w.eids["f_up"], upstream_outcome="success", now_ms=w.now),
        lambda w: make("ResolveDependency", eid=w.eids["f_child"], lane=LANE,
                       flow_id=w.misc["flow"], edge_id=w.misc["e_child"],
                       upstream=w.eids["f_up"], upstream_outcome="failed", now_ms=w.now)],
    "ff_cancel_flow": [
        lambda w: make("CancelFlow", tag=w.misc["ftag"], flow_id=w.misc["flow"],
                       policy="cancel_all", grace_ms=1000)],
    "ff_ack_cancel_member": [
        lambda w: make("AckCancelMember", tag=w.misc["ftag2"], flow_id=w.misc["flow2"],
                       eid=w.eids["f2_member"])],
    "ff_drain_sibling_cancel_group": [
        lambda w: make("DrainSiblingCancelGroup", tag=w.misc["ftag"], flow_id=w.misc["flow"],
                       downstream=w.eids["f_fan"])],
    "ff_reconcile_sibling_cancel_group": [
        lambda w: make("ReconcileSiblingCancelGroup", tag=w.misc["ftag"],
                       flow_id=w.misc["flow"], downstream=w.eids["f_fan"])],
    # Budgets and quotas (spec 04 §6-§7).
    "ff_create_budget": [
        lambda w: make("CreateBudget", tag=w.misc["btag"], budget_id=new_uuid(),
                       scope_type="flow", scope_id="f", reset_interval_ms=HOUR, now_ms=w.now,
                       limits={"tokens": (10, 5)})],
    "ff_report_usage_and_check": [
        lambda w: make("ReportUsageAndCheck", tag=w.misc["btag"], budget_id=w.misc["budget"],
                       deltas={"tokens": 3, "calls": 1}, now_ms=w.now, dedup_id="d1")],
    "ff_record_spend": [
        lambda w: make("RecordSpend", tag=w.misc["btag"], budget_id=w.misc["budget"],
                       deltas={"tokens": 3, "calls": 1}, now_ms=w.now,
                       eid=w.eids["active"])],
    "ff_release_budget": [
        lambda w: make("ReleaseBudget", tag=w.misc["btag"], budget_id=w.misc["budget"],
                       eid=w.eids["waiting"])],
    "ff_reset_budget": [
        lambda w: make("ResetBudget", tag=w.misc["btag"], budget_id=w.misc["budget"],
                       now_ms=w.now)],
    "ff_create_quota_policy": [
        lambda w: make("CreateQuotaPolicy", tag=w.misc["qtag"], quota_id=new_uuid(),
                       window_seconds=60, max_requests_per_window=5, max_concurrent=2,
                       now_ms=w.now)],
    "ff_check_admission_and_record": [
        lambda w: make("CheckAdmissionAndRecord", tag=w.misc["qtag"], quota_id=w.misc["quota"],
                       eid=w.eids["active"], now_ms=w.now, window_seconds=60, rate_limit=100,
                       concurrency_cap=10)],
    "ff_release_admission": [
        lambda w: make("ReleaseAdmission", tag=w.misc["qtag"], quota_id=w.misc["quota"],
                       eid=w.eids["waiting"])],
}


# --- mutations -----------------------------------------------------------------

_BIG_ARRAY = json.dumps([f"n{i}" for i in range(5000)])
_BIG_OBJECT = json.dumps({f"k{i}": i for i in range(5000)})
GARBAGE: list[str] = [
    "", "0", "1", "-1", "-0", "1.5", "NaN", "nan", "inf", "-inf", "1e309", "1e3", "0x10",
    " 7", "007", "+1", "99999999999999999999", "9007199254740993", "-9223372036854775809",
    "18446744073709551616", "abc", "{", "[]", "{}", "null", "true", '{"a": {"b": 1}}',
    "[1, [2]]", '{"max_retries": null}', "\x00", "a:b", "a,b,,c", "1 2 3",
    '{"max_retries": 5, "backoff": {"type": "fixed", "delay_ms": "nan"}}',
    '{"max_retries": 5, "backoff": {"type": "exponential", "max_delay_ms": "inf"}}',
    '{"a": {"x": 1e400}}', '{"x": NaN}',
    _BIG_ARRAY, _BIG_OBJECT, "x" * 70_000, " ".join(["1"] * 5000),
]

argv_value = st.one_of(
    st.sampled_from(GARBAGE),
    st.integers(-(2**70), 2**70).map(str),
    st.text(max_size=12),
)


def _set(argv: list[str | bytes], pos: int, value: str) -> list[str | bytes]:
    out = list(argv)
    out[pos] = value
    return out


def _big_dims(n: int, paired: bool) -> list[str | bytes]:
    """``n`` then ``n`` dims and deltas, parallel (usage) or paired (spend)."""
    dims = [f"d{i}" for i in range(n)]
    if paired:
        return [str(n), *[x for d in dims for x in (d, "1")]]
    return [str(n), *dims, *(["1"] * n)]


def _big_condition() -> str:
    return json.dumps({"condition_type": "signal_set", "signal_match_mode": "any",
                       "required_signal_names": [f"s{i}" for i in range(5000)],
                       "minimum_signal_count": 1})


# Large but well-formed inputs the contract allows (5 000 tags, policy keys,
# signal names, dimensions, tag pairs): they must either work or be refused
# before any write (the 0.15 library raises "too many results to unpack"
# after writing for several of them).
BIG_INPUTS: dict[str, Callable[[list[str | bytes]], list[str | bytes]]] = {
    "ff_create_execution": lambda a: _set(a, 10, _BIG_OBJECT),
    "ff_claim_execution": lambda a: _set(a, 9, _BIG_OBJECT),
    "ff_issue_grant_and_claim": lambda a: _set(a, 8, _BIG_OBJECT),
    "ff_suspend_execution": lambda a: _set(a, 11, _big_condition()),
    "ff_set_execution_tags": lambda a: _big_tail(5000),
    "ff_set_flow_tags": lambda a: _big_tail(5000),
    "ff_create_budget": lambda a: [*a[:8], str(5000), *[f"d{i}" for i in range(5000)],
                                   *(["10"] * 5000), *(["5"] * 5000)],
    "ff_report_usage_and_check": lambda a: [*_big_dims(5000, False), *a[-2:]],
    "ff_record_spend": lambda a: [*_big_dims(5000, True), *a[-3:]],
    "ff_append_frame": lambda a: _set(_set(_set(a, 6, _BIG_OBJECT), 12, "1000000"), 13,
                                      "summary"),
    "ff_rotate_waitpoint_hmac_secret": lambda a: _set(a, 1, "ab" * 35_000),
}


def _big_tail(n: int) -> list[str | bytes]:
    out: list[str | bytes] = []
    for i in range(n):
        out += [f"app.k{i}", str(i)]
    return out


@dataclass(frozen=True)
class Recipe:
    """How to turn a valid call into a test input, drawn independently of the
    world (so hypothesis generates it before the async test runs): which
    base call, which ARGV positions get which garbage, how the ARGV and KEYS
    vectors are cut or extended. Positions are taken modulo the vector size."""

    variant: int
    mutate: bool
    big: bool
    replace: tuple[tuple[int, str], ...]
    argv_shape: str
    argv_cut: int
    argv_extra: tuple[str, ...]
    keys_shape: str
    keys_cut: int
    keys_extra: int


def recipes() -> st.SearchStrategy[Recipe]:
    return st.builds(
        Recipe,
        variant=st.integers(0, 3),
        mutate=st.integers(0, 4).map(bool),
        big=st.integers(0, 4).map(lambda x: x == 0),
        replace=st.lists(st.tuples(st.integers(0, 40), argv_value), max_size=3).map(tuple),
        argv_shape=st.sampled_from(["keep"] * 5 + ["cut", "extend", "huge"]),
        argv_cut=st.integers(0, 40),
        argv_extra=st.lists(argv_value, min_size=1, max_size=3).map(tuple),
        keys_shape=st.sampled_from(["keep"] * 6 + ["drop", "extra"]),
        keys_cut=st.integers(0, 40),
        keys_extra=st.integers(1, 3),
    )


def apply_recipe(recipe: Recipe, w: World, function: str) -> Call:
    """The call ``recipe`` makes of ``function``'s base call against ``w``:
    ARGV values replaced by garbage, the ARGV vector cut or extended (by a
    few values or 10 000), KEYS dropped or extended (junk keys on the tag)."""
    builders = BASE_CALLS[function]
    built = builders[recipe.variant % len(builders)](w)
    name, keys, argv = built if isinstance(built, tuple) else raw(built)
    keys, argv = list(keys), list(argv)
    if recipe.big and function in BIG_INPUTS:
        argv = BIG_INPUTS[function](argv)
    if not recipe.mutate:
        return name, keys, argv
    if argv:
        for pos, value in recipe.replace:
            argv[pos % len(argv)] = value
    if recipe.argv_shape == "cut" and argv:
        argv = argv[:recipe.argv_cut % len(argv)]
    elif recipe.argv_shape == "extend":
        argv += list(recipe.argv_extra)
    elif recipe.argv_shape == "huge":
        argv += _big_tail(5000)
    if recipe.keys_shape == "drop" and keys:
        keys = keys[:recipe.keys_cut % len(keys)]
    elif recipe.keys_shape == "extra" and keys:
        keys += [keys[0] + ":junk"] * recipe.keys_extra
    return name, keys, argv


async def fcall(r: Any, call: Call) -> tuple[str, Any]:
    """Run ``call``: ("ok", reply), ("refused", code) or ("script_error", text)."""
    name, keys, argv = call
    try:
        reply = await r.execute_command("FCALL", name, len(keys), *keys, *argv)
    except redis.exceptions.ResponseError as e:
        return "script_error", str(e)[:300]
    if isinstance(reply, list) and reply and reply[0] == 0:
        return "refused", _s(reply[1])
    return "ok", reply


def describe(call: Call) -> str:
    name, keys, argv = call

    def short(v: str | bytes) -> str:
        s = _s(v)
        return s if len(s) <= 60 else f"{s[:40]}...<{len(s)} bytes>"

    tail = f" +{len(argv) - 24} more" if len(argv) > 24 else ""
    return (f"{name} KEYS[{len(keys)}] ARGV[{len(argv)}]="
            f"{[short(a) for a in argv[:24]]}{tail}")


def census_diff(before: Census, after: Census) -> list[str]:
    out = []
    for k in sorted(set(before) | set(after)):
        if before.get(k) != after.get(k):
            if k not in before:
                out.append(f"+ {k}")
            elif k not in after:
                out.append(f"- {k}")
            else:
                out.append(f"~ {k}")
    return out

