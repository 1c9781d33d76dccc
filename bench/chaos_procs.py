"""The fault run's processes: a restartable redis-server and the worker pool
(``bench/chaos.py``)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from bench.chaos_model import Config, log  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL this child when the run dies (Linux PR_SET_PDEATHSIG),
    so a killed run leaves no worker or redis-server behind."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


def _killpg(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _reap(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait for ``proc``; SIGKILL its group after ``timeout``. True if it ended in time."""
    try:
        proc.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        _killpg(proc, signal.SIGCONT)
        _killpg(proc, signal.SIGKILL)
        proc.wait(timeout=10)
        return False


class RedisServer:
    """A private redis-server that can be killed and restarted on the same
    port and AOF directory."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server") or shutil.which("valkey-server")
        if binary is None:
            raise SystemExit("redis-server not found")
        self.binary = binary
        self.dir = workdir / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = open(workdir / "redis.log", "ab")  # closed in close()

    def start(self, timeout: float = 30.0) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
             "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--dir", str(self.dir), "--logfile", ""],
            stdout=self.log, stderr=self.log, start_new_session=True,
            preexec_fn=_die_with_parent)
        client = redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start (see {self.log.name})")
                time.sleep(0.02)
        finally:
            client.close()

    def kill9(self) -> None:
        assert self.proc is not None
        _killpg(self.proc, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def shutdown(self) -> None:
        assert self.proc is not None
        # On a bare socket: redis-py would retry the command (and reconnect)
        # when the server closes the connection, as SHUTDOWN does.
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
                sock.sendall(b"SHUTDOWN\r\n")
                reply = sock.recv(512)  # b"" once the server exits; an error otherwise
            if reply:
                log(f"SHUTDOWN refused ({reply!r}); killing")
                _killpg(self.proc, signal.SIGKILL)
        except OSError:
            pass
        if not _reap(self.proc, 15):
            log("redis-server ignored SHUTDOWN for 15 s; killed")

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.shutdown()
        self.log.close()


@dataclass
class WorkerProc:
    slot: int
    worker_id: str
    proc: subprocess.Popen[bytes]
    started: float
    stopped: bool = False


class Workers:
    """The worker processes, one per slot; each in its own process group."""

    def __init__(self, cfg: Config, url: str, workdir: Path) -> None:
        self.cfg = cfg
        self.url = url
        self.ledger_dir = workdir / "ledger"
        self.log_dir = workdir / "logs"
        self.ledger_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        exe = Path(sys.executable).parent / "flowfabric-worker"
        found = cfg.worker_exe or (str(exe) if exe.exists() else shutil.which("flowfabric-worker"))
        if found is None:
            raise SystemExit("flowfabric-worker not found (pip install -e .)")
        self.exe = found
        self.slots: dict[int, WorkerProc] = {}
        self.generation = 0
        self.unexpected_exits: list[dict[str, Any]] = []
        self.quick_exits: Counter[int] = Counter()  # per slot, in a row
        self.shutdown_hangs: list[str] = []

    def start(self, slot: int) -> WorkerProc:
        self.generation += 1
        wid = f"chaos-s{slot}-g{self.generation}"
        path = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(ROOT)) if p)
        env = dict(os.environ, FFW_CHAOS_LEDGER_DIR=str(self.ledger_dir),
                   FLOWFABRIC_WORKER_ID=wid, PYTHONPATH=path)
        if self.cfg.no_fence:
            env["FFW_CHAOS_NO_FENCE"] = "1"
        with open(self.log_dir / f"{wid}.log", "ab") as out:
            proc = subprocess.Popen(
                [self.exe, "run", "bench.chaos_tasks", "--url", self.url,
                 "--concurrency", str(self.cfg.concurrency),
                 "--lease-ttl", str(self.cfg.lease_ms / 1000),
                 "--scanner-interval-scale", str(self.cfg.scanner_scale),
                 "--grace-period", "5", "--log-level", "INFO"],
                cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                start_new_session=True, preexec_fn=_die_with_parent)
        w = WorkerProc(slot, wid, proc, time.time())
        self.slots[slot] = w
        return w

    def live(self) -> list[WorkerProc]:
        return [w for w in self.slots.values() if w.proc.poll() is None and not w.stopped]

    def check_exits(self) -> None:
        """Replace a worker that exited on its own (a finding, not a fault)."""
        for slot, w in list(self.slots.items()):
            code = w.proc.poll()
            if code is None:
                continue
            tail = (self.log_dir / f"{w.worker_id}.log").read_text(errors="replace")[-2000:]
            self.unexpected_exits.append({"worker": w.worker_id, "code": code,
                                          "t": time.time(), "log_tail": tail})
            log(f"worker {w.worker_id} exited by itself (code {code}); replacing it")
            self.quick_exits[slot] = self.quick_exits[slot] + 1 if (
                time.time() - w.started < 5) else 0
            if self.quick_exits[slot] >= 3:
                raise RuntimeError(f"workers exit at start, three in a row; last log:\n{tail}")
            self.start(slot)

    def kill9(self, w: WorkerProc) -> None:
        _killpg(w.proc, signal.SIGKILL)
        w.proc.wait(timeout=10)

    def close(self) -> None:
        """SIGCONT + SIGTERM everyone (graceful drain), SIGKILL after 20 s."""
        ws = list(self.slots.values())
        for w in ws:
            _killpg(w.proc, signal.SIGCONT)
            w.stopped = False
            if w.proc.poll() is None:
                _killpg(w.proc, signal.SIGTERM)
        for w in ws:
            if not _reap(w.proc, 20):
                self.shutdown_hangs.append(w.worker_id)


# --- the run -----------------------------------------------------------------


