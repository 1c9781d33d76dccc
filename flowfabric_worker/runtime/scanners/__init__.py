"""Embedded maintenance: the engine scanners a standalone runtime runs
(spec 05 §7). Entry point: :func:`run_scanners`."""

from .catalogue import default_scanners
from .core import Candidate, Scanner, ScanRunner, run_scanners

__all__ = ["Candidate", "ScanRunner", "Scanner", "default_scanners", "run_scanners"]
