"""Which maintenance scanner reads which index key, worked out from the
scanners' own key builders, so the time skipper can tell from the keys it
reads what each scanner would find.

A scanner's pass walks every partition (256 by default) of every lane; on
the embedded server each pass is a few commands with hundreds of key names
to build, send and parse, and running all of them at every clock step was
most of what a simulated week cost. Reading the index keys that exist (a
handful in a test) and their heads says exactly which scanners have work:
the skipper runs those, on those keys.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from flowfabric_worker.engine.runner import Scanner
from flowfabric_worker.protocol.keys import PartitionKeys

__all__ = ["KeyOwner", "ScannedKeys"]

# Stand-ins for the partition tag and the lane in a scanner's key template:
# characters no key builder writes, so they survive ``re.escape`` unchanged
# and can be swapped for capturing groups.
_TAG = "\x01"
_LANE = "\x02"

#: Classified keys kept per environment; a test's keyspace is far smaller,
#: this only bounds a pathological one.
_CACHE_LIMIT = 100_000


@dataclass(frozen=True, slots=True)
class KeyOwner:
    """The scanners reading one index key, and the partition tag and lane
    (lane-scoped indexes only) the key belongs to."""

    scanners: tuple[Scanner, ...]
    tag: str
    lane: str | None

    @property
    def sorted(self) -> bool:
        """Whether the key is a sorted set read by score (due members), not
        a set read whole."""
        return all(s.due_only and not s.set_read for s in self.scanners)


class ScannedKeys:
    """Classifies key names by the scanners that read them."""

    def __init__(self, scanners: Sequence[Scanner]) -> None:
        by_pattern: dict[str, list[Scanner]] = {}
        prefixes: set[str] = set()
        for scanner in scanners:
            tag = PartitionKeys(_TAG)
            for template in scanner.indexes(tag, _LANE if scanner.per_lane else None):
                pattern = re.escape(template).replace(
                    _TAG, r"(?P<tag>\{" + scanner.family + r":\d+\})").replace(
                    _LANE, "(?P<lane>.+)")
                by_pattern.setdefault(pattern, []).append(scanner)
                prefixes.add(template.split(_TAG, 1)[0].split(_LANE, 1)[0])
        self._patterns = [(re.compile(p), tuple(s)) for p, s in by_pattern.items()]
        #: SCAN patterns covering every index key of the scanners.
        self.scan_patterns = sorted({_glob_escape(p) + "*" for p in prefixes})
        self._cache: dict[str, KeyOwner | None] = {}

    def owner(self, key: str) -> KeyOwner | None:
        """The scanners reading ``key`` (None: no scanner reads it)."""
        try:
            return self._cache[key]
        except KeyError:
            pass
        found: KeyOwner | None = None
        for pattern, scanners in self._patterns:
            m = pattern.fullmatch(key)
            if m is not None:
                groups = m.groupdict()
                found = KeyOwner(scanners=scanners, tag=groups["tag"], lane=groups.get("lane"))
                break
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = found
        return found


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a SCAN ``MATCH`` pattern."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)
