"""Shared fixtures: small notebooks written on the fly, the repository's paths."""

from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
TEMPLATES = ROOT / "templates"

GOOD_CELLS = [
    ("version", 'name = "tiny"\nversion = "1.0"\nstatus = "active"'),
    ("fields", 'fields = {"x": {"type": "int", "min": 0}, "label": str}'),
    ("setup", "FACTOR = 2"),
    (None, "print('authoring only')\nraise SystemExit('production must never run this')"),
    ("score", "def score(data, results):\n    return {'score': data['x'] * FACTOR, 'n': len(data['label'])}"),
    ("examples", 'examples = [{"data": {"x": 2, "label": "ab"}, "expected": {"score": 4, "n": 2}}]'),
]


def write_notebook(path: Path, cells, language: str = "python") -> Path:
    """Write a notebook of (tag or None, source) code cells."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": language}
    for tag, source in cells:
        cell = nbformat.v4.new_code_cell(source)
        if tag:
            cell.metadata["tags"] = [tag]
        nb.cells.append(cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def replace_cell(cells, tag, source):
    """GOOD_CELLS with the cell tagged `tag` replaced (source None: removed)."""
    out = [(t, s) for t, s in cells if t != tag]
    if source is not None:
        index = next(i for i, (t, _) in enumerate(cells) if t == tag)
        out.insert(index, (tag, source))
    return out


@pytest.fixture
def make_notebook(tmp_path):
    def make(name="tiny.ipynb", cells=GOOD_CELLS, **kwargs):
        return write_notebook(tmp_path / name, cells, **kwargs)
    return make
