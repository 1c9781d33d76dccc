"""ctx.extensions: hooks registered lazily are built once, on first use."""

from __future__ import annotations

import pytest

from flowfabric_worker.context.extensions import Extensions


def test_a_lazy_hook_is_built_once_on_first_use() -> None:
    built: list[int] = []
    ext = Extensions()
    ext.lazy("journal", lambda: built.append(1) or "J")
    assert "journal" in ext and built == []
    assert ext.peek("journal") is None and built == []
    assert ext.get("journal") == "J" and ext["journal"] == "J"
    assert built == [1]
    assert ext.peek("journal") == "J"


def test_hooks_can_build_on_each_other_and_plain_entries_still_work() -> None:
    ext = Extensions()
    ext.lazy("journal", lambda: ["J"])
    ext.lazy("waits", lambda: ("W", ext["journal"]))
    ext["frames"] = "F"
    assert ext["waits"] == ("W", ["J"])
    assert ext["journal"] is ext["waits"][1]
    assert ext.get("frames") == "F"
    assert ext.get("absent", 7) == 7
    with pytest.raises(KeyError):
        ext["absent"]
