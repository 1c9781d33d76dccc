"""A flow's DAG as SVG, laid out on the server: members in columns by their
depth (the longest path from a root), edges as curves labelled with the
downstream's join policy. No layout library and no client-side drawing: the
page stays a plain server-rendered document, and live updates only change
each node's ``class`` (its state colour).

Every text goes through :func:`html.escape`: node names and task names are
user data.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Any

__all__ = ["Layout", "layout", "svg"]

_W, _H = 190, 44  # node box
_GX, _GY = 80, 18  # gaps between columns / rows
_PAD = 16


@dataclass(frozen=True)
class Layout:
    positions: dict[str, tuple[int, int]]  # member id -> top-left corner
    width: int
    height: int


def _depths(ids: list[str], edges: list[dict[str, Any]]) -> dict[str, int]:
    ups: dict[str, list[str]] = {i: [] for i in ids}
    for e in edges:
        if e["downstream"] in ups and e["upstream"] in ups:
            ups[e["downstream"]].append(e["upstream"])
    depth: dict[str, int] = {}
    # Iterative longest path; a cycle (never written by this SDK) stops at
    # len(ids) rounds instead of recursing forever.
    for _ in range(len(ids) + 1):
        changed = False
        for i in ids:
            d = 1 + max((depth.get(u, 0) for u in ups[i]), default=-1)
            if depth.get(i) != d:
                depth[i], changed = d, True
        if not changed:
            break
    return depth


def layout(members: list[dict[str, Any]], edges: list[dict[str, Any]]) -> Layout:
    """Columns by depth, rows in the members' given order."""
    ids = [m["id"] for m in members]
    depth = _depths(ids, edges)
    columns: dict[int, list[str]] = {}
    for i in ids:
        columns.setdefault(depth.get(i, 0), []).append(i)
    pos: dict[str, tuple[int, int]] = {}
    rows = max((len(c) for c in columns.values()), default=0)
    for col, column in columns.items():
        top = (rows - len(column)) * (_H + _GY) // 2  # a short column sits mid-height
        for row, i in enumerate(column):
            pos[i] = (_PAD + col * (_W + _GX), _PAD + top + row * (_H + _GY))
    return Layout(pos, _PAD * 2 + max(len(columns), 1) * (_W + _GX) - _GX,
                  _PAD * 2 + max(rows, 1) * (_H + _GY) - _GY)


def _label(m: dict[str, Any]) -> str:
    text = str(m.get("name") or m.get("task") or m["id"])
    return text if len(text) <= 24 else text[:23] + "…"


def _join(m: dict[str, Any]) -> str:
    join = m.get("join") or {}
    variant = join.get("policy_variant", "")
    if variant == "quorum":
        return f"quorum {join.get('k', '')}"
    return str(variant).replace("_", " ")


def svg(members: list[dict[str, Any]], edges: list[dict[str, Any]], link: str) -> str:
    """The DAG as an ``<svg>`` element; ``link`` is the URL prefix of a
    member's page (the member id, URL-quoted, is appended)."""
    from urllib.parse import quote

    lay = layout(members, edges)
    by_id = {m["id"]: m for m in members}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="dag" id="dag" '
           f'width="{lay.width}" height="{lay.height}" viewBox="0 0 {lay.width} {lay.height}" '
           f'role="img" aria-label="flow graph">']
    for e in edges:
        a, b = lay.positions.get(e["upstream"]), lay.positions.get(e["downstream"])
        if a is None or b is None:
            continue
        x1, y1 = a[0] + _W, a[1] + _H // 2
        x2, y2 = b[0], b[1] + _H // 2
        mid = (x1 + x2) // 2
        state = escape(str(e.get("state", "")))
        out.append(f'<path class="edge edge-{state}" d="M{x1},{y1} C{mid},{y1} {mid},{y2} '
                   f'{x2},{y2}"/>')
        join = _join(by_id[e["downstream"]])
        if join:
            out.append(f'<text class="edge-label" x="{x2 - 6}" y="{y2 - 6}" '
                       f'text-anchor="end">{escape(join)}</text>')
    for m in members:
        x, y = lay.positions[m["id"]]
        state = escape(str(m.get("state", "")))
        href = escape(link + quote(m["id"], safe=""))
        out.append(
            f'<a href="{href}" data-member="{escape(m["id"])}">'
            f'<title>{escape(str(m.get("task", "")))} {escape(m["id"])}</title>'
            f'<rect class="node state-{state}" x="{x}" y="{y}" width="{_W}" height="{_H}" '
            f'rx="6"/>'
            f'<text class="node-name" x="{x + 10}" y="{y + 18}">{escape(_label(m))}</text>'
            f'<text class="node-state" x="{x + 10}" y="{y + 35}">{state}</text></a>')
    out.append("</svg>")
    return "".join(out)
