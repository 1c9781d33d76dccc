"""Builders for resume conditions and resume policies (spec 03 §3).

The JSON produced here is byte-compatible with 0.15's serializer for the same
user intent, because the library stores it and a 0.15 reader may inspect it.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from flowfabric_worker.errors import InvalidInput

__all__ = [
    "TIMEOUT_BEHAVIORS",
    "all_of",
    "any_signal",
    "by_name",
    "composite",
    "count",
    "operator_only",
    "resume_policy_json",
    "signal_set",
    "single",
    "timeout_only",
    "wildcard",
]

TIMEOUT_BEHAVIORS = frozenset(
    {"fail", "cancel", "expire", "auto_resume_with_timeout_signal", "auto_resume", "escalate"}
)
CountKind = Literal["DistinctWaitpoints", "DistinctSignals", "DistinctSources"]


def _check_behavior(tb: str) -> None:
    if tb not in TIMEOUT_BEHAVIORS:
        raise InvalidInput(f"unknown timeout behaviour {tb!r}")


def _check_user_name(name: str) -> None:
    # `__` names are the library's sentinels; a user signal named like that
    # would silently satisfy an operator-only condition.
    if name.startswith("__"):
        raise InvalidInput(f"signal names beginning with '__' are reserved: {name!r}")


def _dump(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"))


def signal_set(
    names: list[str] | tuple[str, ...] = (),
    *,
    mode: Literal["any", "all"] = "any",
    minimum: int = 1,
    timeout_behavior: str = "fail",
    _sentinel_ok: bool = False,
) -> str:
    """A signal-set condition: `names` are matchers (`""` = wildcard); `any`
    resumes after `minimum` matchers are satisfied, `all` after every one."""
    _check_behavior(timeout_behavior)
    if not _sentinel_ok:
        for n in names:
            _check_user_name(n)
    if minimum < 1:
        raise InvalidInput("minimum_signal_count must be >= 1")
    return _dump(
        {
            "condition_type": "signal_set",
            "required_signal_names": list(names),
            "signal_match_mode": mode,
            "minimum_signal_count": minimum,
            "timeout_behavior": timeout_behavior,
            "allow_operator_override": True,
        }
    )


def any_signal(*, timeout_behavior: str = "fail") -> str:
    """Resume on the first signal, whatever its name."""
    return signal_set((), timeout_behavior=timeout_behavior)


def operator_only(*, timeout_behavior: str = "fail") -> str:
    """Only an operator resume (or the timeout) ends the suspension."""
    return signal_set(("__operator_only__",), mode="all", timeout_behavior=timeout_behavior,
                      _sentinel_ok=True)


def timeout_only(*, timeout_behavior: str = "auto_resume_with_timeout_signal") -> str:
    """Only the timeout ends the suspension (the caller must set a timeout)."""
    return signal_set(("__timeout_only__",), mode="all", timeout_behavior=timeout_behavior,
                      _sentinel_ok=True)


# -- composite trees -------------------------------------------------------
# Nodes are plain dicts without `path`; `composite` assigns paths.

def by_name(name: str) -> dict[str, Any]:
    _check_user_name(name)
    return {"kind": "ByName", "name": name}


def wildcard() -> dict[str, Any]:
    return {"kind": "Wildcard"}


def single(waitpoint_key: str, matcher: dict[str, Any] | None = None) -> dict[str, Any]:
    if not waitpoint_key:
        raise InvalidInput("waitpoint_key must be non-empty")
    return {"kind": "Single", "waitpoint_key": waitpoint_key, "matcher": matcher}


def all_of(*members: dict[str, Any]) -> dict[str, Any]:
    if not members:
        raise InvalidInput("allof_empty_members")
    return {"kind": "AllOf", "members": list(members)}


def count(
    n: int, kind: CountKind, waitpoints: list[str], matcher: dict[str, Any] | None = None
) -> dict[str, Any]:
    if n <= 0:
        raise InvalidInput("count_n_zero")
    if not waitpoints:
        raise InvalidInput("count_waitpoints_empty")
    if kind == "DistinctWaitpoints" and n > len(waitpoints):
        raise InvalidInput("count_exceeds_waitpoint_set")
    return {"kind": "Count", "n": n, "count_kind": kind, "matcher": matcher,
            "waitpoints": list(waitpoints)}


def _with_paths(node: dict[str, Any], path: str, depth: int) -> dict[str, Any]:
    kind = node.get("kind")
    if kind in ("AllOf", "Count") and depth > 1:
        # 0.15 never propagates satisfaction below a direct child of the root.
        raise InvalidInput(f"composite node {kind} at path {path!r} is too deep to be satisfiable")
    out: dict[str, Any] = {"kind": kind, "path": path}
    if kind == "AllOf":
        out["members"] = [
            _with_paths(m, f"members[{i}]" if not path else f"{path}.members[{i}]", depth + 1)
            for i, m in enumerate(node["members"])
        ]
    else:
        out.update({k: v for k, v in node.items() if k != "kind"})
    return out


def composite(tree: dict[str, Any], *, timeout_behavior: str = "fail") -> str:
    """A composite condition document around `tree` (root must be AllOf or Count)."""
    _check_behavior(timeout_behavior)
    if tree.get("kind") not in ("AllOf", "Count"):
        raise InvalidInput("composite root must be AllOf or Count")
    return _dump(
        {
            "v": 1,
            "composite": True,
            "timeout_behavior": timeout_behavior,
            "allow_operator_override": True,
            "condition_type": "composite",
            "required_signal_names": [],
            "signal_match_mode": "composite",
            "minimum_signal_count": 1,
            "tree": _with_paths(tree, "", 0),
        }
    )


def composite_keys(tree_json: str) -> list[str]:
    """Every waitpoint key a composite condition references, depth-first."""
    doc = json.loads(tree_json)
    keys: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        if node.get("kind") == "Single" and node["waitpoint_key"] not in keys:
            keys.append(node["waitpoint_key"])
        for k in node.get("waitpoints", []):
            if k not in keys:
                keys.append(k)
        for m in node.get("members", []):
            walk(m)

    walk(doc.get("tree", {}))
    return keys


def resume_policy_json(resume_delay_ms: int | None = None) -> str:
    """0.15's default resume policy document (stored only by the library)."""
    doc: dict[str, Any] = {
        "resume_target": "runnable",
        "close_waitpoint_on_resume": True,
        "consume_matched_signals": True,
        "retain_signal_buffer_until_closed": False,
    }
    if resume_delay_ms is not None:
        doc["resume_delay_ms"] = resume_delay_ms
    return _dump(doc)
