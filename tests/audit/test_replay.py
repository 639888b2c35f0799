import json
import shutil

import nbformat
import pytest
from click.testing import CliRunner

from conftest import GOOD_CELLS, NOTEBOOKS, replace_cell, write_notebook, write_records
from mlsm_nb.audit.replay import ReplayRefused, replay_run
from mlsm_nb.cli import main
from mlsm_nb.leads import save_leads
from mlsm_nb.run.orchestrate import run_notebooks


def cli(*args):
    return CliRunner().invoke(main, [*map(str, args)])


def copy_notebooks(folder):
    target = folder / "notebooks"
    shutil.copytree(NOTEBOOKS, target, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    return target


def leads_file(folder, count=50):
    path = folder / "leads.jsonl"
    save_leads(path, count, seed=8)
    return path


def edit_score_cell(path, old, new):
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "score" in c.metadata.get("tags", []))
    assert old in cell.source
    cell.source = cell.source.replace(old, new)
    nbformat.write(nb, path)


@pytest.fixture
def inprocess_run(tmp_path):
    notebooks = copy_notebooks(tmp_path)
    run_notebooks([notebooks], leads_file(tmp_path), out=tmp_path / "runs", run_id="ip", batch_size=20,
                  engine="inprocess")
    return tmp_path / "runs" / "ip", notebooks


@pytest.mark.slow
def test_replay_of_the_example_papermill_run_is_bit_identical_and_a_changed_artifact_is_refused(tmp_path):
    notebooks = copy_notebooks(tmp_path)
    run_notebooks([notebooks], leads_file(tmp_path, 40), out=tmp_path / "runs", run_id="pm", batch_size=20)
    run_dir = tmp_path / "runs" / "pm"
    traced = cli("trace", "lead-8-0000025", "--run", run_dir)  # batch 1: its executed notebook is named
    executed = run_dir / "executed" / "champion@1.0.0" / "batch-00001.ipynb"
    assert f"executed  {executed} (ok)" in traced.output and executed.is_file()
    result = cli("replay", run_dir)
    assert result.exit_code == 0, result.output
    assert "compared 40 result document(s); ignored fields that differ by design: run_id, _timestamp, _current" \
        in result.output
    assert "identical: every result document matches the original" in result.output
    replays = list((run_dir / "replays").iterdir())
    assert len(replays) == 1 and (replays[0] / "executed" / "lead_lr@1.0.0" / "batch-00001.ipynb").is_file()
    coef = notebooks / "lead_lr.coef.json"
    kept = coef.read_text()
    coef.write_text(kept.replace("0", "1", 1))
    result = cli("replay", run_dir)
    assert result.exit_code == 1
    assert result.output.startswith(f"error: {notebooks / 'lead_lr.coef.json'}: artifact of lead_lr@1.0.0 differs "
                                    "from the one run pm used")
    assert len(list((run_dir / "replays").iterdir())) == 1  # nothing ran
    # A run kept before the manifest hashed each part: the executed notebooks it kept say which cells ran.
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for entry in manifest["notebooks"]:
        del entry["cells"], entry["artifact_sha256"]
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    result = cli("replay", run_dir)
    assert result.output.startswith(f"error: {coef}: artifact of lead_lr@1.0.0 differs from the one run pm used")
    coef.write_text(kept)
    edit_score_cell(notebooks / "lead_rules.ipynb", "points", "pts")
    result = cli("replay", run_dir)
    assert result.output == (f"error: {notebooks / 'lead_rules.ipynb'}: production cells of lead_rules@1.0.0 differ "
                             "from the ones run pm used: cell 5 [score] changed\n")


def test_replay_in_process_is_identical(inprocess_run):
    run_dir, _ = inprocess_run
    report = replay_run(run_dir, run_dir.parent / "again")
    assert report.identical and report.documents == 50 and report.replay_status == "succeeded"
    assert json.loads((report.replay_dir / "manifest.json").read_text())["engine"] == "inprocess"


def test_a_changed_cell_is_refused_naming_it_as_jupyterlab_counts(inprocess_run):
    run_dir, notebooks = inprocess_run
    edit_score_cell(notebooks / "lead_rules.ipynb", "points", "pts")
    result = cli("replay", run_dir)
    assert result.exit_code == 1
    assert result.output == (f"error: {notebooks / 'lead_rules.ipynb'}: production cells of lead_rules@1.0.0 differ "
                             "from the ones run ip used: cell 5 [score] changed\n")
    assert nbformat.read(notebooks / "lead_rules.ipynb", as_version=4).cells[5 - 1].metadata.tags == ["score"]
    assert not (run_dir / "replays").exists()


def test_every_notebook_that_changed_is_named_not_only_the_first(inprocess_run):
    run_dir, notebooks = inprocess_run
    edit_score_cell(notebooks / "lead_rules.ipynb", "points", "pts")
    (notebooks / "lead_lr.ipynb").rename(notebooks / "moved.ipynb")
    (notebooks / "champion.ipynb").write_text("{ not a notebook")
    result = cli("replay", run_dir)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0] == "error: 3 notebooks are not the ones run ip used:"
    assert [line for line in lines if line.startswith(f"  {notebooks / 'champion.ipynb'}")]  # as lint words it
    lines = [line for line in lines if "champion" not in line]
    assert sorted(lines[1:]) == sorted([
        f"  {notebooks / 'lead_rules.ipynb'}: production cells of lead_rules@1.0.0 differ from the ones run ip used: "
        "cell 5 [score] changed",
        f"  {notebooks / 'lead_lr.ipynb'}: notebook of lead_lr@1.0.0 is gone (paths are relative to where the run "
        "started; replay from there)"])
    assert not (run_dir / "replays").exists()


def test_a_changed_artifact_is_refused_naming_it_not_the_notebook(inprocess_run):
    run_dir, notebooks = inprocess_run
    recorded = json.loads((run_dir / "manifest.json").read_text())
    [lead_lr] = [n for n in recorded["notebooks"] if n["name"] == "lead_lr"]
    coef = notebooks / "lead_lr.coef.json"
    coef.write_text(coef.read_text().replace("0", "1", 1))
    result = cli("replay", run_dir)
    assert result.exit_code == 1
    assert result.output == (f"error: {coef}: artifact of lead_lr@1.0.0 differs from the one run ip used (recorded "
                             f"sha256 {lead_lr['artifact_sha256']['lead_lr.coef.json'][:12]}…)\n")


def test_cells_and_artifacts_that_changed_are_all_named(inprocess_run):
    run_dir, notebooks = inprocess_run
    path = notebooks / "lead_lr.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_markdown_cell("# Logistic regression"))  # every cell one further down
    setup = next(c for c in nb.cells if "setup" in c.metadata.get("tags", []))
    setup.source += "\nEXTRA = 1"
    nbformat.write(nb, path)
    coef = notebooks / "lead_lr.coef.json"
    coef.write_text(coef.read_text().replace("0", "1", 1))
    result = cli("replay", run_dir)
    assert result.exit_code == 1
    assert result.output == (
        f"error: {path}: production cells and artifacts of lead_lr@1.0.0 differ from the ones run ip used: "
        "cell 3 [version] to cell 4 [fields] moved 1 down (a cell added or removed above it; the hash covers where "
        "each cell is), cell 5 [setup] changed (was cell 4 [setup]), cell 10 [setup] to cell 12 [examples] moved 1 "
        "down, artifact lead_lr.coef.json changed\n")


def test_a_run_kept_before_each_part_was_hashed_says_it_cannot_tell(inprocess_run):
    run_dir, notebooks = inprocess_run
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for entry in manifest["notebooks"]:  # as mlsm-nb wrote it before: the whole hash only
        del entry["cells"], entry["artifact_sha256"]
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    edit_score_cell(notebooks / "lead_rules.ipynb", "points", "pts")
    result = cli("replay", run_dir)
    assert result.exit_code == 1
    assert result.output.startswith(f"error: {notebooks / 'lead_rules.ipynb'}: production cells or artifacts of "
                                    "lead_rules@1.0.0 differ from the ones run ip used (recorded sha256 ")
    assert result.output.endswith("so which one changed cannot be told: compare with the notebook's recorded git "
                                  "commit\n")


def test_differences_are_listed_by_id_model_and_key(inprocess_run):
    run_dir, _ = inprocess_run
    path = run_dir / "results" / "batch-00001.jsonl"
    lines = path.read_text().splitlines()
    document = json.loads(lines[3])
    original = document["results"]["lead_lr"]["1.0.0"]["score"]
    document["results"]["lead_lr"]["1.0.0"]["score"] = 0.5
    lines[3] = json.dumps(document)
    path.write_text("\n".join(lines) + "\n")
    result = cli("replay", run_dir)
    assert result.exit_code == 1
    assert "1 difference(s):" in result.output
    assert f"id '{document['id']}': lead_lr 1.0.0 score: 0.5 -> {original!r}" in result.output


@pytest.mark.parametrize("missing", ["batches/batch-00001.jsonl", "results/batch-00002.jsonl"])
def test_a_missing_file_is_named(inprocess_run, missing):
    run_dir, _ = inprocess_run
    (run_dir / missing).unlink()
    with pytest.raises(ReplayRefused, match=f"{run_dir / missing}: missing from the run directory"):
        replay_run(run_dir)
    assert not (run_dir / "replays").exists()


def test_a_missing_manifest_is_named(tmp_path):
    result = cli("replay", tmp_path)
    assert result.exit_code == 1 and f"{tmp_path / 'manifest.json'}: no readable run manifest" in result.output


def test_replay_uses_the_recorded_bundle(tmp_path):
    from mlsm_nb.notebook.extract import extract_bundle

    notebooks = copy_notebooks(tmp_path)
    extract_bundle([notebooks], tmp_path / "bundle")
    run_notebooks([notebooks], leads_file(tmp_path, 20), out=tmp_path / "runs", run_id="b", engine="inprocess",
                  bundle=str(tmp_path / "bundle"))
    run_dir = tmp_path / "runs" / "b"
    result = cli("replay", run_dir)
    assert result.exit_code == 0, result.output
    replayed = json.loads(next((run_dir / "replays").iterdir()).joinpath("manifest.json").read_text())
    assert replayed["bundle"] == str(tmp_path / "bundle")
    shutil.rmtree(tmp_path / "bundle")
    assert "the bundle run b scored with is gone" in cli("replay", run_dir).output


def test_replay_asks_for_credentials_it_never_recorded(tmp_path):
    notebooks = copy_notebooks(tmp_path)
    champion = notebooks / "champion.ipynb"
    nb = nbformat.read(champion, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source += "\napi_token = None"
    nbformat.write(nb, champion)
    run_notebooks([notebooks], leads_file(tmp_path, 20), out=tmp_path / "runs", run_id="c", engine="inprocess",
                  parameters={"api_token": "s3cret"})
    run_dir = tmp_path / "runs" / "c"
    result = cli("replay", run_dir)
    assert result.exit_code == 1
    assert "parameter api_token was a credential (never recorded): pass it with --param api_token=..." in result.output
    result = cli("replay", run_dir, "--param", "api_token=s3cret")
    assert result.exit_code == 0, result.output
    assert "s3cret" not in (run_dir / "manifest.json").read_text()


def test_a_cell_named_only_by_the_replay_is_no_difference():
    from mlsm_nb.audit.replay import _compare_documents

    raised = {"_error": "division by zero", "_error_kind": "score_raised", "_error_type": "ZeroDivisionError"}
    kept = {"id": 1, "results": {"m": {"1": raised}}}  # kept by a run from before `_error_at`
    at = {"id": 1, "results": {"m": {"1": {**raised, "_error_at": "cell 4 [score], line 3"}}}}
    elsewhere = {"id": 1, "results": {"m": {"1": {**raised, "_error_at": "cell 2 [setup], line 1"}}}}
    assert _compare_documents(kept, at, "id") == []
    assert [d.key for d in _compare_documents(at, kept, "id")] == ["_error_at"]
    assert [d.key for d in _compare_documents(at, elsewhere, "id")] == ["_error_at"]


# A model whose score raises on one record, one whose setup raises, and a summary that needs the first.
RAISES = replace_cell(GOOD_CELLS, "score", "def score(data, results):\n    if data['x'] == 3:\n"
                                           "        raise ValueError('no score for 3')\n"
                                           "    return {'score': data['x'] * FACTOR, 'n': len(data['label'])}")
BROKEN = [("version", 'name = "broken"\nversion = "1"\nstatus = "active"'), *replace_cell(
    GOOD_CELLS, "setup", "raise RuntimeError('weights missing')")[1:]]
PICK = [("version", 'name = "pick"\nversion = "1"\nstatus = "active"'),
        ("models", 'models = [{"name": "tiny", "version": "1.0"}]'),
        ("score", "def score(data, results):\n    return {'score': results['tiny']['1.0']['score']}")]
# What each cell reference above read in runs kept before mlsm-nb counted cells from 1: the cell's index.
COUNTED_FROM_0 = {"cell 5 [score]": "cell 4 [score]", "cell 3 [setup]": "cell 2 [setup]"}


def keep_as_before_cells_counted_from_1(run_dir):
    """The run directory as mlsm-nb wrote it before: cells named by index in results, no `cells_counted_from`."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest.pop("cells_counted_from") == 1
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    for path in (run_dir / "results").glob("*.jsonl"):
        text = path.read_text()
        for now, before in COUNTED_FROM_0.items():
            text = text.replace(now, before)
        path.write_text(text)


@pytest.fixture
def run_with_errors(tmp_path):
    folder = tmp_path / "notebooks"
    for name, cells in (("tiny", RAISES), ("broken", BROKEN), ("pick", PICK)):
        write_notebook(folder / f"{name}.ipynb", cells)
    done = cli("run", folder, "--records", write_records(tmp_path / "records.jsonl", 8), "--out", tmp_path / "runs",
               "--run-id", "kept", "--engine", "inprocess", "--batch-size", "4")
    assert done.exit_code == 1, done.output  # broken fails every batch
    return tmp_path / "runs" / "kept", folder


def test_a_run_kept_before_cells_were_counted_from_1_replays_equal(run_with_errors):
    run_dir, folder = run_with_errors
    documents = [json.loads(line) for line in (run_dir / "results" / "batch-00000.jsonl").read_text().splitlines()]
    results = {d["id"]: d["results"] for d in documents}
    assert results[3]["tiny"]["1.0"]["_error_at"] == "cell 5 [score], line 3"
    assert results[3]["pick"]["1"]["_error"] == ("tiny 1.0 failed on this record: ValueError at cell 5 [score], "
                                                  "line 3: no score for 3")
    assert f"{folder / 'broken.ipynb'}:cell 3 [setup]: raised RuntimeError" in results[0]["broken"]["1"]["_error"]
    kept = (run_dir / "results" / "batch-00000.jsonl").read_text()
    keep_as_before_cells_counted_from_1(run_dir)
    assert (run_dir / "results" / "batch-00000.jsonl").read_text() != kept

    replayed = cli("replay", run_dir)
    assert replayed.exit_code == 0, replayed.output
    assert "identical: every result document matches the original" in replayed.output
    assert "cell 4 [score]" in (run_dir / "results" / "batch-00000.jsonl").read_text()  # never rewritten


def test_a_cell_number_that_differs_for_another_reason_is_still_a_difference(run_with_errors):
    run_dir, _ = run_with_errors
    path = run_dir / "results" / "batch-00000.jsonl"
    path.write_text(path.read_text().replace("cell 5 [score], line 3", "cell 4 [score], line 3"))
    replayed = cli("replay", run_dir)  # the manifest says the run counted from 1: cell 4 is another cell
    assert replayed.exit_code == 1
    assert "id 3: tiny 1.0 _error_at: 'cell 4 [score], line 3' -> 'cell 5 [score], line 3'" in replayed.output
