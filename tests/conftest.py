"""Shared fixtures: small notebooks written on the fly, the repository's paths."""

import json
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
    (None, "print('authoring only')", "authoring only\n"),
    ("score", "def score(data, results):\n    return {'score': data['x'] * FACTOR, 'n': len(data['label'])}"),
    ("examples", 'examples = [{"data": {"x": 2, "label": "ab"}, "expected": {"score": 4, "n": 2}}]'),
]


def write_notebook(path: Path, cells, language: str = "python", headings: bool = False) -> Path:
    """Write a notebook of (tag or None, source[, stored stdout]) code cells.

    `headings`: a markdown cell before each code cell, as people write them (code cell k is cell 2k + 1).
    """
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": language}
    for tag, source, *stdout in cells:
        if headings:
            nb.cells.append(nbformat.v4.new_markdown_cell(f"## step {len(nb.cells) // 2 + 1}"))
        cell = nbformat.v4.new_code_cell(source)
        if tag:
            cell.metadata["tags"] = [tag]
        if stdout:
            cell.execution_count = len(nb.cells) + 1
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=stdout[0])]
        nb.cells.append(cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def write_records(path: Path, count: int) -> Path:
    """JSON Lines of `count` records for GOOD_CELLS' model: id i, x = i, label "ab"."""
    path.write_text("".join(json.dumps({"id": i, "data": {"x": i, "label": "ab"}}) + "\n" for i in range(count)))
    return path


def replace_cell(cells, tag, source):
    """GOOD_CELLS with the cell tagged `tag` replaced (source None: removed)."""
    out = [cell for cell in cells if cell[0] != tag]
    if source is not None:
        index = next(i for i, cell in enumerate(cells) if cell[0] == tag)
        out.insert(index, (tag, source))
    return out


@pytest.fixture
def make_notebook(tmp_path):
    def make(name="tiny.ipynb", cells=GOOD_CELLS, **kwargs):
        return write_notebook(tmp_path / name, cells, **kwargs)
    return make


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory):
    """A real MongoDB wire-protocol server: MLSM_TEST_MONGO_URI, else SecantusDB started here."""
    import os

    from servers import SecantusServer

    if os.environ.get("MLSM_TEST_MONGO_URI"):
        yield os.environ["MLSM_TEST_MONGO_URI"]
        return
    server = SecantusServer(tmp_path_factory.mktemp("secantus") / "data").start()
    try:
        yield server.uri
    finally:
        server.stop()


@pytest.fixture
def mongo_db(mongo_uri, request):
    """A fresh database on the test server, dropped afterwards."""
    import re

    import pymongo

    client = pymongo.MongoClient(mongo_uri)
    name = "t_" + re.sub(r"\W", "_", request.node.name)[:50]
    client.drop_database(name)
    yield client[name]
    client.drop_database(name)
    client.close()
