"""Bundling of the Lua function libraries shipped under ``flowfabric_worker/lua``.

Each library is a folder of ``.lua`` files, one per area. The files of
``lua/shared`` (helpers both libraries need: a function cannot call into
another library) come first, then the library's files whose name starts with
``00_``; those go at the top level of the chunk. Every other file is wrapped
in ``do ... end`` so its locals stay private and the chunk never hits Lua's
200-locals limit. The result is one library
text, exactly what ``flowfabric-worker library print`` shows and what the
backend sends with ``FUNCTION LOAD REPLACE``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

__all__ = ["BUNDLE_MARK", "FFW", "FLOWFABRIC", "LibrarySpec", "library_text"]

#: How every bundled file is introduced: what tells a library this SDK
#: loaded (some build of it) from one loaded by someone else.
BUNDLE_MARK = "\n-- >>> shared/"


@dataclass(frozen=True)
class LibrarySpec:
    """A function library: its registered name, version function and version."""

    name: str
    version_function: str
    version: str


FLOWFABRIC = LibrarySpec(name="flowfabric", version_function="ff_version", version="34")
FFW = LibrarySpec(name="ffw", version_function="ffw_version", version="9")


def _lua_files(folder: str) -> list[tuple[str, str]]:
    """``(name, text)`` of the ``.lua`` files of ``lua/<folder>``, by name,
    each text ending with a newline."""
    where = resources.files("flowfabric_worker").joinpath("lua", folder)
    entries = sorted((e for e in where.iterdir() if e.name.endswith(".lua")),
                     key=lambda e: e.name)
    out = []
    for entry in entries:
        body = entry.read_text(encoding="utf-8")
        out.append((entry.name, body if body.endswith("\n") else body + "\n"))
    return out


@cache
def library_text(spec: LibrarySpec = FLOWFABRIC) -> str:
    """The complete library source for ``spec``, ready for ``FUNCTION LOAD``."""
    parts = [f"#!lua name={spec.name}\n"]
    for name, body in _lua_files("shared"):
        parts.append(f"{BUNDLE_MARK[1:]}{name}\n{body}")
    for name, body in _lua_files(spec.name):
        if name.startswith("00_"):
            parts.append(f"-- >>> {name}\n{body}")
        else:
            parts.append(f"-- >>> {name}\ndo\n{body}end\n")
    return "".join(parts)
