"""Mutations: a ``Recipe`` turns a valid base call into random ARGV/KEYS
(garbage, truncated or extended vectors, missing or extra keys, 5 000-element
inputs), plus the helpers that send one and describe it (see
property_support.py)."""


from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import hypothesis.strategies as st
import redis.exceptions
from property_calls import BASE_CALLS
from property_support import Call, Census, _s, raw
from property_world import World

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
