"""Retry: which exceptions retry, the computed delays and the fail-call policy JSON."""

from __future__ import annotations

import json

import pytest

from flowfabric_worker.errors import InvalidInput, Permanent, Transient
from flowfabric_worker.tasks.retry import Retry


def test_should_retry_classes() -> None:
    r = Retry(max_attempts=3, retry_on=(ValueError,), give_up_on=(KeyError,))
    assert r.should_retry(ValueError())
    assert not r.should_retry(TypeError())
    assert not r.should_retry(Permanent("no"))
    assert r.should_retry(Transient("yes"))
    assert not Retry(give_up_on=(ValueError,)).should_retry(ValueError())


def test_delays() -> None:
    exp = Retry(max_attempts=5, initial=1, maximum=3, multiplier=2)
    assert [exp.delay_for(i) for i in range(4)] == [1, 2, 3, 3]
    lin = Retry(backoff="linear", initial=0.5, maximum=10)
    assert [lin.delay_for(i) for i in range(3)] == [0.5, 1.0, 1.5]
    assert Retry(backoff="fixed", initial=2).delay_for(7) == 2


def test_jitter_stays_in_band() -> None:
    r = Retry(initial=10, jitter=0.2)
    delays = {r.delay_for(0) for _ in range(50)}
    assert all(8 <= d <= 12 for d in delays) and len(delays) > 1


def test_fail_policy_json() -> None:
    r = Retry(max_attempts=3, initial=0.25)
    assert json.loads(r.fail_policy_json(0)) == {
        "max_retries": 2, "backoff": {"type": "fixed", "delay_ms": 250}}
    assert json.loads(r.fail_policy_json(1))["backoff"]["delay_ms"] == 500
    assert r.fail_policy_json(2) == ""
    assert Retry().fail_policy_json(0) == ""


def test_bad_options() -> None:
    with pytest.raises(InvalidInput):
        Retry(max_attempts=0)
    with pytest.raises(InvalidInput):
        Retry(jitter=2)
