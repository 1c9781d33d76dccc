"""The fault run's configuration, plan records and key schema (``bench/chaos.py``)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

FAULT_KINDS = ("kill", "stop", "redis", "redis-kill", "redis-shutdown")
TERMINAL = "terminal"


# --- configuration -----------------------------------------------------------


@dataclass
class Config:
    rounds: int = 10
    workers: int = 3
    executions: int = 500
    faults: list[str] = field(default_factory=lambda: ["kill", "stop", "redis"])
    lease_ms: int = 2000
    seed: int = 1
    concurrency: int = 8
    task_ms: tuple[int, int] = (200, 1500)
    sync_share: float = 0.25
    scanner_scale: float = 0.2
    stop_ms: int = 0              # 0: 2.5 x lease
    redis_down_ms: int = 2000
    submit_spread: float = 1.0    # seconds over which a round's executions are submitted
    round_timeout: float = 60.0   # a round waits this long for its executions to finish
    settle: float = 180.0         # after the last round, wait this long for everything
    submit_deadline: float = 60.0  # one submit is retried (same idempotency key) this long
    guarded: bool = False         # bodies guard a side effect with ctx.ensure_lease()
    no_fence: bool = False        # negative control: guarded bodies skip ensure_lease()
    json: bool = False
    worker_exe: str | None = None
    json_out: str | None = None
    workdir: str | None = None
    keep: bool = False

    @property
    def stop_s(self) -> float:
        return (self.stop_ms or int(self.lease_ms * 2.5)) / 1000




def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


# --- keys (spec 01 §3.1) -----------------------------------------------------


def _tag(eid: str) -> str:
    return eid[: eid.index("}") + 1]


def core_key(eid: str) -> str:
    return f"ff:exec:{_tag(eid)}:{eid}:core"


def attempts_key(eid: str) -> str:
    return f"ff:exec:{_tag(eid)}:{eid}:attempts"


def history_key(eid: str) -> str:
    return f"ff:exec:{_tag(eid)}:{eid}:lease:history"


def attempt_key(eid: str, index: int) -> str:
    return f"ff:attempt:{_tag(eid)}:{eid}:{index}"


# --- processes ---------------------------------------------------------------


# --- plan and fault records ---------------------------------------------------


@dataclass
class Planned:
    i: int
    round: int
    sync: bool
    ms: int
    key: str


@dataclass
class Acked:
    i: int
    round: int
    eid: str
    t_ack: float
    tries: int
    duplicate: bool


@dataclass
class Fault:
    round: int
    kind: str
    t: float
    victim: str = ""
    t_end: float = 0.0            # SIGCONT sent / Redis answering again
    in_flight_at_fault: int = 0   # executions not terminal when the fault hit
    outstanding_after: int = 0    # still not terminal when the round ended
    round_s: float = 0.0

