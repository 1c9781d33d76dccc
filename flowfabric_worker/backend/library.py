"""Bundling of the Lua function libraries shipped under ``flowfabric_worker/lua``.

Each library is a folder of ``.lua`` files, one per area. Files whose name
starts with ``00_`` hold shared helpers and go first, at the top level of the
chunk; every other file is wrapped in ``do ... end`` so its locals stay private
and the chunk never hits Lua's 200-locals limit. The result is one library
text, exactly what ``flowfabric-worker library print`` shows and what the
backend sends with ``FUNCTION LOAD REPLACE``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

__all__ = ["FFW", "FLOWFABRIC", "LibrarySpec", "library_text"]


@dataclass(frozen=True)
class LibrarySpec:
    """A function library: its registered name, version function and version."""

    name: str
    version_function: str
    version: str


FLOWFABRIC = LibrarySpec(name="flowfabric", version_function="ff_version", version="34")
FFW = LibrarySpec(name="ffw", version_function="ffw_version", version="4")


@cache
def library_text(spec: LibrarySpec = FLOWFABRIC) -> str:
    """The complete library source for ``spec``, ready for ``FUNCTION LOAD``."""
    folder = resources.files("flowfabric_worker").joinpath("lua", spec.name)
    files = sorted(
        (entry for entry in folder.iterdir() if entry.name.endswith(".lua")),
        key=lambda entry: entry.name,
    )
    parts = [f"#!lua name={spec.name}\n"]
    for entry in files:
        body = entry.read_text(encoding="utf-8")
        if not body.endswith("\n"):
            body += "\n"
        if entry.name.startswith("00_"):
            parts.append(f"-- >>> {entry.name}\n{body}")
        else:
            parts.append(f"-- >>> {entry.name}\ndo\n{body}end\n")
    return "".join(parts)
