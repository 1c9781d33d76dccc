"""What the fault run concludes: Redis records read by the spec's key schema
against the ledger outside Redis (``bench/chaos.py``)."""

from __future__ import annotations

import asyncio
import bisect
import json
import os
import statistics
import sys
import time
from collections import Counter, defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any

import redis.asyncio as aredis

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from bench.chaos_model import (  # noqa: E402
    TERMINAL,
    Acked,
    Config,
    Fault,
    attempt_key,
    attempts_key,
    core_key,
    history_key,
)
from bench.chaos_procs import Workers  # noqa: E402
from bench.chaos_report import _count_log_errors  # noqa: E402
from flowfabric_worker import Client, TaskDefinition  # noqa: E402


class RunAnalysis:
    """The analysis half of :class:`bench.chaos.Run` (state set by the run)."""

    cfg: Config
    workers: Workers | None
    reader: aredis.Redis | None
    acked: dict[str, Acked]
    unacked: list[dict[str, Any]]
    submit_errors: Counter[str]
    client_reopens: int
    faults: list[Fault]
    terminal: set[str]
    redis_kills: int
    t0: float
    load_start: list[float]
    guarded_repeats: list[dict[str, Any]]
    client: Client | None

    def _task(self, sync: bool) -> TaskDefinition[Any, Any]:
        raise NotImplementedError  # the run's own (bench/chaos.py)

    def _ledger(self) -> dict[str, list[dict[str, Any]]]:
        assert self.workers is not None
        by_eid: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for path in sorted(self.workers.ledger_dir.glob("ledger-*.jsonl")):
            for line in path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn last line (none expected with one write(2) a line)
                by_eid[rec["eid"]].append(rec)
        return by_eid

    async def _read_records(self, eids: list[str]) -> dict[str, dict[str, Any]]:
        """exec_core, every attempt hash and the completions in lease:history."""
        assert self.reader is not None
        out: dict[str, dict[str, Any]] = {}
        for k in range(0, len(eids), 200):
            chunk = eids[k:k + 200]
            pipe = self.reader.pipeline(transaction=False)
            for eid in chunk:
                pipe.hgetall(core_key(eid))
                pipe.zrange(attempts_key(eid), 0, -1)
                pipe.xrange(history_key(eid))
            res = await pipe.execute()
            for n, eid in enumerate(chunk):
                core_raw, idx_raw, hist = res[3 * n], res[3 * n + 1], res[3 * n + 2]
                core = {a.decode(): b.decode() for a, b in core_raw.items()}
                out[eid] = {"core": core, "indices": sorted(int(x) for x in idx_raw),
                            "history": [{a.decode(): b.decode() for a, b in f.items()}
                                        for _, f in hist]}
            pipe = self.reader.pipeline(transaction=False)
            wanted = [(eid, i) for eid in chunk for i in out[eid]["indices"]]
            for eid, i in wanted:
                pipe.hgetall(attempt_key(eid, i))
            for (eid, i), raw in zip(wanted, await pipe.execute(), strict=True):
                out[eid].setdefault("attempts", {})[i] = {
                    a.decode(): b.decode() for a, b in raw.items()}
        return out

    async def _read_results(self, eids: list[str]) -> dict[str, Any]:
        """Each completed execution's result through the public RunHandle."""
        assert self.client is not None
        sem = asyncio.Semaphore(32)
        out: dict[str, Any] = {}

        async def one(eid: str) -> None:
            async with sem:
                assert self.client is not None
                try:
                    out[eid] = await self.client.run(eid, self._task(False)).result(
                        timeout=10)
                except Exception as exc:  # reported as unreadable
                    out[eid] = exc

        await asyncio.gather(*(one(e) for e in eids))
        return out

    async def _analyse(self) -> dict[str, Any]:
        eids = list(self.acked)
        records = await self._read_records(eids)
        completed = [e for e in eids if records[e]["core"].get("public_state") == "completed"]
        results = await self._read_results(completed)
        ledger = self._ledger()

        problems: dict[str, list[dict[str, Any]]] = defaultdict(list)
        per_eid: dict[str, dict[str, Any]] = {}
        attempt_rows: list[tuple[str, int, dict[str, str]]] = []
        for eid in eids:
            rec, ack = records[eid], self.acked[eid]
            core = rec["core"]
            attempts: dict[int, dict[str, str]] = rec.get("attempts", {})
            attempt_rows.extend((eid, i, a) for i, a in attempts.items())
            lines = ledger.get(eid, [])
            starts = [x for x in lines if x["event"] == "start"]
            ends = [x for x in lines if x["event"] == "end"]
            info: dict[str, Any] = {"i": ack.i, "round": ack.round, "eid": eid,
                                    "starts": len(starts), "ends": len(ends),
                                    "attempts": len(attempts)}
            per_eid[eid] = info
            # One attempt runs its body once (these tasks never suspend), and
            # only under an attempt Redis recorded.
            twice = [a for a, n in Counter(x["attempt"] for x in starts).items() if n > 1]
            unknown = sorted({x["attempt"] for x in starts} - set(attempts))
            if twice or unknown:
                problems["ledger"].append({**info, "why": "body started twice in one attempt"
                                           if twice else "body ran under an unknown attempt",
                                           "attempts_twice": twice, "unknown": unknown})
            if not core:
                problems["lost"].append({**info, "why": "no exec_core"})
                continue
            phase = core.get("lifecycle_phase")
            state = core.get("public_state")
            if phase != TERMINAL:
                problems["stuck"].append({**info, "why": "not terminal", "state": {
                    k: core.get(k, "") for k in (
                        "lifecycle_phase", "ownership_state", "eligibility_state",
                        "blocking_reason", "blocking_detail", "attempt_state",
                        "public_state", "current_worker_id", "lease_expires_at",
                        "lease_reclaim_count")}})
                continue
            successes = sorted(i for i, a in attempts.items()
                               if a.get("attempt_state") == "ended_success")
            released_completed = sum(1 for h in rec["history"]
                                     if h.get("event") == "released"
                                     and h.get("reason") == "completed")
            info["successes"] = len(successes)
            if len(successes) > 1 or released_completed > 1:
                problems["double"].append({**info, "why": "several successful outcomes",
                                           "success_attempts": successes,
                                           "released_completed": released_completed})
            if state != "completed":
                problems["lost"].append({**info, "why": f"ended {state}",
                                         "failure_reason": core.get("failure_reason", "")})
                continue
            result = results.get(eid)
            if isinstance(result, BaseException) or not isinstance(result, dict):
                problems["lost"].append({**info, "why": f"result unreadable: {result!r}"})
                continue
            if result.get("eid") != eid or result.get("i") != ack.i:
                problems["lost"].append({**info, "why": "result of another execution",
                                         "result": result})
                continue
            winner = successes[0] if len(successes) == 1 else None
            if winner is not None and result.get("attempt") != winner:
                problems["double"].append({**info, "why": "result written by attempt "
                                           f"{result.get('attempt')}, success recorded "
                                           f"for attempt {winner}"})
            if winner is not None and not any(x["attempt"] == winner for x in ends):
                problems["phantom"].append({**info, "why": f"attempt {winner} completed "
                                            "but its body never wrote its end line"})

        if self.cfg.guarded:
            for eid in eids:
                per_eid[eid].update(self._guarded_effects(
                    eid, records[eid], ledger.get(eid, []), problems))
        return self._summarise(records, ledger, problems, per_eid, attempt_rows)

    def _guarded_effects(self, eid: str, rec: dict[str, Any], lines: list[dict[str, Any]],
                         problems: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        """Count the guarded effects of one execution and explain every repeat.

        The effect of the successful attempt is the one that counts; each
        other one was written by an attempt that did not succeed, and is
        explained by the fault that cost that attempt its lease *after* the
        effect was written (written before ``kill -9`` / ``SIGSTOP``, or
        before the end of a Redis outage). An effect written by a stopped
        worker after it woke, for an attempt it held before the stop, is
        what the fence must prevent: a violation, as is any repeat no fault
        explains."""
        attempts: dict[int, dict[str, str]] = rec.get("attempts", {})
        effects = sorted((x for x in lines if x["event"] == "effect"), key=lambda x: x["t"])
        fenced = [x for x in lines if x["event"] == "fenced"]
        out: dict[str, Any] = {"effects": len(effects), "fenced": len(fenced),
                               "fenced_after_pause": sum(
                                   1 for x in fenced if self._woke_from_stop(x)),
                               "repeat_causes": [],
                               "stale_body_starts": sum(
                                   1 for x in lines if x["event"] == "start"
                                   and self._stale_start(x, attempts))}
        if len(effects) <= 1:
            return out
        successes = [i for i, a in attempts.items() if a.get("attempt_state") == "ended_success"]
        kept = next((x for x in effects if successes and x["attempt"] == successes[0]),
                    effects[0])
        causes = []
        for x in effects:
            if x is kept:
                continue
            cause = self._explain_effect(x, kept, attempts)
            causes.append(cause)
            self.guarded_repeats.append({"eid": eid, "round": self.acked[eid].round,
                                         "why": cause, "effect": x, "kept": kept})
            if cause.startswith("violation"):
                problems["guarded"].append({
                    "eid": eid, "round": self.acked[eid].round, "why": cause,
                    "effect": x, "kept": kept,
                    "attempt_state": attempts.get(x["attempt"], {}).get("attempt_state")})
        out["repeat_causes"] = causes
        return out

    def _woke_from_stop(self, line: dict[str, Any]) -> bool:
        return any(f.kind == "stop" and f.victim == line["worker"] and line["t"] >= f.t_end
                   and (not nxt or line["t"] < nxt) for f, nxt in self._stop_windows())

    def _stale_start(self, line: dict[str, Any], attempts: dict[int, dict[str, str]]) -> bool:
        """A body that began only after its stopped worker woke, for an attempt
        claimed before the stop (the claim's answer was read after the pause):
        its lease was already known lost when the body was called."""
        started = float(attempts.get(line["attempt"], {}).get("started_at") or 0) / 1000
        return bool(started) and any(
            f.kind == "stop" and f.victim == line["worker"] and started <= f.t
            and line["t"] >= f.t_end for f in self.faults)

    def _stop_windows(self) -> list[tuple[Fault, float]]:
        """Each stop fault with the time of the next fault on the same worker (0: none)."""
        out = []
        for k, f in enumerate(self.faults):
            nxt = next((g.t for g in self.faults[k + 1:] if g.victim == f.victim), 0.0)
            out.append((f, nxt))
        return out

    def _explain_effect(self, x: dict[str, Any], kept: dict[str, Any],
                        attempts: dict[int, dict[str, str]]) -> str:
        a = attempts.get(x["attempt"], {})
        if x["attempt"] == kept["attempt"]:
            return "violation: two effects from one attempt"
        if a.get("attempt_state") == "ended_success":
            return "violation: two successful attempts wrote it"
        started = float(a.get("started_at") or 0) / 1000
        reach = self.cfg.lease_ms / 1000 + self.cfg.task_ms[1] / 1000 + 5
        for f in self.faults:
            if (f.kind in ("kill", "stop") and f.victim != x["worker"]) or x["t"] < f.t - reach:
                continue
            if f.kind == "kill" and x["t"] < (f.t_end or f.t):  # t_end: after the victim died
                return "kill: effect before the crash, attempt never completed"
            if f.kind == "stop" and started <= f.t and x["t"] < f.t_end:
                # A stopped process writes nothing; t in [t, t_end): as the signal landed.
                return "stop: effect before the pause, attempt never completed"
            if f.kind == "stop" and started <= f.t and x["t"] >= f.t_end:
                return "violation: stop: the woken worker wrote it for an attempt it held " \
                       "before the pause"
            if f.kind.startswith("redis") and f.t - reach <= x["t"] < f.t_end:
                return f"{f.kind}: effect before the outage ended, attempt never completed"
        return "violation: unexplained repeat"

    def _victims(self, fault: Fault,
                 attempt_rows: list[tuple[str, int, dict[str, str]]]) -> list[tuple[str, int]]:
        """Attempts running when the fault hit: on the victim worker for kill /
        stop, anywhere for a Redis fault."""
        t_ms = fault.t * 1000
        out = []
        for eid, i, a in attempt_rows:
            if fault.kind in ("kill", "stop") and a.get("worker_id") != fault.victim:
                continue
            started = float(a.get("started_at") or 0)
            ended = float(a.get("ended_at") or 0)
            if started and started <= t_ms and (not ended or ended > t_ms):
                out.append((eid, i))
        return out

    def _summarise(self, records: dict[str, dict[str, Any]],
                   ledger: dict[str, list[dict[str, Any]]],
                   problems: dict[str, list[dict[str, Any]]],
                   per_eid: dict[str, dict[str, Any]],
                   attempt_rows: list[tuple[str, int, dict[str, str]]]) -> dict[str, Any]:
        completed_at = sorted(float(r["core"]["completed_at"]) / 1000
                              for r in records.values()
                              if r["core"].get("public_state") == "completed"
                              and r["core"].get("completed_at"))
        attempts_by_eid: dict[str, dict[int, dict[str, str]]] = {
            e: r.get("attempts", {}) for e, r in records.items()}

        fault_rows: list[dict[str, Any]] = []
        for f in self.faults:
            since = _since(completed_at, f.t)
            nxt = None if since is None else f.t + since
            victims = self._victims(f, attempt_rows)
            reclaim: list[float] = []
            finish: list[float] = []
            resumed: list[float] = []  # per victim: reclaimed, or else finished
            same_attempt = 0
            unfinished = 0
            for eid, i in victims:
                core = records[eid]["core"]
                later = attempts_by_eid[eid].get(i + 1)
                done = (float(core["completed_at"]) / 1000 - f.t
                        if core.get("completed_at") else None)
                if later and later.get("started_at"):
                    reclaim.append(float(later["started_at"]) / 1000 - f.t)
                    resumed.append(reclaim[-1])
                elif done is not None:
                    same_attempt += 1
                    resumed.append(done)
                if done is not None:
                    finish.append(done)
                else:
                    unfinished += 1
            if f.kind in ("kill", "stop"):  # no victim in flight: nothing to recover
                recovery = max(resumed) if resumed else None
            else:
                recovery = (nxt - f.t) if nxt is not None else None
            fault_rows.append({
                **asdict(f), "t": round(f.t - self.t0, 3),
                "t_end": round(f.t_end - self.t0, 3) if f.t_end else None,
                "victim_attempts": len(victims),
                "reclaimed": len(reclaim), "finished_by_same_attempt": same_attempt,
                "victims_unfinished": unfinished,
                "recovery_s": _r(recovery),
                "victims_reclaimed_max_s": _r(max(reclaim) if reclaim else None),
                "victims_finished_max_s": _r(max(finish) if finish else None),
                "next_completion_s": _r(nxt - f.t if nxt is not None else None),
                "next_completion_after_end_s": _r(_since(completed_at, f.t_end)),
            })

        kinds = list(dict.fromkeys(f["kind"] for f in fault_rows))
        by_kind: dict[str, dict[str, Any]] = {}
        round_kind = {f.round: f.kind for f in self.faults}
        for kind in [*kinds, "all"]:
            rows = [f for f in fault_rows if kind in ("all", f["kind"])]
            members = {e for e, info in per_eid.items()
                       if kind == "all" or round_kind.get(info["round"]) == kind}
            re_exec = [e for e in members if per_eid[e]["starts"] > 1]
            rec_s = [f["recovery_s"] for f in rows if f["recovery_s"] is not None]
            nxt_s = [f["next_completion_s"] for f in rows if f["next_completion_s"] is not None]
            by_kind[kind] = {
                "faults": len(rows),
                "submitted": len(members),
                "lost": sum(1 for p in problems["lost"] if p["eid"] in members),
                "double": len({p["eid"] for p in problems["double"] if p["eid"] in members}),
                "stuck": sum(1 for p in problems["stuck"] if p["eid"] in members),
                "phantom": sum(1 for p in problems["phantom"] if p["eid"] in members),
                "ledger_anomalies": sum(1 for p in problems["ledger"] if p["eid"] in members),
                "re_executed": len(re_exec),
                "extra_body_runs": sum(per_eid[e]["starts"] - 1 for e in re_exec),
                "bodies_ended_twice": sum(1 for e in members if per_eid[e]["ends"] > 1),
                "victim_attempts": sum(f["victim_attempts"] for f in rows),
                "faults_without_victims": sum(1 for f in rows if f["kind"] in ("kill", "stop")
                                              and not f["victim_attempts"]),
                "recovery_median_s": _r(statistics.median(rec_s) if rec_s else None),
                "recovery_max_s": _r(max(rec_s) if rec_s else None),
                "next_completion_median_s": _r(statistics.median(nxt_s) if nxt_s else None),
                "next_completion_max_s": _r(max(nxt_s) if nxt_s else None),
            }
            if self.cfg.guarded:
                by_kind[kind]["guarded"] = _guarded_row(
                    [per_eid[e] for e in members],
                    sum(1 for p in problems["guarded"] if p["eid"] in members))
        assert self.workers is not None
        log_errors = _count_log_errors(self.workers.log_dir)
        attempt_types = Counter(a.get("attempt_type", "?") for _, _, a in attempt_rows)
        return {
            "config": {k: v for k, v in asdict(self.cfg).items()
                       if k not in ("json", "json_out", "worker_exe", "workdir", "keep")},
            "duration_s": round(time.time() - self.t0, 1),
            "load_average": {"start": self.load_start, "end": _load()},
            "submitted": len(self.acked),
            "not_acknowledged": len(self.unacked),
            "submit_retries": sum(a.tries - 1 for a in self.acked.values()),
            "submit_errors": dict(self.submit_errors),
            "submit_duplicates": sum(1 for a in self.acked.values() if a.duplicate),
            "client_reopens": self.client_reopens,
            "totals": by_kind["all"],
            "by_fault": {k: v for k, v in by_kind.items() if k != "all"},
            "faults": fault_rows,
            "attempt_types": dict(attempt_types),
            "ledger_lines": sum(len(v) for v in ledger.values()),
            "worker_unexpected_exits": [
                {k: v for k, v in x.items() if k != "log_tail"}
                for x in self.workers.unexpected_exits],
            "worker_log_errors": log_errors,
            "problems": {k: v[:20] for k, v in problems.items() if v},
            "guarded_repeats": self.guarded_repeats[:50],
        }




def _guarded_row(infos: list[dict[str, Any]], violations: int) -> dict[str, Any]:
    """Guarded effects of some executions: how many, how often repeated, why."""
    causes: Counter[str] = Counter()
    for info in infos:
        causes.update(c.split(":", 1)[0] for c in info.get("repeat_causes", ()))
    return {
        "effects": sum(i.get("effects", 0) for i in infos),
        "executions_with_effect": sum(1 for i in infos if i.get("effects", 0)),
        "completed_without_effect": sum(1 for i in infos if not i.get("effects", 0)
                                        and i.get("successes")),
        "fenced": sum(i.get("fenced", 0) for i in infos),
        "fenced_after_pause": sum(i.get("fenced_after_pause", 0) for i in infos),
        "repeated": sum(1 for i in infos if i.get("effects", 0) > 1),
        "repeated_after_crash": causes["kill"],
        "repeated_effect_before_pause": causes["stop"],
        "repeated_after_outage": sum(n for c, n in causes.items() if c.startswith("redis")),
        "violations": violations,
        "stale_body_starts": sum(i.get("stale_body_starts", 0) for i in infos),
    }


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _since(times: list[float], t: float) -> float | None:
    """Seconds from ``t`` to the first of the sorted ``times`` at or after it."""
    k = bisect.bisect_left(times, t)
    return times[k] - t if t and k < len(times) else None


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 2)

