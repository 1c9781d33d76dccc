"""TaskContext: what a running task sees of its execution (filled in by the
worker helper)."""

from __future__ import annotations


class TaskContext:
    """Handed to a task function as its first parameter when annotated."""
