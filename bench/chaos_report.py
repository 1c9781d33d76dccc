"""The fault run's report: the table and the pass/fail verdict (``bench/chaos.py``)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

_EID = re.compile(r"\{fp:\d+\}:[0-9a-f-]{36}")
_PORT = re.compile(r"127\.0\.0\.1:\d+")


def _count_log_errors(log_dir: Path) -> dict[str, int]:
    """ERROR / CRITICAL lines and tracebacks in the worker logs, by message
    (execution ids and ports blanked so that alike lines count together)."""
    counts: Counter[str] = Counter()
    for path in log_dir.glob("*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if "level=ERROR" in line or "level=CRITICAL" in line:
                msg = _PORT.sub("<port>", _EID.sub("<eid>", line.split("level=", 1)[1]))
                counts[msg[:160]] += 1
            elif line.startswith("Traceback"):
                counts["Traceback (most recent call last)"] += 1
    return dict(counts.most_common(15))


# --- output ------------------------------------------------------------------

_COLUMNS = [("faults", "faults"), ("submitted", "submitted"), ("lost", "lost"),
            ("double", "double"), ("stuck", "stuck"), ("re_executed", "re-exec"),
            ("bodies_ended_twice", "ended-2x"), ("victim_attempts", "victims")]


def render(report: dict[str, Any]) -> str:
    out = []
    c = report["config"]
    out.append(f"chaos: {c['rounds']} rounds of {','.join(c['faults'])}, {c['workers']} workers "
               f"x {c['concurrency']}, {c['executions']} executions, lease {c['lease_ms']} ms, "
               f"seed {c['seed']}, {report['duration_s']} s; load average "
               f"{report['load_average']['start']} -> {report['load_average']['end']}")
    head = f"{'fault':<15}" + "".join(f"{label:>10}" for _, label in _COLUMNS)
    head += f"{'recovery med/max s':>21}{'next done med/max s':>22}"
    out.append(head)
    rows = [*report["by_fault"].items(), ("all", report["totals"])]
    for kind, row in rows:
        line = f"{kind:<15}" + "".join(f"{row[k]:>10}" for k, _ in _COLUMNS)
        line += f"{_pair(row['recovery_median_s'], row['recovery_max_s']):>21}"
        line += f"{_pair(row['next_completion_median_s'], row['next_completion_max_s']):>22}"
        out.append(line)
    t = report["totals"]
    out.append("kill/stop faults that hit a worker with nothing in flight: "
               f"{t['faults_without_victims']}")
    out.append(f"re-executed bodies: {t['extra_body_runs']} extra runs; bodies that ended more "
               f"than once: {t['bodies_ended_twice']}; attempts by type: "
               f"{report['attempt_types']}")
    out.append(f"submits: {report['submitted']} acknowledged, {report['not_acknowledged']} not; "
               f"{report['submit_retries']} retries {report['submit_errors'] or ''}, "
               f"{report['submit_duplicates']} found already created; "
               f"client reopened {report['client_reopens']}x")
    if report["config"]["guarded"]:
        out.append("guarded effects (ensure_lease() then an effect line), per fault kind of "
                   "the round:")
        for kind, row in rows:
            g = row["guarded"]
            out.append(
                f"  {kind:<15} effects {g['effects']} in {g['executions_with_effect']} "
                f"executions; repeated {g['repeated']} (after crash "
                f"{g['repeated_after_crash']}, effect before the pause "
                f"{g['repeated_effect_before_pause']}, after outage "
                f"{g['repeated_after_outage']}); violations {g['violations']}; fenced "
                f"{g['fenced']} (by a woken worker {g['fenced_after_pause']}); completed "
                f"without effect {g['completed_without_effect']}; bodies started after "
                f"waking on a claim made before the pause {g['stale_body_starts']}")
    if report["worker_unexpected_exits"]:
        out.append(f"workers that exited by themselves: {report['worker_unexpected_exits']}")
    if report["worker_shutdown_hangs"]:
        out.append(f"workers that ignored SIGTERM for 20 s: {report['worker_shutdown_hangs']}")
    if report["worker_log_errors"]:
        out.append("worker log errors:")
        out.extend(f"  {n:>5}  {msg}" for msg, n in report["worker_log_errors"].items())
    for kind, items in report["problems"].items():
        out.append(f"{kind}: {len(items)} (first ones)")
        out.extend(f"  {json.dumps(x)}" for x in items[:5])
    out.append("per fault (t from start; recovery: kill/stop = until the last attempt the "
               "victim held was reclaimed (or finished by itself), redis = to the next "
               "completion):")
    for f in report["faults"]:
        out.append(f"  r{f['round'] + 1:<3} {f['kind']:<15} t={f['t']:>7}s "
                   f"victim={f['victim']:<14} victims={f['victim_attempts']:<3} "
                   f"reclaimed={f['reclaimed']:<3} recovery={_s(f['recovery_s'])} "
                   f"next-done={_s(f['next_completion_s'])} "
                   f"all-victims-done={_s(f['victims_finished_max_s'])} "
                   f"left-after-round={f['outstanding_after']}"
                   + (f" down={f['t_end'] - f['t']:.2f}s next-done-after-restart="
                      f"{_s(f['next_completion_after_end_s'])}"
                      if f["kind"].startswith("redis") and f["t_end"] else ""))
    return "\n".join(out)


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}s"


def _pair(a: float | None, b: float | None) -> str:
    return "-" if a is None else f"{a:.2f} / {b:.2f}"


def failed(report: dict[str, Any]) -> bool:
    t = report["totals"]
    g = t.get("guarded", {})
    return bool(t["lost"] or t["double"] or t["stuck"] or t["phantom"] or t["ledger_anomalies"]
                or g.get("violations") or g.get("completed_without_effect")
                or report["not_acknowledged"])

