"""The systems ``bench/throughput.py`` compares, one module each.

Modules are imported on demand so that a missing library only fails its own
peer (``pip install -e '.[bench]'`` installs them all).
"""

from __future__ import annotations

import importlib

from .base import DONE_KEY, Peer

__all__ = ["DONE_KEY", "PEERS", "Peer", "load"]

#: name -> (module, class)
PEERS: dict[str, tuple[str, str]] = {
    "ffw": ("ffw_peer", "FfwPeer"),
    "saq": ("saq_peer", "SaqPeer"),
    "arq": ("arq_peer", "ArqPeer"),
    "taskiq": ("taskiq_peer", "TaskiqPeer"),
}


def load(name: str) -> Peer:
    module, cls = PEERS[name]
    peer: Peer = getattr(importlib.import_module(f".{module}", __name__), cls)()
    return peer
