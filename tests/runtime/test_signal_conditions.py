"""The resume conditions wait_for_signal builds (pure; spec 03 §3.1)."""

from __future__ import annotations

import json

import pytest

from flowfabric_worker.context.waits import ON_TIMEOUT, _condition, _names
from flowfabric_worker.errors import InvalidInput


def doc(names: list[str], mode: str | int, behaviour: str = "fail") -> tuple[dict[str, object],
                                                                              int, bool]:
    text, needed, single = _condition(names, mode, behaviour)
    return json.loads(text), needed, single


def test_any_of_names_resumes_on_the_first() -> None:
    d, needed, single = doc(["approve", "reject"], "any")
    assert d["required_signal_names"] == ["approve", "reject"]
    assert d["signal_match_mode"] == "any" and d["minimum_signal_count"] == 1
    assert (needed, single) == (1, True)


def test_no_names_is_the_wildcard() -> None:
    d, _, _ = doc([], "any")
    assert d["required_signal_names"] == []


def test_all_needs_one_of_each() -> None:
    d, needed, single = doc(["a", "b"], "all", ON_TIMEOUT["auto_resume"])
    assert d["signal_match_mode"] == "all" and (needed, single) == (2, False)
    assert d["timeout_behavior"] == "auto_resume_with_timeout_signal"


def test_count_repeats_the_matchers() -> None:
    # each signal satisfies one matcher: n copies let n signals count
    d, needed, single = doc(["vote"], 3)
    assert d["required_signal_names"] == ["vote"] * 3
    assert d["minimum_signal_count"] == 3 and (needed, single) == (3, False)
    d, _, _ = doc([], 2)
    assert d["required_signal_names"] == ["", ""]


@pytest.mark.parametrize("mode", [0, -1, True, "some"])
def test_bad_modes_are_refused(mode: object) -> None:
    with pytest.raises(InvalidInput):
        _condition(["a"], mode, "fail")  # type: ignore[arg-type]


def test_all_without_names_and_reserved_names_are_refused() -> None:
    with pytest.raises(InvalidInput):
        _condition([], "all", "fail")
    with pytest.raises(InvalidInput):
        _names("__operator_only__")
    with pytest.raises(InvalidInput):
        _names(["ok", ""])
    assert _names("one") == ["one"] and _names(None) == []


def test_buffered_signals_are_evaluated_like_the_library() -> None:
    from flowfabric_worker.context.waits import _satisfied_by

    any_text, _, _ = _condition(["paid", "failed"], "any", "fail")
    assert _satisfied_by(any_text, []) is None
    assert _satisfied_by(any_text, [("s1", "other"), ("s2", "failed")]) == ["s2"]
    all_text, _, _ = _condition(["a", "b"], "all", "fail")
    assert _satisfied_by(all_text, [("s1", "b"), ("s2", "b")]) is None
    assert _satisfied_by(all_text, [("s1", "b"), ("s2", "a")]) == ["s2", "s1"]  # matcher order
    count_text, _, _ = _condition(["vote"], 2, "fail")
    assert _satisfied_by(count_text, [("s1", "vote")]) is None
    assert _satisfied_by(count_text, [("s1", "vote"), ("s2", "vote")]) == ["s1", "s2"]
    wild_text, _, _ = _condition([], "any", "fail")
    assert _satisfied_by(wild_text, [("s9", "anything")]) == ["s9"]
