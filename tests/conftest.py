"""Shared fixtures: small notebooks written on the fly, the repository's paths."""

import json
import os
import subprocess
import sys
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

    `headings`: a markdown cell before each code cell, as people write them (code cell k, from 0, is cell 2k + 2
    as JupyterLab counts).
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


def git(cwd, *args) -> str:
    """Run git in `cwd` as a fixed author; its output, stripped."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "ds", "GIT_AUTHOR_EMAIL": "ds@example.com",
           "GIT_COMMITTER_NAME": "ds", "GIT_COMMITTER_EMAIL": "ds@example.com"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


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


# A test that starts a kernel, a server, a database or a browser is marked slow, so that
# `-m "not slow"` stays fast. Python's audit events tell, whatever library does it: a kernel's or a
# server's ports are bound in this process (jupyter_client picks a kernel's ports so), and the
# programs are started by name. Worker processes of the in-process engine and git are neither.
# A fixture shared by several tests starts its server for the first of them only, so the fixtures
# seen starting one are remembered, and every test using them must be marked too.
pytest_plugins = ["pytester"]

_PROGRAMS = ("ipykernel", "secantus", "chromium", "playwright", "jupyter", "uvicorn", "node", "java")
_seen: list[str] = []
_starters: dict[str, str] = {}  # fixture name -> what its setup started


def _audit(event, args):
    if event == "socket.bind":
        _seen.append(f"binds a socket ({args[1]!r})")
    elif event == "subprocess.Popen":
        argv = " ".join(map(str, args[1] if isinstance(args[1], (list, tuple)) else [args[1]]))
        if any(program in argv for program in _PROGRAMS):
            _seen.append(f"starts {argv[:120]!r}")


sys.addaudithook(_audit)


class _Starts:
    """Hooks registered as a plugin, not as conftest hooks: pytest calls a conftest's hooks only for
    nodes below its folder, and a session-scoped fixture is set up for the session."""

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_setup(self, item):
        _seen.clear()
        yield

    @pytest.hookimpl(hookwrapper=True)
    def pytest_fixture_setup(self, fixturedef, request):
        before = len(_seen)
        yield
        if len(_seen) > before:
            _starters.setdefault(fixturedef.argname, _seen[before])


def pytest_configure(config):
    config.pluginmanager.register(_Starts(), "mlsm-slow-check")


@pytest.fixture(autouse=True)
def _slow_if_it_starts_servers(request):
    """Fail a test not marked slow that starts a kernel, a server, a database or a browser."""
    yield
    if request.node.get_closest_marker("slow"):
        return
    used = [f"uses fixture {name!r}, which {_starters[name]}" for name in request.fixturenames if name in _starters]
    if _seen or used:
        pytest.fail(f"not marked slow, yet it {(_seen or used)[0]}: mark it @pytest.mark.slow", pytrace=False)
