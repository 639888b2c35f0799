"""What changed in a notebook's production cells and artifacts, part by part, in words.

`NotebookSpec.sha256` hashes the production cells (each under its index and tag) and the artifacts as one
value: enough to see that something changed, not what. `parts` keeps a hash of each — every production
cell's (index, tag, sha256 of its source) and every artifact's sha256 — and a run's manifest records them
for each notebook; `changes` compares two such records and names what differs: a cell as people number it
(`cell 13 [score] changed`), or an artifact (`artifact lead_lr.coef.json changed`).
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterable
from itertools import zip_longest

from ..exceptions import cell_ref
from ..files import file_sha256
from .contract import NotebookSpec


def cell_parts(cells: Iterable[tuple[int, str, str]]) -> list[dict]:
    """`parts`' record of production cells given as (index, tag, source)."""
    return [{"index": index, "tag": tag, "sha256": hashlib.sha256(source.encode()).hexdigest()}
            for index, tag, source in cells]


def parts(spec: NotebookSpec) -> dict:
    """The hash of each part `spec.sha256()` covers: ``{"cells": [{"index", "tag", "sha256"}, ...],
    "artifact_sha256": {name: sha256, or None for a missing file}}`` (JSON-ready: a manifest entry's keys)."""
    return {"cells": cell_parts((c.index, c.tag, c.source) for c in spec.cells),
            "artifact_sha256": artifact_digests(spec)}


def artifact_digests(spec: NotebookSpec) -> dict[str, str | None]:
    """Each artifact `spec` lists, by name: the sha256 of the file beside the notebook, None when missing."""
    folder = spec.path.parent
    return {name: file_sha256(folder / name) if (folder / name).is_file() else None for name in spec.artifacts}


def _moves(old: list[dict], new: list[dict]) -> list[str]:
    """Cells with the same tag and source at other positions, one phrase per run of cells moved alike."""
    said, run = [], []
    for before, after in zip(old, new, strict=True):
        shift = after["index"] - before["index"]
        if run and (not shift or shift != run[0][1]):
            said.append(_moved(run))
            run = []
        if shift:
            run.append((after, shift))
    if run:
        said.append(_moved(run))
    return said


def _moved(run: list[tuple[dict, int]]) -> str:
    first, shift = run[0]
    cells = _ref(first) + (f" to {_ref(run[-1][0])}" if len(run) > 1 else "")
    return f"{cells} moved {abs(shift)} {'down' if shift > 0 else 'up'}"


def _ref(cell: dict) -> str:
    return cell_ref(cell["index"], cell["tag"])


def changed_cells(old: list[dict], new: list[dict]) -> list[str]:
    """What differs between two `parts` records of production cells: `cell N [tag] changed`, `... added`,
    `... removed` (numbered as the notebook had it then), `... moved` (the first says why that matters); in
    notebook order."""
    matcher = difflib.SequenceMatcher(a=[(c["tag"], c["sha256"]) for c in old],
                                      b=[(c["tag"], c["sha256"]) for c in new], autojunk=False)
    said = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            moves = _moves(old[i1:i2], new[j1:j2])
            if moves and not any(" moved " in phrase for phrase in said):
                moves[0] += " (a cell added or removed above it; the hash covers where each cell is)"
            said += moves
            continue
        for before, after in zip_longest(old[i1:i2], new[j1:j2]):
            if before is None:
                said.append(f"{_ref(after)} added")
            elif after is None:
                said.append(f"{_ref(before)} removed")
            elif (before["index"], before["tag"]) == (after["index"], after["tag"]):
                said.append(f"{_ref(after)} changed")
            else:
                said.append(f"{_ref(after)} changed (was {_ref(before)})")
    return said


def changed_artifacts(old: dict, new: dict) -> dict[str, str]:
    """What differs between two `parts` records of artifacts (name -> sha256): name -> `artifact NAME changed`
    (`added`, `no longer listed`, `missing`), by name."""
    said = {}
    for name in sorted(set(old) | set(new)):
        if name not in new:
            said[name] = f"artifact {name} no longer listed"
        elif name not in old:
            said[name] = f"artifact {name} added"
        elif old[name] != new[name]:
            said[name] = f"artifact {name} changed" if new[name] else f"artifact {name} missing"
    return said
