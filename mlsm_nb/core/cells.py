"""Where in its notebook a model's code raised: the cell (index and tag) and the line in that cell.

A score that raises becomes an error entry whose ``_error_at`` says where, e.g.
``cell 4 [score], line 13``: the innermost frame of the traceback that is a
production cell's code, so that a helper in `setup` called from `score` is named
too. The code of a cell reaches the interpreter three ways:

- in-process (`load_notebook`): each cell is compiled under the file name `cell_file_name` makes;
- an extracted bundle's module: the cells follow one another under `cell_marker` lines
  (`register_module` when the module is loaded);
- an IPython kernel (papermill engine): each cell under a name of IPython's, its source kept in
  `linecache`; the runner recognises the production cells by their `source_digest`
  (`register_kernel_cells`).
"""

from __future__ import annotations

import hashlib
import linecache
import re
from collections.abc import Mapping

CELL_MARKER = re.compile(r"^# --- cell (\d+) \[(\w+)\] ---$", re.MULTILINE)
_CELL_FILE = re.compile(r":cell (\d+) \[(\w+)\]\Z")

# file name -> ((line of the cell's first line, cell index, tag), ...), in line order
_FILES: dict[str, tuple[tuple[int, int, str], ...]] = {}


def cell_marker(index: int, tag: str) -> str:
    """The line above a cell's source in an extracted module (`CELL_MARKER` reads it)."""
    return f"# --- cell {index} [{tag}] ---"


def cell_file_name(path, index: int, tag: str) -> str:
    """The file name a cell's code is compiled under in-process (`path:cell N [tag]`, as messages name it)."""
    return f"{path}:cell {index} [{tag}]"


def source_digest(source: str) -> str:
    """A short digest of a cell's source, blank lines at either end ignored (IPython adds one)."""
    return hashlib.sha256(source.strip().encode()).hexdigest()[:16]


def register_module(filename: str, text: str) -> None:
    """Register an extracted module's cells (`filename` is the name it was compiled under)."""
    starts = []
    for match in CELL_MARKER.finditer(text):
        marker_line = text.count("\n", 0, match.start()) + 1
        starts.append((marker_line + 1, int(match.group(1)), match.group(2)))
    _FILES[filename] = tuple(starts)


def register_kernel_cells(cells: Mapping[str, tuple[int, str]]) -> None:
    """In a kernel: register the cells IPython ran whose source digest is in `cells` (digest -> index, tag)."""
    for filename, entry in list(linecache.cache.items()):
        if filename in _FILES or len(entry) != 4 or entry[1] is not None:  # IPython's cells have no mtime
            continue
        known = cells.get(source_digest("".join(entry[2])))
        if known is not None:
            _FILES[filename] = ((1, *known),)


def _cell_at(filename: str, line: int) -> str | None:
    starts = _FILES.get(filename)
    if starts is None:
        match = _CELL_FILE.search(filename)
        starts = ((1, int(match.group(1)), match.group(2)),) if match else ()
    found = None
    for first, index, tag in starts:
        if line >= first:
            found = f"cell {index} [{tag}], line {line - first + 1}"
    return found


def raised_at(exc: BaseException) -> str | None:
    """`cell N [tag], line L` of the innermost production cell in `exc`'s traceback, or None."""
    found = None
    tb = exc.__traceback__
    while tb is not None:
        found = _cell_at(tb.tb_frame.f_code.co_filename, tb.tb_lineno) or found
        tb = tb.tb_next
    return found
