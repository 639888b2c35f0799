"""docs/data-scientists.md stays true: its console examples are run and compared line by line.

A block preceded by `<!-- run: MISTAKE -->` is run in a fresh folder where `mlsm-nb new model my_model`
wrote the template, after the edit MISTAKE below (`fresh`: none). Each `$ ` line is a command; the lines
after it are what it prints (stdout then stderr; validate's timings are not compared).
"""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

DOC = ROOT / "docs" / "data-scientists.md"
BLOCK = re.compile(r"<!-- run: (\w+) -->\n```console\n(.*?)```", re.S)
TIMING = re.compile(r"(?m)^(  (?:ok  |warn|FAIL|skip) \S+) +\d+\.\ds")


def edit(path: Path, change) -> None:
    nb = json.loads(path.read_text())
    cells = {tags[0]: cell for cell in nb["cells"] for tags in [cell["metadata"].get("tags") or [None]]}
    change(nb["cells"], cells)
    path.write_text(json.dumps(nb, indent=1))


def _lines(cell, text):
    cell["source"] = text


def retag(old, new):
    def change(_, cells):
        cells[old]["metadata"]["tags"] = [new]
    return change


def import_in_fields(_, cells):
    cells["fields"]["source"] = "import os\n" + "".join(cells["fields"]["source"])


def unsafe_version(_, cells):
    cells["version"]["source"] = 'name = "my_model"\nversion = "1.0 beta"\nstatus = "draft"\nartifacts = []'


def artifact_not_saved(all_cells, cells):
    cells["version"]["source"] = ('name = "my_model"\nversion = "0.1.0"\nstatus = "draft"\n'
                                  'artifacts = ["my_model.words.json"]')
    train = next(c for c in all_cells if c["cell_type"] == "code" and not c["metadata"].get("tags"))
    train["source"] = "".join(train["source"]) + (
        '\n\nimport json\nwith open("my_model.words.json", "w") as f:\n'
        '    json.dump(["chief", "vp", "director", "head"], f)')
    cells["setup"]["source"] = ('import json\nimport math\n\nfrom mlsm_nb import top_reasons\n\n'
                                'with open("my_model.words.json") as f:\n    SENIOR_WORDS = tuple(json.load(f))')


def setup_reads_training(_, cells):
    cells["setup"]["source"] = "".join(cells["setup"]["source"]) + (
        '\nTITLES = sorted({lead["job_title"] for lead in sample})')


def fields_typos(_, cells):
    cells["fields"]["source"] = ('fields = {\n    "email_clicks": {"type": "integer", "min": 0},\n'
                                 '    "site_visits": {"type": "int", "min": 0, "nulable": True},\n'
                                 '    "job_title": "string",\n}')


def stale_output(all_cells, _):
    call = next(c for c in all_cells if "".join(c["source"]).startswith("score(sample[0]"))
    call["execution_count"] = 1
    call["outputs"] = [{"output_type": "execute_result", "execution_count": 1, "metadata": {},
                        "data": {"text/plain": "{'score': 0.5}"}}]


def slow_record(_, cells):
    cells["setup"]["source"] = "".join(cells["setup"]["source"]).replace("import math\n", "import math\nimport time\n")
    cells["score"]["source"] = "".join(cells["score"]["source"]).replace(
        "def score(data, results):\n",
        "def score(data, results):\n    if data[\"site_visits\"] > 1000:  # a bot? look it up (slowly)\n"
        "        time.sleep(600)\n")


def reasons_not_a_list(_, cells):
    source = "".join(cells["examples"]["source"])
    cells["examples"]["source"] = source.replace('"_reasons": [{"field": "job_title", "contribution": 0.2}]',
                                                 '"_reasons": {"job_title": 0.2}')
    assert cells["examples"]["source"] != source


MISTAKES = {
    "fresh": None,
    "tag_examples": retag("examples", "exmaples"),
    "tag_setup": retag("setup", "setpu"),
    "import_in_fields": import_in_fields,
    "unsafe_version": unsafe_version,
    "artifact_not_saved": artifact_not_saved,
    "setup_reads_training": setup_reads_training,
    "fields_typos": fields_typos,
    "stale_output": stale_output,
    "slow_record": slow_record,
    "reasons_not_a_list": reasons_not_a_list,
}


def doc_blocks():
    return [(name, body) for name, body in BLOCK.findall(DOC.read_text())]


def test_the_doc_shows_every_mistake():
    assert {name for name, _ in doc_blocks()} == set(MISTAKES)


@pytest.mark.slow
@pytest.mark.parametrize("name, body", doc_blocks(), ids=[name for name, _ in doc_blocks()])
def test_doc_console_example_is_what_the_tools_print(tmp_path, name, body):
    made = subprocess.run([sys.executable, "-m", "mlsm_nb.cli", "new", "model", "my_model"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    if MISTAKES[name]:
        edit(tmp_path / "notebooks" / "my_model.ipynb", MISTAKES[name])
    commands = re.split(r"(?m)^\$ ", body)[1:]
    for chunk in commands:
        command, _, expected = chunk.partition("\n")
        args = shlex.split(command)
        assert args[0] == "mlsm-nb"
        done = subprocess.run([sys.executable, "-m", "mlsm_nb.cli", *args[1:]], cwd=tmp_path,
                              capture_output=True, text=True)
        shown = done.stdout + done.stderr
        assert TIMING.sub(r"\1", shown) == TIMING.sub(r"\1", expected), f"$ {command}\n{shown}"


def test_doc_python_snippets_run(monkeypatch):
    from mlsm_nb.notebook.contract import lint_notebook

    monkeypatch.chdir(ROOT)
    snippets = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert snippets
    for snippet in snippets:
        namespace = {}
        exec(compile(snippet, str(DOC), "exec"), namespace)  # noqa: S102 - the doc's own examples
        if "examples" in namespace:  # the summary `examples` format is the one the shipped summary uses
            shipped = lint_notebook(ROOT / "notebooks" / "champion.ipynb").examples
            assert all(example in shipped for example in namespace["examples"])


def test_doc_python_sessions_print_what_they_show(monkeypatch):
    """The doc's `pycon` blocks (`>>>` sessions) are doctests: what they show is what Python prints."""
    import doctest

    monkeypatch.chdir(ROOT)
    sessions = re.findall(r"```pycon\n(.*?)```", DOC.read_text(), re.S)
    assert sessions
    for number, session in enumerate(sessions):
        test = doctest.DocTestParser().get_doctest(session, {}, f"pycon block {number}", str(DOC), 0)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        runner.run(test)
        assert runner.summarize(verbose=False).failed == 0, session
